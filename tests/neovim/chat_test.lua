-- Driven by tests/neovim.rs: opens the chat, prompts, sees the streamed answer, answers an approval, restarts the
-- engine and goes on from the cursor. Writes what it saw to $RESULT and exits 0, or exits 1 with the reason.
vim.opt.rtp:prepend(os.getenv('KEEL_NVIM_PLUGIN'))
local keel = require('keel')
local result = io.open(os.getenv('RESULT'), 'w')

local function fail(reason)
  result:write('FAIL: ' .. reason .. '\n' .. keel.chat_text() .. '\n')
  result:close()
  vim.cmd('cquit 1')
end

local function wait_for(what, predicate)
  if not vim.wait(20000, predicate, 20) then
    fail('timed out waiting for ' .. what)
  end
end

local asked = {}
vim.ui.select = function(items, opts, on_choice)
  table.insert(asked, opts.prompt)
  on_choice('once')
end

keel.setup({ cmd = { os.getenv('KEEL_BIN'), 'serve' } })
keel.open_chat(os.getenv('WORKSPACE'))
wait_for('the session', function()
  return keel.state.subscription ~= nil
end)

keel.prompt('Write hello.txt', 'queue')
wait_for('the first answer', function()
  return keel.chat_text():find('First answer is complete', 1, true) ~= nil
end)
wait_for('the end of the first activity', function()
  return keel.chat_text():find('-- completed --', 1, true) ~= nil
end)
if #asked ~= 1 then
  fail('expected one approval, got ' .. #asked)
end
local before = keel.state.cursor[keel.state.session]

keel.restart()
wait_for('the engine after the restart', function()
  return keel.state.initialized and keel.state.subscription ~= nil
end)
keel.prompt('And now?', 'queue')
wait_for('the second answer', function()
  return keel.chat_text():find('Second answer after the restart', 1, true) ~= nil
end)
wait_for('the end of the second activity', function()
  local _, count = keel.chat_text():gsub('%-%- completed %-%-', '')
  return count == 2
end)

keel.prompt('Delegate the look', 'queue')
wait_for('the subagent', function()
  local text = keel.chat_text()
  return text:find('explore subagent', 1, true) ~= nil and text:find('Delegated and done.', 1, true) ~= nil
end)
keel.prompt('Build in the background', 'queue')
wait_for('the job to end and wake the session', function()
  local text = keel.chat_text()
  return text:find('exited with 0', 1, true) ~= nil and text:find('The job finished.', 1, true) ~= nil
end)

result:write('OK\n')
result:write('approval: ' .. asked[1] .. '\n')
result:write('cursor before restart: ' .. before .. '\n')
result:write('cursor after: ' .. keel.state.cursor[keel.state.session] .. '\n')
result:write('deltas: ' .. keel.state.deltas .. '\n')
result:write(keel.chat_text() .. '\n')
result:close()
vim.cmd('qall!')
