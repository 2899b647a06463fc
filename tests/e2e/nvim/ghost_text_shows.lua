-- Typing in insert mode makes the plugin ask santacoder-lsp and draw the suggestion as ghost
-- text: the first line inline at the cursor, the rest as virtual lines, highlight linked to
-- Comment. Typing its next character keeps it; a cursor move or Esc hides it.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

require('santacoder').setup({ cmd = H.server_cmd, settings = H.server_settings, inline = 'ghost' })

local function ghost_shown(bufnr)
  return function()
    return #H.ghost_marks(bufnr) > 0
  end
end

local function ghost_gone(bufnr)
  return function()
    return #H.ghost_marks(bufnr) == 0
  end
end

H.run(function()
  local bufnr = H.edit('demo.py', { 'def add(a, b):', '' })
  local client = H.wait_for_client(bufnr)
  H.log('server attached; model:', H.wait_for_model(client, bufnr))

  vim.o.termguicolors = true -- the highlight is a plain link to Comment then
  H.type('GA    ') -- indent the empty body line by typing four spaces
  H.wait_for('ghost text after typing', ghost_shown(bufnr))
  local marks = H.ghost_marks(bufnr)
  H.eq(1, #marks, 'number of ghost extmarks')
  local _, row, col, details = unpack(marks[1])
  H.eq({ 2, 4 }, vim.api.nvim_win_get_cursor(0), 'cursor')
  H.eq({ 1, 4 }, { row, col }, 'extmark position (the cursor)')
  H.eq({ 'def add(a, b):', '    ' }, vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), 'buffer (ghost text is not text)')
  local shown = H.mark_text(details)
  H.log('ghost text:', shown)
  H.check(table.concat(shown, '\n'):match('%S') ~= nil, 'the suggestion is blank')
  H.eq(require('santacoder.ghost').visible_lines(bufnr), shown, 'drawn text = suggestion')
  if H.fake then
    H.eq({ 'total = a + b', '    return total' }, shown, 'ghost text')
  end
  if details.virt_text then
    H.eq('inline', details.virt_text_pos, 'first line position')
    H.eq('SantacoderGhostText', details.virt_text[1][2], 'first line highlight')
  end
  for _, virt_line in ipairs(details.virt_lines or {}) do
    H.eq('SantacoderGhostText', virt_line[1][2], 'virtual line highlight')
  end
  H.eq({ link = 'Comment' }, vim.api.nvim_get_hl(0, { name = 'SantacoderGhostText' }), 'highlight')
  -- Neovim's default Comment has no terminal colour: without 'termguicolors' the ghost is grey.
  vim.o.termguicolors = false
  H.eq(8, vim.api.nvim_get_hl(0, { name = 'SantacoderGhostText' }).ctermfg, 'highlight without termguicolors')

  if H.fake then
    H.type('t') -- the suggestion's next character: it stays, one character shorter
    H.wait_for('ghost text to follow typing', function()
      local now = H.ghost_marks(bufnr)[1]
      return now ~= nil and now[3] == 5
    end)
    H.eq({ 'otal = a + b', '    return total' }, H.mark_text(H.ghost_marks(bufnr)[1][4]), 'ghost text after typing t')
    H.type('<Left>')
    H.wait_for('a cursor move to hide the ghost text', ghost_gone(bufnr))
    H.type('<End><BS>')
  else
    H.type('<Left>')
    H.wait_for('a cursor move to hide the ghost text', ghost_gone(bufnr))
    H.type('<End> <BS>')
  end
  H.wait_for('ghost text after typing again', ghost_shown(bufnr))
  H.type('<Esc>')
  H.wait_for('Esc to hide the ghost text', ghost_gone(bufnr))
  H.eq('n', vim.api.nvim_get_mode().mode, 'mode after Esc')
end)
