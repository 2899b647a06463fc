-- The pure part of the ghost text (santacoder.suggestion): how an InlineCompletionItem maps to
-- what is shown and inserted, for items our server does not send today (ranges that cover typed
-- text or text after the cursor, snippets, CRLF, tabs, UTF-16 offsets). No server runs.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')
local suggestion = require('santacoder.suggestion')

local function range(line, from, to)
  return { start = { line = line, character = from }, ['end'] = { line = line, character = to } }
end

H.run(function()
  -- No range: continue at the cursor.
  local s = suggestion.from_item({ insertText = 'urn a + b\r\n' }, '    ret', 1, 7, 'utf-16')
  H.eq({ 'urn a + b', '' }, s.lines, 'CRLF split into lines')
  H.eq({ row = 1, col = 7, before = '    ret', after = '', replace_bytes = 0 },
    { row = s.row, col = s.col, before = s.before, after = s.after, replace_bytes = s.replace_bytes }, 'anchor')

  -- A range from the start of the word (VS Code style): the typed part is not shown again.
  s = suggestion.from_item({ insertText = 'return a', range = range(1, 4, 7) }, '    ret', 1, 7, 'utf-8')
  H.eq({ 'urn a' }, s.lines, 'typed word stripped')
  H.eq(nil, suggestion.from_item({ insertText = 'print', range = range(1, 4, 7) }, '    ret', 1, 7, 'utf-8'),
    'an item that rewrites typed text is not ghost text')
  H.eq(nil, suggestion.from_item({ insertText = 'x', range = range(0, 0, 0) }, 'ab', 1, 2, 'utf-8'),
    'a range on another line')
  H.eq(nil, suggestion.from_item({ insertText = '' }, 'ab', 0, 2, 'utf-8'), 'empty text')

  -- UTF-16 offsets on a line with non-ASCII text: 'é' is 1 unit but 2 bytes, '😀' 2 units, 4 bytes.
  s = suggestion.from_item({ insertText = 'x', range = range(0, 4, 4) }, 'é😀a', 0, 7, 'utf-16')
  H.eq(7, s.col, 'cursor byte column from UTF-16')

  -- A range over text after the cursor (a closing bracket retyped): accepting replaces it, and
  -- the ghost shows only what is new.
  s = suggestion.from_item({ insertText = 'a, b)', range = range(0, 4, 5) }, 'add()', 0, 4, 'utf-8')
  H.eq(1, s.replace_bytes, 'replaced bytes after the cursor')
  H.eq({ { 'a, b', 'G' } }, suggestion.extmark_opts(s, 8, 'G').virt_text, 'ghost without the retyped bracket')

  -- Snippet StringValue: shown as its text.
  s = suggestion.from_item({ insertText = { kind = 'snippet', value = 'pass' } }, '    ', 1, 4, 'utf-8')
  H.eq({ 'pass' }, s.lines, 'snippet value')

  -- Tabs expand to tab stops; later lines become virtual lines.
  s = suggestion.from_item({ insertText = 'x\tif y:\n\treturn' }, 'ab', 0, 2, 'utf-8')
  local opts = suggestion.extmark_opts(s, 4, 'G')
  H.eq({ { 'x if y:', 'G' } }, opts.virt_text, 'a tab at screen column 3 fills to the stop at 4')
  H.eq({ { { '    return', 'G' } } }, opts.virt_lines, 'virtual line with a leading tab')
  H.eq('inline', opts.virt_text_pos, 'inline position')

  -- Typing through: the typed characters leave the suggestion; anything else ends it.
  s = suggestion.from_item({ insertText = 'total = 0\nreturn' }, '    ', 1, 4, 'utf-8')
  local rest = suggestion.type_through(s, '    tot', 1, 7)
  H.eq({ 'al = 0', 'return' }, rest.lines, 'rest after typing tot')
  H.eq(7, rest.col, 'ghost moves with the cursor')
  H.eq({ 'total = 0', 'return' }, s.lines, 'the original is not changed')
  H.eq(nil, suggestion.type_through(s, '    x', 1, 5), 'typing something else')
  H.eq(nil, suggestion.type_through(s, '    ', 1, 4), 'no typing')
  H.eq(nil, suggestion.type_through(s, '   ', 1, 3), 'backspace')
  local one = suggestion.from_item({ insertText = 'ab' }, '', 0, 0, 'utf-8')
  H.eq(nil, suggestion.type_through(one, 'ab', 0, 2), 'all of it typed')
end)
