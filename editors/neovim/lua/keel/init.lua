-- keel for Neovim: a chat buffer over keel's native protocol (newline-delimited JSON-RPC on the engine's stdio).
-- Works on Neovim 0.7 and later: the engine runs under jobstart, answers stream in as session/delta, and every
-- durable step arrives as session/event with a seq that the plugin keeps, so a restarted engine is followed from
-- exactly where the chat stopped.

local M = {}

local state = {
  job = nil,
  next_id = 0,
  pending = {},
  partial = '',
  initialized = false,
  session = nil,
  subscription = nil,
  cursor = {}, -- session id -> last seq seen
  blocks = {}, -- ordered chat blocks {id, text}
  index = {}, -- block id -> position in blocks
  buf = nil,
  deltas = 0, -- streamed fragments received
  completed = {}, -- part id -> true once its whole text arrived
  config = { cmd = { 'keel', 'serve' }, env = nil },
}
M.state = state

local function encode(value)
  return vim.json.encode(value)
end

local function decode(line)
  local ok, value = pcall(vim.json.decode, line, { luanil = { object = true, array = true } })
  if ok then
    return value
  end
  return nil
end

local function send(message)
  message.jsonrpc = '2.0'
  vim.fn.chansend(state.job, encode(message) .. '\n')
end

--- Calls a method; `callback(err, result)` runs on the answer.
function M.request(method, params, callback)
  state.next_id = state.next_id + 1
  local id = state.next_id
  state.pending[id] = callback or function() end
  send({ id = id, method = method, params = params or vim.empty_dict() })
  return id
end

local function notify(method, params)
  send({ method = method, params = params or vim.empty_dict() })
end

-- Rendering ----------------------------------------------------------------------------------------------------

local function render()
  if not state.buf or not vim.api.nvim_buf_is_valid(state.buf) then
    return
  end
  local lines = {}
  for _, block in ipairs(state.blocks) do
    for _, line in ipairs(vim.split(block.text, '\n', { plain = true })) do
      table.insert(lines, line)
    end
    table.insert(lines, '')
  end
  vim.api.nvim_buf_set_option(state.buf, 'modifiable', true)
  vim.api.nvim_buf_set_lines(state.buf, 0, -1, false, lines)
  vim.api.nvim_buf_set_option(state.buf, 'modifiable', false)
end

local function set_block(id, text)
  local at = state.index[id]
  if at then
    state.blocks[at].text = text
  else
    table.insert(state.blocks, { id = id, text = text })
    state.index[id] = #state.blocks
  end
  render()
end

local function block_text(id)
  local at = state.index[id]
  return at and state.blocks[at].text or nil
end

--- The chat as plain text, for tests and for yanking.
function M.chat_text()
  local parts = {}
  for _, block in ipairs(state.blocks) do
    table.insert(parts, block.text)
  end
  return table.concat(parts, '\n')
end

local function summary(input)
  if type(input) ~= 'table' then
    return ''
  end
  return input.filePath or input.command or input.pattern or input.url or ''
end

-- Protocol -----------------------------------------------------------------------------------------------------

local handlers = {}

handlers['session/event'] = function(params)
  local event = params.event
  if params.subscriptionId ~= state.subscription then
    return
  end
  state.cursor[event.sessionId] = event.seq
  local data = event.data or {}
  local kind = event.type
  if kind == 'input.admitted' then
    local texts = {}
    for _, part in ipairs(data.input or {}) do
      table.insert(texts, part.text or ('[' .. (part.type or '?') .. ']'))
    end
    local label = data.delivery == 'steer' and 'You (steer)' or 'You'
    set_block('in:' .. data.inputId, label .. ': ' .. table.concat(texts, ' '))
  elseif kind == 'text.completed' then
    state.completed[data.partId] = true
    set_block(data.partId, data.text)
  elseif kind == 'reasoning.completed' then
    set_block(data.partId, '(thinking) ' .. data.text)
  elseif kind == 'tool.called' then
    set_block('tool:' .. data.callId, string.format('[%s %s] pending', data.tool, summary(data.input)))
  elseif kind == 'tool.started' or kind == 'tool.completed' or kind == 'tool.failed' then
    local id = 'tool:' .. data.callId
    local current = block_text(id) or ('[tool ' .. data.callId .. ']')
    local status = ({ ['tool.started'] = 'running', ['tool.completed'] = 'done', ['tool.failed'] = 'failed' })[kind]
    local head = current:gsub('%] .*$', ']')
    local text = head .. ' ' .. status
    if kind == 'tool.failed' then
      text = text .. ': ' .. (data.error or '')
    end
    set_block(id, text)
  elseif kind == 'activity.closed' then
    set_block('act:' .. data.activityId, '-- ' .. data.reason .. ' --')
  elseif kind == 'turn.failed' then
    set_block('fail:' .. data.turnId, 'error: ' .. ((data.error or {}).message or '?'))
  elseif kind == 'subagent.started' then
    local line = string.format('  ↳ %s subagent: %s (session %s)', data.agent, data.description, data.childSessionId)
    set_block('sub:' .. data.childSessionId, line)
  elseif kind == 'subagent.completed' then
    local id = 'sub:' .. data.childSessionId
    set_block(id, (block_text(id) or '  ↳ subagent') .. ' ' .. data.reason)
  elseif kind == 'job.started' then
    set_block('job:' .. data.jobId, string.format('  ⧗ job %s: %s running', data.jobId, data.command))
  elseif kind == 'job.completed' or kind == 'job.failed' or kind == 'job.cancelled' then
    local id = 'job:' .. data.jobId
    local head = (block_text(id) or ('  ⧗ job ' .. data.jobId)):gsub(' running$', '')
    local ending = ({
      ['job.completed'] = 'exited with ' .. tostring(data.exitCode or 'a signal'),
      ['job.failed'] = 'failed: ' .. (data.error or ''),
      ['job.cancelled'] = 'cancelled',
    })[kind]
    set_block(id, head .. ' ' .. ending)
  end
end

handlers['session/delta'] = function(params)
  -- A fragment that arrives after its part's whole text adds nothing.
  if params.sessionId ~= state.session or params.kind ~= 'text' or state.completed[params.partId] then
    return
  end
  state.deltas = state.deltas + 1
  set_block(params.partId, (block_text(params.partId) or '') .. params.delta)
end

local requests = {}

requests['approval/request'] = function(params, respond)
  vim.ui.select({ 'once', 'always', 'reject' }, { prompt = params.title }, function(choice)
    respond({ decision = choice or 'reject' })
  end)
end

local function handle(line)
  if line == '' then
    return
  end
  local message = decode(line)
  if not message then
    return
  end
  if message.method and message.id ~= nil then
    local handler = requests[message.method]
    local id = message.id
    if handler then
      handler(message.params, function(result)
        send({ id = id, result = result })
      end)
    else
      send({ id = id, error = { code = -32601, message = 'not handled by the Neovim plugin' } })
    end
  elseif message.method then
    local handler = handlers[message.method]
    if handler then
      handler(message.params or {})
    end
  elseif message.id ~= nil then
    local callback = state.pending[message.id]
    state.pending[message.id] = nil
    if callback then
      callback(message.error, message.result)
    end
  end
end

local function on_stdout(_, data)
  -- jobstart splits on newlines; the first item continues the previous read, the last is a partial line.
  data[1] = state.partial .. data[1]
  state.partial = data[#data]
  for i = 1, #data - 1 do
    handle(data[i])
  end
end

-- Lifecycle ----------------------------------------------------------------------------------------------------

function M.setup(opts)
  state.config = vim.tbl_extend('force', state.config, opts or {})
end

--- Starts the engine and initializes; `on_ready` runs once it answered.
function M.start(on_ready)
  state.initialized = false
  state.partial = ''
  state.pending = {}
  state.job = vim.fn.jobstart(state.config.cmd, {
    on_stdout = on_stdout,
    on_exit = function()
      state.initialized = false
    end,
    env = state.config.env,
  })
  if state.job <= 0 then
    error('keel: cannot start ' .. table.concat(state.config.cmd, ' '))
  end
  M.request('initialize', {
    protocolVersion = 1,
    clientInfo = { name = 'keel.nvim', version = '0.1.0' },
    capabilities = { approvals = true, deltas = true },
  }, function(err)
    if err then
      vim.notify('keel: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    notify('initialized')
    state.initialized = true
    if on_ready then
      on_ready()
    end
  end)
end

--- Follows a session from the last seq this chat saw (or from its beginning).
function M.attach(session_id)
  state.session = session_id
  local after = state.cursor[session_id] or 0
  M.request('session/subscribe', { sessionId = session_id, afterSeq = after }, function(err, result)
    if err then
      vim.notify('keel: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    state.subscription = result.subscriptionId
  end)
end

local function ensure_buffer()
  if state.buf and vim.api.nvim_buf_is_valid(state.buf) then
    return
  end
  state.buf = vim.api.nvim_create_buf(true, true)
  vim.api.nvim_buf_set_name(state.buf, 'keel://chat')
  vim.api.nvim_buf_set_option(state.buf, 'filetype', 'markdown')
  vim.api.nvim_buf_set_option(state.buf, 'modifiable', false)
end

--- Opens the chat buffer on a new session in `cwd` (default: the current directory).
function M.open_chat(cwd)
  ensure_buffer()
  vim.api.nvim_set_current_buf(state.buf)
  local function create()
    M.request('session/create', { cwd = cwd or vim.fn.getcwd() }, function(err, result)
      if err then
        vim.notify('keel: ' .. err.message, vim.log.levels.ERROR)
        return
      end
      M.attach(result.session.id)
    end)
  end
  if state.initialized then
    create()
  else
    M.start(create)
  end
end

--- Sends input with `delivery` 'queue' (a new activity after the current one) or 'steer' (joins the current one).
function M.prompt(text, delivery)
  if not state.session then
    vim.notify('keel: open a chat first (:KeelChat)', vim.log.levels.WARN)
    return
  end
  M.request('session/prompt', {
    sessionId = state.session,
    input = { { type = 'text', text = text } },
    delivery = delivery or 'queue',
  }, function(err)
    if err then
      vim.notify('keel: ' .. err.message, vim.log.levels.ERROR)
    end
  end)
end

function M.interrupt()
  if state.session then
    M.request('session/interrupt', { sessionId = state.session })
  end
end

--- Lists sessions and attaches the chosen one.
function M.sessions()
  M.request('session/list', vim.empty_dict(), function(err, result)
    if err then
      return
    end
    vim.ui.select(result.sessions, {
      prompt = 'keel sessions',
      format_item = function(s)
        return s.title .. '  (' .. s.cwd .. ')'
      end,
    }, function(choice)
      if choice then
        ensure_buffer()
        vim.api.nvim_set_current_buf(state.buf)
        state.blocks, state.index = {}, {}
        state.cursor[choice.id] = 0
        M.attach(choice.id)
      end
    end)
  end)
end

--- Restarts the engine and follows the session again from the last seq seen: nothing is missed or repeated.
function M.restart()
  if state.job then
    vim.fn.jobstop(state.job)
    vim.fn.jobwait({ state.job }, 5000)
  end
  M.start(function()
    if state.session then
      M.attach(state.session)
    end
  end)
end

return M
