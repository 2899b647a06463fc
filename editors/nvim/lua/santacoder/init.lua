--- santacoder.nvim: starts santacoder-lsp for file buffers and shows its inline completions.
---
--- Neovim 0.12+: the native `vim.lsp.inline_completion` draws and accepts the suggestions.
--- Neovim 0.10/0.11: `santacoder.ghost` does the same over `textDocument/inlineCompletion`.
--- Either way `textDocument/completion` stays available to `vim.lsp.completion` users.
local compat = require('santacoder.compat')

local M = {}

M.name = 'santacoder'

local defaults = {
  --- How to start the server (stdio).
  cmd = { 'santacoder-lsp' },
  --- Filetypes to attach to; nil attaches to every file buffer and lets the server's `enable`
  --- setting decide.
  filetypes = nil,
  --- Files that mark a project root (one server per root); none found means single-file mode.
  root_markers = { '.git' },
  --- Server settings (lsp_server/settings.py), sent as initializationOptions and, under
  --- `santacoder`, as workspace/didChangeConfiguration: model, device, dtype, quantization,
  --- fimOrder, maxNewTokens, maxNewTokensSingleLine, debounceMs, enable, completionItems,
  --- extraContextTokens, ...
  --- A team's model server: backend = 'openai', serverUrl, serverModel, apiKeyEnv (the NAME
  --- of an environment variable holding the key), requestTimeoutMs, connectTimeoutMs.
  settings = {},
  --- 'auto' (native on 0.12+, else this plugin's ghost text), 'native', 'ghost', or false for
  --- no inline completion (textDocument/completion only).
  inline = 'auto',
  --- Quiet time after a keystroke before asking (ghost text only; 0.12 asks on its own).
  debounce_ms = 50,
  keymaps = {
    --- Accepts the suggestion; the key keeps its normal meaning when nothing is shown.
    accept = '<Tab>',
    --- Asks for a suggestion now (ghost text only; false: no mapping).
    suggest = false,
    --- Hides the suggestion (ghost text only; false: no mapping). Esc and cursor moves always do.
    dismiss = false,
  },
}

M.config = vim.deepcopy(defaults)

local INLINE_MODES = { auto = true, native = true, ghost = true }

--- Raises one actionable error for a bad option (setup() is the user's own config).
local function validate(config)
  local function check(ok, key, expected)
    if not ok then
      error(('santacoder.setup(): `%s` must be %s'):format(key, expected), 0)
    end
  end
  check(type(config.cmd) == 'table' and #config.cmd > 0, 'cmd', 'a list such as { "santacoder-lsp" }')
  check(config.filetypes == nil or type(config.filetypes) == 'table', 'filetypes', 'nil or a list')
  check(config.root_markers == nil or type(config.root_markers) == 'table', 'root_markers', 'nil or a list')
  check(type(config.settings) == 'table', 'settings', 'a table')
  check(config.settings.apiKey == nil, 'settings.apiKey', 'absent: put the key in an environment variable and name it in settings.apiKeyEnv')
  check(config.inline == false or INLINE_MODES[config.inline] == true, 'inline', "'auto', 'native', 'ghost' or false")
  check(type(config.debounce_ms) == 'number' and config.debounce_ms >= 0, 'debounce_ms', 'a number >= 0')
  check(type(config.keymaps) == 'table', 'keymaps', 'a table')
  for _, name in ipairs({ 'accept', 'suggest', 'dismiss' }) do
    local key = config.keymaps[name]
    check(key == false or key == nil or type(key) == 'string', 'keymaps.' .. name, "a key such as '<Tab>', or false")
  end
end

--- Which inline-completion implementation serves buffers: 'native', 'ghost' or nil.
function M.inline_mode()
  local mode = M.config.inline
  if mode == 'auto' then
    return compat.has_native_inline_completion() and 'native' or 'ghost'
  end
  if mode == 'native' and not compat.has_native_inline_completion() then
    vim.notify_once(
      "santacoder: inline = 'native' needs Neovim 0.12 (vim.lsp.inline_completion); using the plugin's ghost text",
      vim.log.levels.WARN
    )
    return 'ghost'
  end
  return mode or nil
end

local function map_key(bufnr, lhs, rhs, desc, expr)
  if lhs then
    vim.keymap.set('i', lhs, rhs, { buffer = bufnr, expr = expr, desc = 'santacoder: ' .. desc })
  end
end

local function attach_native(bufnr)
  local inline = vim.lsp.inline_completion
  inline.enable(true, { bufnr = bufnr })
  local keymaps = M.config.keymaps
  map_key(bufnr, keymaps.accept, function()
    if not inline.get() then
      return keymaps.accept
    end
  end, 'accept the suggestion', true)
end

local function on_attach(bufnr, client)
  local mode = M.inline_mode()
  if mode == 'native' then
    attach_native(bufnr)
  elseif mode == 'ghost' then
    local ghost = require('santacoder.ghost')
    ghost.attach(bufnr, client, M.config)
    map_key(bufnr, M.config.keymaps.suggest, function()
      ghost.request(bufnr, ghost.TRIGGER_INVOKED)
    end, 'suggest')
    map_key(bufnr, M.config.keymaps.dismiss, function()
      ghost.dismiss(bufnr)
    end, 'dismiss')
  end
end

local function server_config()
  local config = M.config
  return {
    name = M.name,
    cmd = config.cmd,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    -- nil when empty: an empty Lua table would reach the server as a JSON list.
    init_options = next(config.settings) and config.settings or nil,
    -- Nested, so a workspace/configuration request for section `santacoder` finds it too.
    settings = next(config.settings) and { [M.name] = config.settings } or nil,
  }
end

--- Neovim 0.10 has no vim.lsp.config/enable: start the client from FileType ourselves.
local function start_on_filetype(group)
  local function start(bufnr)
    local config = M.config
    if vim.bo[bufnr].buftype ~= '' then
      return
    end
    if config.filetypes and not vim.tbl_contains(config.filetypes, vim.bo[bufnr].filetype) then
      return
    end
    local server = server_config()
    server.root_dir = vim.fs.root(bufnr, config.root_markers or {})
    vim.lsp.start(server, { bufnr = bufnr })
  end
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    callback = function(args)
      start(args.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.bo[bufnr].filetype ~= '' then
      start(bufnr)
    end
  end
end

--- Registers and enables the server, and shows its suggestions in the buffers it attaches to.
--- @param opts? table overrides of the defaults above (deep-merged)
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  if opts and opts.settings then
    M.config.settings = vim.deepcopy(opts.settings) -- lists (`enable`) are replaced, not merged
  end
  validate(M.config)

  local group = vim.api.nvim_create_augroup('santacoder', { clear = true })
  local highlight = require('santacoder.highlight')
  highlight.define()
  vim.api.nvim_create_autocmd('ColorScheme', { group = group, callback = highlight.define })
  vim.api.nvim_create_autocmd('OptionSet', { group = group, pattern = 'termguicolors', callback = highlight.define })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        on_attach(args.buf, client)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        require('santacoder.ghost').detach(args.buf)
      end
    end,
  })

  if vim.lsp.config and vim.lsp.enable then
    vim.lsp.config(M.name, server_config())
    vim.lsp.enable(M.name)
  else
    start_on_filetype(group)
  end
end

--- The running client attached to `bufnr` (default: current buffer), if any.
--- @return vim.lsp.Client?
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = M.name })[1]
end

--- Sends new settings to the running servers (workspace/didChangeConfiguration).
--- @param settings table
function M.update_settings(settings)
  M.config.settings = vim.tbl_extend('force', M.config.settings, settings)
  local nested = { [M.name] = M.config.settings }
  for _, client in ipairs(vim.lsp.get_clients({ name = M.name })) do
    client.settings = nested
    compat.notify(client, 'workspace/didChangeConfiguration', { settings = nested })
  end
end

return M
