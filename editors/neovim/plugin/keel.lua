-- Commands of the keel plugin; see editors/neovim/README.md.
if vim.g.loaded_keel then
  return
end
vim.g.loaded_keel = true

local function command(name, fn, opts)
  vim.api.nvim_create_user_command(name, fn, opts or {})
end

command('KeelChat', function()
  require('keel').open_chat()
end)
command('KeelPrompt', function(args)
  require('keel').prompt(args.args, 'queue')
end, { nargs = '+' })
command('KeelQueue', function(args)
  require('keel').prompt(args.args, 'queue')
end, { nargs = '+' })
command('KeelSteer', function(args)
  require('keel').prompt(args.args, 'steer')
end, { nargs = '+' })
command('KeelInterrupt', function()
  require('keel').interrupt()
end)
command('KeelSessions', function()
  require('keel').sessions()
end)
command('KeelRestart', function()
  require('keel').restart()
end)
