--- The ghost-text highlight, `SantacoderGhostText`: linked to Comment.
local M = {}

M.group = 'SantacoderGhostText'

local GREY_CTERM = 8 -- "bright black" in 16- and 256-colour palettes
local own ---@type table? the definition set last, to tell it from one the user made

--- (Re)defines the highlight unless the user defined it. Neovim's default colour scheme gives
--- Comment no terminal colour, so without 'termguicolors' the ghost text would look like typed
--- text: then it is grey instead. Cheap; called on ColorScheme, on 'termguicolors' changes and
--- before drawing (Neovim may switch 'termguicolors' on at startup without an OptionSet event).
function M.define()
  local current = vim.api.nvim_get_hl(0, { name = M.group })
  if next(current) ~= nil and not vim.deep_equal(current, own) then
    return
  end
  local comment = vim.api.nvim_get_hl(0, { name = 'Comment', link = false })
  local wanted = { link = 'Comment' }
  if not vim.o.termguicolors and comment.ctermfg == nil then
    wanted = { ctermfg = GREY_CTERM, fg = comment.fg }
  end
  vim.api.nvim_set_hl(0, M.group, wanted)
  own = vim.api.nvim_get_hl(0, { name = M.group })
end

return M
