--- The few Neovim APIs whose shape changed between 0.10 and 0.11/0.12.
local M = {}

M.has_0_11 = vim.fn.has('nvim-0.11') == 1

--- Sends a request to one client.
--- @return boolean ok, integer? request_id
function M.request(client, method, params, handler, bufnr)
  if M.has_0_11 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

--- Sends a request and waits for its answer.
--- @return table? response { result = ..., err = ... }, or nil on timeout
function M.request_sync(client, method, params, timeout_ms, bufnr)
  if M.has_0_11 then
    return client:request_sync(method, params, timeout_ms, bufnr)
  end
  return client.request_sync(method, params, timeout_ms, bufnr)
end

function M.notify(client, method, params)
  if M.has_0_11 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel_request(client, request_id)
  if M.has_0_11 then
    return client:cancel_request(request_id)
  end
  return client.cancel_request(request_id)
end

--- Byte offset in `line` of an LSP character offset counted in `encoding` units.
--- @param line string
--- @param character integer
--- @param encoding string 'utf-8' | 'utf-16' | 'utf-32'
--- @return integer
function M.byte_col(line, character, encoding)
  if encoding == 'utf-8' then
    return math.min(character, #line)
  end
  if M.has_0_11 then
    return vim.str_byteindex(line, encoding, character, false)
  end
  local ok, col = pcall(vim.str_byteindex, line, character, encoding == 'utf-16')
  return ok and col or #line
end

--- Whether this Neovim has the native LSP inline completion (0.12 and later).
function M.has_native_inline_completion()
  local ok, module = pcall(function()
    return vim.lsp.inline_completion
  end)
  return ok and type(module) == 'table' and type(module.enable) == 'function'
end

return M
