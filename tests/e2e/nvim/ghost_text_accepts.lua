-- Tab accepts the shown suggestion into the buffer and runs the item's command on the server
-- (workspace/executeCommand); with nothing shown, Tab is an ordinary Tab.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

require('santacoder').setup({ cmd = H.server_cmd, settings = H.server_settings, inline = 'ghost' })

H.run(function()
  local bufnr = H.edit('demo.py', { 'def add(a, b):', '' })
  local client = H.wait_for_client(bufnr)
  H.log('server attached; model:', H.wait_for_model(client, bufnr))

  local executed = {}
  vim.api.nvim_create_autocmd('LspRequest', {
    callback = function(args)
      local request = args.data.request
      if request.method == 'workspace/executeCommand' and request.type == 'pending' then
        executed[#executed + 1] = args.data.request_id
      end
    end,
  })

  H.type('GA    ')
  H.wait_for('ghost text after typing', function()
    return require('santacoder.ghost').is_visible(bufnr)
  end)
  local suggestion = require('santacoder.ghost').visible_lines(bufnr)
  H.log('suggestion:', suggestion)

  if H.fake then
    H.eq({ 'total = a + b', '    return total' }, suggestion, 'suggestion')
  end
  -- The expected buffer: the suggestion inserted at the cursor (end of line 2).
  local expected = { 'def add(a, b):', '    ' .. suggestion[1] }
  for i = 2, #suggestion do
    expected[#expected + 1] = suggestion[i]
  end
  H.type('<Tab>')
  H.wait_for('Tab to insert the suggestion', function()
    return vim.deep_equal(expected, vim.api.nvim_buf_get_lines(bufnr, 0, -1, false))
  end, 5000)
  H.eq(0, #H.ghost_marks(bufnr), 'ghost extmarks right after accepting')
  local last = expected[#expected]
  H.eq({ #expected, #last }, vim.api.nvim_win_get_cursor(0), 'cursor at the end of the insertion')
  H.eq('i', vim.api.nvim_get_mode().mode, 'still in insert mode')
  H.wait_for('the item command (workspace/executeCommand) to be sent', function()
    return #executed > 0
  end, 5000)
  H.wait_for('the server to count the acceptance', function()
    return H.request(client, 'santacoder/stats', nil, bufnr).accepted == 1
  end, 5000)

  -- Nothing shown: Tab is a plain Tab (Python's ftplugin: expandtab, softtabstop 4).
  H.type('<Esc>o<Tab>x') -- Python's indent dedents after `return`: the new line starts empty
  H.wait_for('a plain Tab on a new line', function()
    return vim.api.nvim_buf_get_lines(bufnr, -2, -1, false)[1]:match('^%s+x$') ~= nil
  end, 5000)
  if H.fake then
    H.eq({ '    x' }, vim.api.nvim_buf_get_lines(bufnr, -2, -1, false), 'line typed with a plain Tab')
  end
end)
