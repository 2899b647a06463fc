--- Ghost text for Neovim 0.10 and 0.11, which have no `vim.lsp.inline_completion`.
---
--- After an insert-mode change (debounced) it asks the server for `textDocument/inlineCompletion`,
--- draws the first item as an extmark (first line inline, the rest as virtual lines, highlight
--- `SantacoderGhostText`, see santacoder.highlight), accepts it on a key and then runs the item's
--- command so the server can count acceptances. Esc, a cursor move or leaving the buffer dismiss
--- it. A buffer has at most one request in flight: a newer one cancels the older, and a reply
--- for an older buffer version or cursor position is dropped.
local compat = require('santacoder.compat')
local highlight = require('santacoder.highlight')
local suggestion = require('santacoder.suggestion')

local api = vim.api
local uv = vim.uv or vim.loop

local M = {}

M.namespace = api.nvim_create_namespace('santacoder.ghost')
M.hl_group = highlight.group

local TRIGGER_INVOKED = 1
local TRIGGER_AUTOMATIC = 2
local REQUEST_CANCELLED = -32800
local CONTENT_MODIFIED = -32801

--- Where the shown suggestion or the pending request applies; anything else makes it stale.
--- @class santacoder.Anchor
--- @field tick integer buffer changedtick
--- @field row integer
--- @field col integer

--- @class santacoder.BufferState
--- @field client_id integer
--- @field debounce_ms integer
--- @field timer uv.uv_timer_t
--- @field request_id? integer request in flight
--- @field anchor? santacoder.Anchor
--- @field suggestion? santacoder.Suggestion
--- @field augroup integer
--- @field accept_key? string

--- @type table<integer, santacoder.BufferState>
local buffers = {}

local function cursor_anchor(bufnr)
  local pos = api.nvim_win_get_cursor(0)
  return { tick = api.nvim_buf_get_changedtick(bufnr), row = pos[1] - 1, col = pos[2] }
end

local function same_anchor(a, b)
  return a ~= nil and b ~= nil and a.tick == b.tick and a.row == b.row and a.col == b.col
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

local function line_at(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

local function draw(bufnr, s)
  highlight.define()
  api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  local opts = suggestion.extmark_opts(s, vim.bo[bufnr].tabstop, M.hl_group)
  api.nvim_buf_set_extmark(bufnr, M.namespace, s.row, s.col, opts)
end

local function cancel_pending(state)
  state.timer:stop()
  if state.request_id then
    local client = vim.lsp.get_client_by_id(state.client_id)
    if client then
      compat.cancel_request(client, state.request_id)
    end
    state.request_id = nil
  end
end

--- Hides the suggestion and cancels any pending request.
function M.dismiss(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local state = buffers[bufnr]
  if not state then
    return
  end
  cancel_pending(state)
  state.suggestion = nil
  state.anchor = nil
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  end
end

--- @return boolean
function M.is_visible(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local state = buffers[bufnr]
  return state ~= nil and state.suggestion ~= nil
end

--- The text on screen for tests and status lines: the suggestion's lines, or nil.
--- @return string[]?
function M.visible_lines(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local state = buffers[bufnr]
  return state and state.suggestion and vim.deepcopy(state.suggestion.lines)
end

local function on_response(bufnr, client_id, anchor, err, result, request_id)
  local state = buffers[bufnr]
  if not state or state.request_id ~= request_id then
    return -- a newer request replaced this one
  end
  state.request_id = nil
  if err then
    if err.code ~= REQUEST_CANCELLED and err.code ~= CONTENT_MODIFIED then
      vim.lsp.log.warn('santacoder: inline completion failed:', err.message)
    end
    return
  end
  local valid = api.nvim_buf_is_valid(bufnr)
    and api.nvim_get_current_buf() == bufnr
    and in_insert_mode()
    and same_anchor(anchor, cursor_anchor(bufnr))
  if not valid or not result then
    return
  end
  local client = vim.lsp.get_client_by_id(client_id)
  if not client then
    return
  end
  local line = line_at(bufnr, anchor.row)
  for _, item in ipairs(result.items or result) do
    local s = suggestion.from_item(item, line, anchor.row, anchor.col, client.offset_encoding)
    if s then
      state.suggestion = s
      state.anchor = anchor
      draw(bufnr, s)
      return
    end
  end
end

--- Asks the server now for a suggestion at the cursor.
--- @param trigger_kind? integer 1 invoked by the user, 2 automatic (default)
function M.request(bufnr, trigger_kind)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local state = buffers[bufnr]
  local client = state and vim.lsp.get_client_by_id(state.client_id)
  if not client then
    return
  end
  cancel_pending(state)
  local anchor = cursor_anchor(bufnr)
  state.anchor = anchor
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger_kind or TRIGGER_AUTOMATIC }
  local request_id
  local ok, id = compat.request(client, 'textDocument/inlineCompletion', params, function(err, result)
    -- An in-process server may answer before request() returns; vim.schedule orders it after.
    vim.schedule(function()
      on_response(bufnr, state.client_id, anchor, err, result, request_id)
    end)
  end, bufnr)
  if ok then
    request_id = id
    state.request_id = id
  end
end

local function schedule_request(bufnr)
  local state = buffers[bufnr]
  cancel_pending(state)
  local anchor = cursor_anchor(bufnr)
  state.anchor = anchor
  state.timer:start(
    state.debounce_ms,
    0,
    vim.schedule_wrap(function()
      local valid = buffers[bufnr] == state
        and api.nvim_buf_is_valid(bufnr)
        and api.nvim_get_current_buf() == bufnr
        and in_insert_mode()
        and same_anchor(state.anchor, cursor_anchor(bufnr))
      if valid then
        M.request(bufnr, TRIGGER_AUTOMATIC)
      end
    end)
  )
end

--- When the user typed the next characters of the suggestion, shows the rest without asking.
--- @return boolean advanced
local function type_through(bufnr, state)
  if not state.suggestion then
    return false
  end
  local now = cursor_anchor(bufnr)
  local rest = suggestion.type_through(state.suggestion, line_at(bufnr, now.row), now.row, now.col)
  if not rest then
    return false
  end
  state.suggestion = rest
  state.anchor = now
  draw(bufnr, rest)
  return true
end

local function on_text_changed(bufnr)
  local state = buffers[bufnr]
  if not state or not in_insert_mode() then
    return
  end
  if type_through(bufnr, state) then
    return
  end
  M.dismiss(bufnr)
  schedule_request(bufnr)
end

local function on_cursor_moved(bufnr)
  local state = buffers[bufnr]
  if not state or not state.anchor then
    return
  end
  local now = cursor_anchor(bufnr)
  -- Typing moves the cursor too; TextChangedI decides about those moves.
  if now.tick == state.anchor.tick and not same_anchor(now, state.anchor) then
    M.dismiss(bufnr)
  end
end

--- Accepts the shown suggestion: inserts it, moves the cursor after it and runs its command.
--- Edits the buffer, so call it from a `<Cmd>` mapping or a function, not while evaluating an
--- `expr` mapping.
--- @return boolean accepted
function M.accept(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local state = buffers[bufnr]
  local s = state and state.suggestion
  if not s then
    return false
  end
  M.dismiss(bufnr)
  api.nvim_buf_set_text(bufnr, s.row, s.col, s.row, s.col + s.replace_bytes, s.lines)
  local last_row = s.row + #s.lines - 1
  local last_col = (#s.lines == 1 and s.col or 0) + #s.lines[#s.lines]
  api.nvim_win_set_cursor(0, { last_row + 1, last_col })
  local client = vim.lsp.get_client_by_id(state.client_id)
  if s.command and client then
    local run = (client.commands or {})[s.command.command] or vim.lsp.commands[s.command.command]
    if run then
      run(s.command, { bufnr = bufnr, client_id = client.id })
    else
      local params = { command = s.command.command, arguments = s.command.arguments }
      compat.request(client, 'workspace/executeCommand', params, function(err)
        if err then
          vim.lsp.log.warn('santacoder: executeCommand failed:', err.message)
        end
      end, bufnr)
    end
  end
  return true
end

--- Keys for an `expr` mapping: accept when something is shown, else `fallback`.
function M.accept_or(fallback)
  if M.is_visible() then
    return '<Cmd>lua require("santacoder.ghost").accept()<CR>'
  end
  return fallback
end

--- @param bufnr integer
--- @param client vim.lsp.Client
--- @param opts { debounce_ms: integer, keymaps: table }
function M.attach(bufnr, client, opts)
  if buffers[bufnr] then
    return
  end
  local augroup = api.nvim_create_augroup('santacoder.ghost.' .. bufnr, { clear = true })
  local state = {
    client_id = client.id,
    debounce_ms = opts.debounce_ms,
    timer = assert(uv.new_timer()),
    augroup = augroup,
  }
  buffers[bufnr] = state
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = augroup,
    buffer = bufnr,
    callback = function()
      on_text_changed(bufnr)
    end,
  })
  api.nvim_create_autocmd('CursorMovedI', {
    group = augroup,
    buffer = bufnr,
    callback = function()
      on_cursor_moved(bufnr)
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = augroup,
    buffer = bufnr,
    callback = function()
      M.dismiss(bufnr)
    end,
  })
  api.nvim_create_autocmd('BufUnload', {
    group = augroup,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
  local keymaps = opts.keymaps or {}
  if keymaps.accept then
    state.accept_key = keymaps.accept
    vim.keymap.set('i', keymaps.accept, function()
      return M.accept_or(keymaps.accept)
    end, { buffer = bufnr, expr = true, desc = 'santacoder: accept the suggestion' })
  end
end

function M.detach(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  M.dismiss(bufnr)
  buffers[bufnr] = nil
  state.timer:stop()
  state.timer:close()
  pcall(api.nvim_del_augroup_by_id, state.augroup)
  if state.accept_key and api.nvim_buf_is_valid(bufnr) then
    pcall(vim.keymap.del, 'i', state.accept_key, { buffer = bufnr })
  end
end

M.TRIGGER_INVOKED = TRIGGER_INVOKED

return M
