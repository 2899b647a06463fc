-- With inline = false the plugin only starts the server; a user of the built-in
-- vim.lsp.completion (0.11) still gets the whole suggestion as one textDocument/completion item.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

require('santacoder').setup({ cmd = H.server_cmd, settings = H.server_settings, inline = false })
vim.opt.completeopt = { 'menuone', 'noinsert' }
vim.api.nvim_create_autocmd('LspAttach', {
  callback = function(args)
    vim.lsp.completion.enable(true, args.data.client_id, args.buf, { autotrigger = false })
  end,
})

H.run(function()
  local bufnr = H.edit('demo.py', { 'def add(a, b):', '' })
  local client = H.wait_for_client(bufnr)
  H.log('server attached; model:', H.wait_for_model(client, bufnr))

  H.type('GA    <Cmd>lua vim.lsp.completion.get()<CR>')
  H.wait_for('the completion popup', function()
    return vim.fn.pumvisible() == 1
  end)
  local items = vim.fn.complete_info({ 'items' }).items
  H.log('popup items:', vim.tbl_map(function(item)
    return item.word
  end, items))
  H.check(#items > 0 and items[1].word:match('%S') ~= nil, 'the popup has no text')
  H.eq(0, #H.ghost_marks(bufnr), 'ghost extmarks with inline = false')

  H.type('<C-y>')
  H.wait_for('<C-y> to insert the item', function()
    return vim.fn.pumvisible() == 0 and vim.api.nvim_buf_get_lines(bufnr, 1, 2, false)[1] ~= '    '
  end, 5000)
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  H.log('buffer after accepting:', lines)
  if H.fake then
    -- All of it, indented once: not just its first word, and not indented twice.
    H.eq({ 'def add(a, b):', '    total = a + b', '    return total' }, lines, 'buffer after accepting')
  end
end)
