--- A suggestion as the ghost text shows it: pure functions of line text, no editor state.
local compat = require('santacoder.compat')

local M = {}

--- In buffer bytes, already trimmed of the text typed before the cursor.
--- @class santacoder.Suggestion
--- @field row integer 0-based row of the cursor
--- @field col integer byte column of the cursor, where the ghost text starts
--- @field lines string[] text that accepting inserts at `col`, split on newlines
--- @field replace_bytes integer bytes after `col` on `row` that accepting replaces
--- @field before string line text before `col` (recognises typing through the suggestion)
--- @field after string line text after `col`
--- @field command? lsp.Command run after accepting

--- Turns an InlineCompletionItem into a suggestion at the cursor (`row`, byte `col`, `line` the
--- cursor line), or nil when it cannot be ghost text: a range on another line, or text that does
--- not continue what is typed.
--- @param encoding string the client's offset encoding
--- @return santacoder.Suggestion?
function M.from_item(item, line, row, col, encoding)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value -- a snippet StringValue: shown and inserted as plain text
  end
  if type(text) ~= 'string' then
    return nil
  end
  local start_col, end_col = col, col
  if item.range then
    local range_start, range_end = item.range.start, item.range['end']
    if range_start.line ~= row or range_end.line ~= row then
      return nil
    end
    start_col = compat.byte_col(line, range_start.character, encoding)
    end_col = compat.byte_col(line, range_end.character, encoding)
  end
  if start_col > col or end_col < col then
    return nil
  end
  local typed = line:sub(start_col + 1, col)
  if text:sub(1, #typed) ~= typed then
    return nil
  end
  text = text:sub(#typed + 1):gsub('\r\n', '\n')
  if text == '' then
    return nil
  end
  return {
    row = row,
    col = col,
    lines = vim.split(text, '\n', { plain = true }),
    replace_bytes = end_col - col,
    before = line:sub(1, col),
    after = line:sub(col + 1),
    command = item.command,
  }
end

--- What is left of `s` after the user typed on its line (now `line`, cursor at `col`), when what
--- they typed is how the suggestion goes on; nil otherwise, or when nothing of it is left.
--- @return santacoder.Suggestion?
function M.type_through(s, line, row, col)
  local typed_bytes = col - s.col
  if row ~= s.row or typed_bytes <= 0 then
    return nil
  end
  if line:sub(1, s.col) ~= s.before or line:sub(col + 1) ~= s.after then
    return nil
  end
  local first = s.lines[1]
  if first:sub(1, typed_bytes) ~= line:sub(s.col + 1, col) then
    return nil
  end
  if typed_bytes == #first and #s.lines == 1 then
    return nil -- all of it typed
  end
  local rest = vim.deepcopy(s)
  rest.lines[1] = first:sub(typed_bytes + 1)
  rest.col = col
  rest.before = line:sub(1, col)
  return rest
end

--- Tabs in virtual text are drawn as one cell; expand them to the next tab stop instead.
local function expand_tabs(text, start_cell, tabstop)
  if not text:find('\t', 1, true) then
    return text
  end
  local out, cell = {}, start_cell
  for ch in text:gmatch('[%z\1-\127\194-\244][\128-\191]*') do
    if ch == '\t' then
      local pad = tabstop - (cell % tabstop)
      out[#out + 1] = string.rep(' ', pad)
      cell = cell + pad
    else
      out[#out + 1] = ch
      cell = cell + vim.fn.strdisplaywidth(ch)
    end
  end
  return table.concat(out)
end

--- Options for nvim_buf_set_extmark at (`s.row`, `s.col`): the first line inline, the rest as
--- virtual lines below.
function M.extmark_opts(s, tabstop, hl_group)
  local first = s.lines[1]
  -- An item may retype text after the cursor (a closing bracket): when its one line ends with
  -- that text, show only what is new, so the screen reads like the buffer after accepting.
  local replaced = s.after:sub(1, s.replace_bytes)
  if #s.lines == 1 and replaced ~= '' and first:sub(-#replaced) == replaced then
    first = first:sub(1, #first - #replaced)
  end
  local opts = {}
  if first ~= '' then
    opts.virt_text = { { expand_tabs(first, vim.fn.strdisplaywidth(s.before), tabstop), hl_group } }
    opts.virt_text_pos = 'inline'
  end
  if #s.lines > 1 then
    opts.virt_lines = {}
    for i = 2, #s.lines do
      opts.virt_lines[#opts.virt_lines + 1] = { { expand_tabs(s.lines[i], 0, tabstop), hl_group } }
    end
  end
  return opts
end

return M
