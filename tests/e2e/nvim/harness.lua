--- Tiny harness for headless Neovim end-to-end tests (`nvim --headless --clean -u <test>.lua`).
---
--- A test body runs as a coroutine after startup, so keys sent with `nvim_input` go through the
--- real input loop: mappings, TextChangedI and CursorMovedI behave as when a person types.
--- Success quits with status 0; a failed check or error prints `FAIL: ...` and exits with 1.
--- Environment: SANTACODER_REPO (repository root), SANTACODER_SERVER_CMD (JSON list; default
--- ["santacoder-lsp"]), SANTACODER_SERVER_SETTINGS (JSON object of server settings; default: the
--- scripted engine of tests/fakes.py with H.FAKE_RULES, which needs SANTACODER_LSP_FAKE_ENGINE).
local H = {}

local uv = vim.uv or vim.loop
local this_dir = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')

H.repo = os.getenv('SANTACODER_REPO') or vim.fn.fnamemodify(this_dir, ':h:h:h')
vim.opt.runtimepath:prepend(H.repo .. '/editors/nvim')
vim.o.showmode = false -- headless nvim would print "-- INSERT --" into the output

H.server_cmd = vim.json.decode(os.getenv('SANTACODER_SERVER_CMD') or '["santacoder-lsp"]')

--- What the scripted engine answers: the text after the cursor when the prefix ends with `after`.
H.FAKE_RULES = {
  { after = 'def add(a, b):\n    ', text = 'total = a + b\n    return total' }, -- multi-line
  { after = '    ret', text = 'urn a + b' }, -- single line
}

--- True when the scripted engine answers, so a test may check exact texts.
H.fake = os.getenv('SANTACODER_SERVER_SETTINGS') == nil
H.server_settings = H.fake
    and { model = 'fake:' .. vim.json.encode({ rules = H.FAKE_RULES }), debounceMs = 0 }
  or vim.json.decode(os.getenv('SANTACODER_SERVER_SETTINGS'))

local started_ms = uv.now()

function H.log(...)
  local parts = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    parts[#parts + 1] = type(v) == 'string' and v or vim.inspect(v)
  end
  io.stdout:write(('[%5d ms] %s\n'):format(uv.now() - started_ms, table.concat(parts, ' ')))
  io.stdout:flush()
end

function H.fail(message)
  io.stdout:write('FAIL: ' .. message .. '\n')
  io.stdout:flush()
  vim.cmd('cquit 1')
end

--- Yields until `predicate()` is true; fails the test after `timeout_ms`.
function H.wait_for(what, predicate, timeout_ms)
  local co = assert(coroutine.running(), 'wait_for runs inside H.run')
  local deadline = uv.now() + (timeout_ms or 10000)
  local function poll()
    local ok, done = pcall(predicate)
    if not ok then
      H.fail(('while waiting for %s: %s'):format(what, tostring(done)))
    elseif done then
      coroutine.resume(co)
    elseif uv.now() > deadline then
      H.fail(('timed out waiting for %s'):format(what))
    else
      vim.defer_fn(poll, 20)
    end
  end
  vim.schedule(poll)
  coroutine.yield()
end

--- Lets the event loop run for `ms` (for checks that something does NOT happen).
function H.sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    coroutine.resume(co)
  end, ms)
  coroutine.yield()
end

--- Types keys as user input (`<Tab>`, `<Esc>` notation works).
function H.type(keys)
  vim.api.nvim_input(keys)
end

function H.check(ok, message)
  if not ok then
    error(message, 2)
  end
end

function H.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(('%s: expected %s, got %s'):format(what, vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

--- Writes `lines` to a file in the current directory and edits it.
function H.edit(name, lines)
  vim.fn.writefile(lines, name)
  vim.cmd.edit(name)
  return vim.api.nvim_get_current_buf()
end

--- The plugin's client for `bufnr`, once the server has answered `initialize`.
function H.wait_for_client(bufnr, timeout_ms)
  local client
  H.wait_for('santacoder-lsp to start and attach', function()
    client = require('santacoder').client(bufnr)
    return client ~= nil and client.initialized
  end, timeout_ms or 60000)
  return client
end

--- Sends a request to the server and waits for its answer (`vim.lsp.Client:request_sync`).
function H.request(client, method, params, bufnr)
  local answer = client:request_sync(method, params or vim.empty_dict(), 5000, bufnr)
  H.check(answer ~= nil and answer.err == nil, ('%s failed: %s'):format(method, vim.inspect(answer)))
  return answer.result
end

--- Waits until the server has loaded its model (`santacoder/stats` reports state 'ready').
function H.wait_for_model(client, bufnr, timeout_ms)
  local model
  H.wait_for('the model to load', function()
    model = H.request(client, 'santacoder/stats', nil, bufnr).model
    H.check(model.state ~= 'failed', 'model load failed: ' .. tostring(model.error))
    return model.state == 'ready'
  end, timeout_ms or 60000)
  return model
end

--- Ghost-text extmarks in `bufnr`: { row, col, details } for each.
function H.ghost_marks(bufnr)
  local ns = require('santacoder.ghost').namespace
  return vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
end

--- The text an extmark shows: its inline chunk and its virtual lines.
function H.mark_text(details)
  local lines = { '' }
  for _, chunk in ipairs(details.virt_text or {}) do
    lines[1] = lines[1] .. chunk[1]
  end
  for _, virt_line in ipairs(details.virt_lines or {}) do
    local text = ''
    for _, chunk in ipairs(virt_line) do
      text = text .. chunk[1]
    end
    lines[#lines + 1] = text
  end
  return lines
end

--- Runs `body` once Neovim has started; exits 0 when it returns, 1 when it raises.
function H.run(body)
  vim.api.nvim_create_autocmd('VimEnter', {
    once = true,
    callback = function()
      local co = coroutine.create(function()
        local ok, err = xpcall(body, debug.traceback)
        if ok then
          H.log('PASS')
          vim.cmd('qall!')
        else
          H.fail(tostring(err))
        end
      end)
      vim.schedule(function()
        local ok, err = coroutine.resume(co)
        if not ok then
          H.fail(tostring(err))
        end
      end)
    end,
  })
  -- Last resort if a callback never comes back; pytest has its own, longer timeout.
  vim.defer_fn(function()
    H.fail('the test did not finish within 120 s')
  end, 120000)
end

return H
