-- Neovim 0.12's native vim.lsp.inline_completion is not available here (no 0.12 wheel), so this
-- checks only the plugin's wiring for it against a stand-in module: on attach it enables the
-- native feature for the buffer, and Tab accepts through get() or stays a plain Tab.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

local calls = { enable = {}, get = 0 }
local accept_next = false
vim.lsp.inline_completion = {
  enable = function(enable, filter)
    calls.enable[#calls.enable + 1] = { enable, filter }
  end,
  get = function()
    calls.get = calls.get + 1
    return accept_next
  end,
}
local client = { id = 4242, name = 'santacoder' }
local get_client_by_id = vim.lsp.get_client_by_id
vim.lsp.get_client_by_id = function(id)
  return id == client.id and client or get_client_by_id(id)
end

require('santacoder').setup({ cmd = H.server_cmd })

H.run(function()
  H.eq('native', require('santacoder').inline_mode(), 'inline mode when the native module exists')
  local bufnr = vim.api.nvim_get_current_buf() -- no filetype: no server is started
  vim.api.nvim_exec_autocmds('LspAttach', { buffer = bufnr, data = { client_id = client.id } })
  H.eq({ { true, { bufnr = bufnr } } }, calls.enable, 'vim.lsp.inline_completion.enable calls')

  H.type('ix<Tab>y')
  H.wait_for('a plain Tab when get() accepts nothing', function()
    return vim.api.nvim_get_current_line() == 'x\ty'
  end, 2000)
  H.eq(1, calls.get, 'get() calls')

  accept_next = true
  H.type('<Tab>z')
  H.wait_for('no Tab when get() accepted', function()
    return vim.api.nvim_get_current_line() == 'x\tyz'
  end, 2000)
  H.eq(2, calls.get, 'get() calls')
end)
