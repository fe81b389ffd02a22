//! `keel acp`: the Agent Client Protocol (v1) over stdio, on the same engine. Editors that speak ACP (Zed,
//! JetBrains, Neovim and Emacs plugins) drive keel sessions through it.
//!
//! The connection layer is `rpc`'s (ndjson framing is detected like any other); this module is only a method table
//! translating ACP calls into engine calls, and engine events into `session/update`s (`updates`).

mod error;
mod ordering;
pub mod schema;
mod updates;

use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use keel_protocol::approval::Resolved;
use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery, InputKind};
use keel_protocol::session::ReasoningEffort;
use keel_protocol::turn::{CloseReason, DeltaKind};
use serde_json::Value;

use crate::engine::Engine;
use crate::mcp;
use crate::provider::registry::Registry;
use crate::rpc::{Call, PeerRef};
use crate::session::inbox::NewInput;
use crate::session::prompt::Step;
use crate::session::service::{NewSession, SessionChanges, effort_of};
use crate::session::{Delta, Notice};
use crate::store::approvals::ApprovalRow;
pub use error::AcpError;
pub use ordering::ordering;
pub use schema::PROTOCOL_VERSION;
use schema::*;
use updates::{Child, Mapper, is_job, tool_kind, tool_title};

type Reply<T> = Result<T, AcpError>;

/// The ACP method table.
pub fn methods(engine: Arc<Engine>) -> Result<RpcModule<Engine>, RegisterMethodError> {
    let mut module = RpcModule::from_arc(engine);
    macro_rules! method {
        ($name:literal, $handler:path) => {
            module.register_async_method($name, |params, engine, ext| async move {
                let call = ext.get::<Call>().cloned().ok_or_else(|| AcpError::internal("no call context"))?;
                let params = error::parse(params.as_str())?;
                $handler(engine, params, call).await.map_err(jsonrpsee::types::ErrorObjectOwned::from)
            })?;
        };
    }
    method!("initialize", initialize);
    method!("session/new", new_session);
    method!("session/load", load_session);
    method!("session/resume", resume_session);
    method!("session/fork", fork_session);
    method!("session/list", list_sessions);
    method!("session/close", close_session);
    method!("session/prompt", prompt);
    method!("session/cancel", cancel);
    method!("session/set_config_option", set_config_option);
    method!("session/set_mode", set_mode);
    method!("_keel/steer", steer);
    Ok(module)
}

async fn initialize(engine: Arc<Engine>, params: InitializeRequest, call: Call) -> Reply<InitializeResponse> {
    let name = params.client_info.and_then(|c| c.name).unwrap_or_else(|| "acp client".to_owned());
    let already = call.peer.update_lifecycle(|l| {
        l.client_name = name;
        std::mem::replace(&mut l.initialized, true)
    });
    if !already {
        // Subscribed before the answer, so that no change after it is missed.
        let notices = engine.notices().subscribe();
        let peer = Arc::clone(&call.peer);
        call.after_response(move || {
            let sender = Arc::clone(&peer);
            peer.spawn_task("acp-options".into(), follow_options(engine, notices, sender));
        });
    }
    Ok(initialized())
}

/// What this connection last told the client of each session it opened: the options and the mode. A
/// connection's view, kept to tell changes from repeats; the session's state itself is the log's.
#[derive(Default)]
struct Shown {
    sessions: parking_lot::Mutex<std::collections::HashMap<String, (Vec<ConfigOption>, String)>>,
}

fn remember_shown(peer: &PeerRef, session_id: &str, options: &[ConfigOption]) {
    let mode = current_mode(options).unwrap_or_default();
    peer.state::<Shown>().sessions.lock().insert(session_id.to_owned(), (options.to_vec(), mode));
}

fn current_mode(options: &[ConfigOption]) -> Option<String> {
    options.iter().find_map(|ConfigOption::Select(o)| (o.id == "mode").then(|| o.current_value.clone()))
}

/// Config, models, providers and credentials change underneath open sessions (a config edit that changes the
/// default model, a key added): each session this connection opened gets `config_option_update` when its options
/// now read differently, and `current_mode_update` when its mode did.
async fn follow_options(engine: Arc<Engine>, mut notices: tokio::sync::broadcast::Receiver<Notice>, peer: PeerRef) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match notices.recv().await {
            Ok(
                Notice::ConfigChanged { .. }
                | Notice::ModelsChanged
                | Notice::ProvidersChanged
                | Notice::AuthChanged { .. },
            )
            | Err(RecvError::Lagged(_)) => {}
            Ok(_) => continue,
            Err(RecvError::Closed) => return,
        }
        let shown: Vec<(String, (Vec<ConfigOption>, String))> =
            peer.state::<Shown>().sessions.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (session_id, (old, old_mode)) in shown {
            let Ok(options) = config_options(&engine, &session_id) else { continue };
            if options == old {
                continue;
            }
            remember_shown(&peer, &session_id, &options);
            let mode = current_mode(&options).unwrap_or_default();
            if mode != old_mode {
                send_update(
                    &peer,
                    &session_id,
                    unplaced(UpdateKind::CurrentModeUpdate(CurrentMode { current_mode_id: mode })),
                )
                .await;
            }
            let update = UpdateKind::ConfigOptionUpdate(ConfigOptionsResponse { config_options: options });
            send_update(&peer, &session_id, unplaced(update)).await;
        }
    }
}

/// An update that is no event of the log: it has no place in it.
fn unplaced(kind: UpdateKind) -> SessionUpdate {
    SessionUpdate { kind, meta: Meta { keel: Position { seq: None, after_seq: None } } }
}

/// What keel can do, the same for every client.
fn initialized() -> InitializeResponse {
    InitializeResponse {
        protocol_version: PROTOCOL_VERSION,
        agent_capabilities: AgentCapabilities {
            load_session: true,
            prompt_capabilities: PromptCapabilities { image: true, audio: false, embedded_context: true },
            mcp_capabilities: McpCapabilities { http: true, sse: false },
            session_capabilities: SessionCapabilities {
                list: Some(Empty {}),
                resume: Some(Empty {}),
                close: Some(Empty {}),
                fork: Some(Empty {}),
            },
            meta: Some(Meta {
                keel: KeelCapabilities { steer: "_keel/steer", protocol_version: keel_protocol::PROTOCOL_VERSION },
            }),
        },
        auth_methods: Vec::new(),
        agent_info: Implementation { name: "keel", title: "keel", version: env!("CARGO_PKG_VERSION") },
    }
}

/// The agents a session can switch to, as ACP modes: the primary ones (subagents run only as `task` calls), and the
/// session's own whatever it is.
fn modes(config: &crate::config::Config, current: &str) -> SessionModeState {
    let mut available_modes: Vec<SessionMode> = config
        .agents
        .iter()
        .filter(|(name, a)| a.mode.as_deref() != Some("subagent") || name.as_str() == current)
        .map(|(name, a)| SessionMode { id: name.clone(), name: name.clone(), description: a.description.clone() })
        .collect();
    if !available_modes.iter().any(|m| m.id == current) {
        available_modes.push(SessionMode { id: current.to_owned(), name: current.to_owned(), description: None });
    }
    SessionModeState { current_mode_id: current.to_owned(), available_modes }
}

fn config_options(engine: &Engine, session_id: &str) -> Reply<Vec<ConfigOption>> {
    Ok(choices(engine, session_id)?.1)
}

/// The session's modes, and its choices as ACP config options: the model (those that can run, the configured
/// default and the session's own; never the offline scripted player unless config names it) and the mode (its
/// agent). One read of the session and its config for both.
fn choices(engine: &Engine, session_id: &str) -> Reply<(SessionModeState, Vec<ConfigOption>)> {
    let session = engine.sessions.get(session_id)?;
    let config = engine.config(Some(&session.cwd));
    let default_model = Registry::default_model(&config);
    let current_model = if session.model.is_empty() { default_model.clone() } else { session.model.clone() };
    let known = engine.providers().models(&config);
    let runnable = engine.providers().runnable_each(&config, &known);
    let reasons = known.iter().any(|m| m.id == current_model && m.reasoning);
    let mut models: Vec<SelectValue> = known
        .into_iter()
        .zip(runnable)
        .filter(|(m, runnable)| {
            runnable.is_ok() || m.id == current_model || config.model.as_deref() == Some(m.id.as_str())
        })
        .map(|(m, _)| SelectValue { value: m.id, name: m.name, description: None })
        .collect();
    for wanted in [&current_model, &default_model] {
        let configured = config.model.as_deref() == Some(wanted.as_str());
        if (wanted == &current_model || configured) && !models.iter().any(|m| &m.value == wanted) {
            models.push(SelectValue { value: wanted.clone(), name: wanted.clone(), description: None });
        }
    }
    let modes = modes(&config, &session.agent);
    let mut options = vec![
        ConfigOption::Select(SelectOption {
            id: "model",
            name: "Model",
            category: "model",
            current_value: current_model,
            options: models,
        }),
        ConfigOption::Select(SelectOption {
            id: "mode",
            name: "Agent",
            category: "mode",
            current_value: modes.current_mode_id.clone(),
            options: modes
                .available_modes
                .iter()
                .map(|m| SelectValue { value: m.id.clone(), name: m.name.clone(), description: m.description.clone() })
                .collect(),
        }),
    ];
    if reasons {
        options.push(reasoning_option(session.reasoning_effort, effort_of(&session, &session.agent, &config)));
    }
    Ok((modes, options))
}

/// The reasoning effort as an option, offered for models that reason; `default` names what it stands for.
fn reasoning_option(current: ReasoningEffort, effective: Option<ReasoningEffort>) -> ConfigOption {
    let default_name = match effective.filter(|_| current.is_default()) {
        Some(effort) => format!("Default ({})", effort.as_str()),
        None => "Default".to_owned(),
    };
    let options = ReasoningEffort::ALL
        .into_iter()
        .map(|effort| SelectValue {
            value: effort.as_str().to_owned(),
            name: if effort.is_default() { default_name.clone() } else { capitalized(effort.as_str()) },
            description: None,
        })
        .collect();
    ConfigOption::Select(SelectOption {
        id: "reasoning",
        name: "Reasoning effort",
        category: "thought_level",
        current_value: current.as_str().to_owned(),
        options,
    })
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

async fn new_session(engine: Arc<Engine>, params: NewSessionRequest, call: Call) -> Reply<NewSessionResponse> {
    let specs = mcp_specs(params.mcp_servers, &params.cwd)?;
    let new = NewSession { cwd: params.cwd, title: None, agent: None, model: None, parent_id: None };
    let session = engine.sessions.create(new)?;
    start_mcp(&engine, &call.peer, &session.id, &session.cwd, specs);
    announce_commands(&engine, &call, &session.id, &session.cwd, session.head_seq);
    seen(&call.peer, &session.id, session.head_seq);
    let opened = opened(&engine, &call, &session.id, &session.cwd)?;
    Ok(NewSessionResponse { session_id: session.id, modes: opened.modes, config_options: opened.config_options })
}

/// `session/fork`: the engine's fork of the session at its head, answered and announced like a new session. The
/// client already shows the source's history, so none is replayed.
async fn fork_session(engine: Arc<Engine>, params: ForkSessionRequest, call: Call) -> Reply<NewSessionResponse> {
    let source = engine.sessions.get(&params.session_id)?;
    let specs = mcp_specs(params.mcp_servers, &source.cwd)?;
    let session = engine.sessions.fork(&source.id, None)?;
    start_mcp(&engine, &call.peer, &session.id, &session.cwd, specs);
    announce_commands(&engine, &call, &session.id, &session.cwd, session.head_seq);
    seen(&call.peer, &session.id, session.head_seq);
    let opened = opened(&engine, &call, &session.id, &session.cwd)?;
    Ok(NewSessionResponse { session_id: session.id, modes: opened.modes, config_options: opened.config_options })
}

/// How far this connection has shown each session's log: what happens between its prompts (a background job
/// ending while the session is idle) is caught up on at the next prompt. A connection's view, like `Shown`.
#[derive(Default)]
struct Seen {
    sessions: parking_lot::Mutex<std::collections::HashMap<String, u64>>,
}

fn seen(peer: &PeerRef, session_id: &str, seq: u64) {
    let state = peer.state::<Seen>();
    let mut sessions = state.sessions.lock();
    let at = sessions.entry(session_id.to_owned()).or_default();
    *at = (*at).max(seq);
}

/// A session this connection now shows: its project's config files are watched, and what the client is told of
/// its options is remembered, so that later changes reach it.
fn opened(engine: &Engine, call: &Call, session_id: &str, cwd: &str) -> Reply<OpenSessionResponse> {
    engine.watch_project(std::path::Path::new(cwd));
    let (modes, config_options) = choices(engine, session_id)?;
    remember_shown(&call.peer, session_id, &config_options);
    Ok(OpenSessionResponse { modes, config_options })
}

async fn resume_session(engine: Arc<Engine>, params: ResumeSessionRequest, call: Call) -> Reply<OpenSessionResponse> {
    let session = engine.sessions.get(&params.session_id)?;
    let specs = mcp_specs(params.mcp_servers, &session.cwd)?;
    start_mcp(&engine, &call.peer, &session.id, &session.cwd, specs);
    seen(&call.peer, &session.id, session.head_seq);
    opened(&engine, &call, &session.id, &session.cwd)
}

/// Tells the client the session's slash commands (commands and skills) once it knows the session.
/// `after_seq` places it in the session's log, as every update is.
fn announce_commands(engine: &Arc<Engine>, call: &Call, session_id: &str, cwd: &str, after_seq: u64) {
    let available_commands = engine
        .commands(Some(cwd), Some(session_id))
        .into_iter()
        .map(|c| AvailableCommand {
            description: c.description().to_owned(),
            input: c.takes_arguments().then(|| CommandInput { hint: c.hint() }),
            name: c.name,
        })
        .collect();
    let update = SessionUpdate {
        kind: UpdateKind::AvailableCommandsUpdate(AvailableCommands { available_commands }),
        meta: Meta { keel: Position { seq: None, after_seq: Some(after_seq) } },
    };
    update_after_response(call, "commands", session_id, update);
}

/// Sends `update` once the request's answer is out: a client learns of a session before hearing about it.
fn update_after_response(call: &Call, what: &str, session_id: &str, update: SessionUpdate) {
    let (peer, task, session_id) = (Arc::clone(&call.peer), format!("{what} {session_id}"), session_id.to_owned());
    call.after_response(move || {
        let sender = Arc::clone(&peer);
        peer.spawn_task(task, async move { send_update(&sender, &session_id, update).await });
    });
}

/// A prompt that is one text starting with a known `/command`: that command's input.
async fn slash_command(engine: &Engine, cwd: &str, session_id: &str, input: &[ContentPart]) -> Option<NewInput> {
    let [ContentPart::Text { text }] = input else { return None };
    let (name, arguments) = crate::agent::commands::parse_invocation(text)?;
    crate::api::agent::command_input(engine, cwd, Some(session_id), name, arguments).await.ok()
}

/// ACP's `mcpServers` as keel's specs. A server that cannot be used (SSE, a program that does not exist) is the
/// request's error, so the client hears of it before it counts on the server's tools.
fn mcp_specs(servers: Vec<McpServer>, cwd: &str) -> Reply<Vec<mcp::ServerSpec>> {
    servers
        .into_iter()
        .enumerate()
        .map(|(i, server)| {
            let path = format!("mcpServers[{i}]");
            let pairs = |list: Vec<NameValue>| list.into_iter().map(|p| (p.name, p.value)).collect();
            let transport = match server.kind.as_deref() {
                None | Some("stdio") => {
                    let command = server.command.unwrap_or_default();
                    if !mcp::config::program_exists(&command, std::path::Path::new(cwd)) {
                        return Err(AcpError::invalid(&format!("{path}.command"), format!("{command:?} not found")));
                    }
                    mcp::Transport::Stdio { command, args: server.args, env: pairs(server.env), cwd: None }
                }
                Some("http") => {
                    mcp::Transport::Http { url: server.url.unwrap_or_default(), headers: pairs(server.headers) }
                }
                Some(other) => {
                    return Err(AcpError::invalid(
                        &format!("{path}.type"),
                        format!("{other} servers are not supported"),
                    ));
                }
            };
            mcp::ServerSpec::new(&server.name, transport, &path).map_err(|e| AcpError::invalid(&e.path, e.message))
        })
        .collect()
}

/// Starts a session's own MCP servers for as long as this connection lasts (or the session is closed), and tells
/// this client, as an agent message, of each one that fails: it passed them and would otherwise miss their tools
/// in silence.
fn start_mcp(engine: &Arc<Engine>, peer: &PeerRef, session_id: &str, cwd: &str, specs: Vec<mcp::ServerSpec>) {
    if specs.is_empty() {
        return;
    }
    // Subscribed before the servers start, so no failure is missed.
    let mut changes = engine.watch_mcp();
    let servers = engine.start_session_mcp(session_id, cwd, specs);
    /// Stops the servers with the task: when the connection ends, the session closes, or a later open replaces it.
    struct Release(Arc<Engine>, mcp::SessionServers);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.stop_session_mcp(&self.1);
        }
    }
    let release = Release(Arc::clone(engine), servers);
    let (peer_ref, session) = (Arc::clone(peer), session_id.to_owned());
    peer.spawn_task(mcp_task(session_id), async move {
        let release = release;
        let names = release.1.names();
        let mut reported = std::collections::HashMap::<String, String>::new();
        loop {
            let info = match changes.recv().await {
                Ok(info) => info,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if info.session_id.as_deref() != Some(session.as_str()) || !names.contains(&info.name) {
                continue;
            }
            match info.status {
                mcp::Status::Failed { reason, .. } => {
                    if reported.get(&info.name) == Some(&reason) {
                        continue;
                    }
                    let text = format!("MCP server `{}` failed: {reason}\n", info.name);
                    reported.insert(info.name.clone(), reason);
                    let kind = UpdateKind::AgentMessageChunk(Chunk {
                        content: ContentBlock::Text { text },
                        message_id: format!("mcp_{}", info.name),
                    });
                    let update = SessionUpdate { kind, meta: Meta { keel: Position { seq: None, after_seq: None } } };
                    send_update(&peer_ref, &session, update).await;
                }
                mcp::Status::Ready => {
                    reported.remove(&info.name);
                }
                mcp::Status::Starting | mcp::Status::Stopped => {}
            }
        }
    });
}

fn mcp_task(session_id: &str) -> String {
    format!("mcp:{session_id}")
}

/// Replays the stored history as `session/update`s, then answers.
async fn load_session(engine: Arc<Engine>, params: LoadSessionRequest, call: Call) -> Reply<OpenSessionResponse> {
    let session_id = params.session_id;
    let session = engine.sessions.get(&session_id)?;
    let specs = mcp_specs(params.mcp_servers, &session.cwd)?;
    start_mcp(&engine, &call.peer, &session_id, &session.cwd, specs);
    announce_commands(&engine, &call, &session_id, &session.cwd, session.head_seq);
    let mut mapper = mapper(&engine, &session.cwd, &session.model);
    let mut history = engine.follow(&session_id, Some(0))?;
    while let Some(events) = history.next_page(512, false).await? {
        for event in events {
            let body = event.body().map_err(AcpError::internal)?;
            if let EventBody::SubagentCompleted(d) = &body {
                read_child(&engine, &mut mapper, &d.call_id, &d.child_session_id);
            }
            for update in mapper.updates(event.seq, body) {
                send_update(&call.peer, &session_id, update).await;
            }
        }
    }
    seen(&call.peer, &session_id, history.cursor());
    opened(&engine, &call, &session_id, &session.cwd)
}

/// A subagent's whole log, read into its `task` call's content once it ended (the child's activity closed before
/// the parent recorded `subagent.completed`). A child that cannot be read shows what was seen of it.
fn read_child(engine: &Engine, mapper: &mut Mapper, call_id: &str, child_session_id: &str) {
    // The line naming the subagent stays; the rest is read again.
    let header = mapper.children.remove(call_id).and_then(|c| c.content.into_iter().next());
    let mut child = Child { content: header.into_iter().collect() };
    let mut after = 0;
    while let Ok(events) = engine.events(child_session_id, after, 512) {
        let Some(last) = events.last() else { break };
        after = last.seq;
        for event in &events {
            if let Ok(body) = event.body() {
                child.add(&body);
            }
        }
    }
    mapper.children.insert(call_id.to_owned(), child);
}

/// Follows a running subagent's log and shows its progress as updates of the parent's `task` call, until the
/// child's activity closes. Its end is awaited before the call's last update, which reads the child's whole log
/// as a replay does, so that no progress update comes after it; dropped with the prompt, which aborts it.
fn follow_child(
    engine: &Engine,
    peer: &PeerRef,
    session_id: &str,
    started: &keel_protocol::agent::SubagentStartedData,
    after_seq: u64,
) -> Option<ChildTask> {
    let mut follower = engine.follow(&started.child_session_id, Some(0)).ok()?;
    let mut child = Child::new(started);
    let (peer, session_id, call_id) = (Arc::clone(peer), session_id.to_owned(), started.call_id.clone());
    Some(ChildTask(tokio::spawn(async move {
        while let Ok(Some(events)) = follower.next_page(256, true).await {
            let mut changed = false;
            let mut closed = false;
            for event in &events {
                let Ok(body) = event.body() else { continue };
                closed |= matches!(body, EventBody::ActivityClosed(_));
                changed |= child.add(&body);
                if closed {
                    break;
                }
            }
            if changed {
                let kind = child.update(&call_id, ToolCallStatus::InProgress);
                let update =
                    SessionUpdate { kind, meta: Meta { keel: Position { seq: None, after_seq: Some(after_seq) } } };
                send_update(&peer, &session_id, update).await;
            }
            if closed {
                break;
            }
        }
    })))
}

struct ChildTask(tokio::task::JoinHandle<()>);

impl Drop for ChildTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn mapper(engine: &Engine, cwd: &str, model: &str) -> Mapper {
    let config = engine.config(Some(cwd));
    let model = if model.is_empty() { Registry::default_model(&config) } else { model.to_owned() };
    let context_window =
        engine.providers().models(&config).into_iter().find(|m| m.id == model).map_or(0, |m| m.context_window);
    Mapper::new(cwd, context_window)
}

async fn send_update(peer: &PeerRef, session_id: &str, update: SessionUpdate) {
    let notification = SessionNotification { session_id: session_id.to_owned(), update };
    let _ = peer.notify("session/update", &notification).await;
}

async fn list_sessions(engine: Arc<Engine>, params: ListSessionsRequest, _: Call) -> Reply<ListSessionsResponse> {
    // A subagent's session is shown inside its parent's `task` call, not as a session of its own.
    let filter = crate::store::SessionFilter { cwd: params.cwd.as_deref(), parent_id: None, roots: true };
    let page = engine.sessions.list(&filter, params.cursor.as_deref(), 50)?;
    let sessions = page
        .sessions
        .into_iter()
        .map(|s| SessionInfo { updated_at: rfc3339(s.updated_at), session_id: s.id, cwd: s.cwd, title: s.title })
        .collect();
    let next_cursor = page.next.as_ref().map(crate::session::service::encode_cursor);
    Ok(ListSessionsResponse { sessions, next_cursor })
}

async fn close_session(engine: Arc<Engine>, params: CloseSessionRequest, call: Call) -> Reply<CloseSessionResponse> {
    engine.sessions.get(&params.session_id)?;
    engine.interrupt(&params.session_id);
    call.peer.stop_task(&mcp_task(&params.session_id));
    call.peer.state::<Shown>().sessions.lock().remove(&params.session_id);
    Ok(CloseSessionResponse {})
}

async fn cancel(engine: Arc<Engine>, params: CancelNotification, _: Call) -> Reply<()> {
    engine.interrupt(&params.session_id);
    Ok(())
}

async fn set_config_option(
    engine: Arc<Engine>,
    params: SetConfigOptionRequest,
    call: Call,
) -> Reply<ConfigOptionsResponse> {
    let SetConfigOptionRequest { session_id, config_id, value } = params;
    match config_id.as_str() {
        "model" => {
            let session = engine.sessions.get(&session_id)?;
            engine.check_model(Some(&session.cwd), &value)?;
            engine.sessions.update(&session_id, SessionChanges { model: Some(value), ..Default::default() })?;
        }
        "reasoning" => {
            let effort = ReasoningEffort::ALL.into_iter().find(|e| e.as_str() == value).ok_or_else(|| {
                AcpError::invalid(
                    "value",
                    format!("unknown reasoning effort {value:?}; default, minimal, low, medium, high"),
                )
            })?;
            let changes = SessionChanges { reasoning_effort: Some(effort), ..Default::default() };
            engine.sessions.update(&session_id, changes)?;
        }
        // `agent` is what keel called the option before it was ACP's mode.
        "mode" | "agent" => switch_mode(&engine, &session_id, value, "value")?,
        other => return Err(AcpError::invalid("configId", format!("unknown config option {other:?}"))),
    }
    let config_options = config_options(&engine, &session_id)?;
    announce_mode_change(&call, &session_id, &config_options);
    Ok(ConfigOptionsResponse { config_options })
}

/// `session/set_mode`: the session's agent from its next prompt on.
async fn set_mode(engine: Arc<Engine>, params: SetSessionModeRequest, call: Call) -> Reply<SetSessionModeResponse> {
    switch_mode(&engine, &params.session_id, params.mode_id, "modeId")?;
    let config_options = config_options(&engine, &params.session_id)?;
    // The mode is also an option: a client showing options hears of it as for any other change.
    let update = UpdateKind::ConfigOptionUpdate(ConfigOptionsResponse { config_options: config_options.clone() });
    announce_mode_change(&call, &params.session_id, &config_options);
    update_after_response(&call, "options", &params.session_id, unplaced(update));
    Ok(SetSessionModeResponse {})
}

fn switch_mode(engine: &Engine, session_id: &str, mode: String, field: &str) -> Reply<()> {
    let session = engine.sessions.get(session_id)?;
    let modes = modes(&engine.config(Some(&session.cwd)), &session.agent);
    if !modes.available_modes.iter().any(|m| m.id == mode) {
        let known: Vec<&str> = modes.available_modes.iter().map(|m| m.id.as_str()).collect();
        return Err(AcpError::invalid(field, format!("unknown mode {mode:?}; modes: {}", known.join(", "))));
    }
    engine.sessions.update(session_id, SessionChanges { agent: Some(mode), ..Default::default() })?;
    Ok(())
}

/// `current_mode_update` after the answer, when the mode differs from what this connection last showed.
fn announce_mode_change(call: &Call, session_id: &str, options: &[ConfigOption]) {
    let before = call.peer.state::<Shown>().sessions.lock().get(session_id).map(|(_, mode)| mode.clone());
    remember_shown(&call.peer, session_id, options);
    let Some(mode) = current_mode(options) else { return };
    if before.as_deref() == Some(mode.as_str()) {
        return;
    }
    let update = unplaced(UpdateKind::CurrentModeUpdate(CurrentMode { current_mode_id: mode }));
    update_after_response(call, "mode", session_id, update);
}

/// ACP content blocks as keel input.
fn input_of(blocks: Vec<ContentBlock>) -> Reply<Vec<ContentPart>> {
    let parts: Vec<ContentPart> = blocks
        .into_iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } => Some(ContentPart::Text { text }),
            ContentBlock::Image { mime_type, data } => Some(ContentPart::Image {
                mime: mime_type.unwrap_or_else(|| "image/png".to_owned()),
                data_base64: data,
            }),
            ContentBlock::ResourceLink { uri, .. } => {
                Some(ContentPart::File { path: uri.strip_prefix("file://").unwrap_or(&uri).to_owned(), range: None })
            }
            ContentBlock::Resource { resource } => Some(ContentPart::Text {
                text: format!("Context from {}:\n{}", resource.uri, resource.text.unwrap_or_default()),
            }),
            ContentBlock::Other => None,
        })
        .collect();
    if parts.is_empty() {
        return Err(AcpError::invalid("prompt", "the prompt has no content keel can use"));
    }
    Ok(parts)
}

async fn steer(engine: Arc<Engine>, params: PromptRequest, _: Call) -> Reply<SteerResponse> {
    let input = input_of(params.prompt)?;
    let new = NewInput {
        input_id: None,
        delivery: Delivery::Steer,
        input,
        agent: None,
        model: None,
        kind: InputKind::Prompt,
    };
    let receipt = engine.admit(&params.session_id, new)?;
    Ok(SteerResponse { input_id: receipt.input_id })
}

/// Admits the prompt, streams the activity it opens as updates, and answers with its stop reason.
async fn prompt(engine: Arc<Engine>, params: PromptRequest, call: Call) -> Reply<PromptResponse> {
    let session_id = params.session_id;
    let session = engine.sessions.get(&session_id)?;
    let input = input_of(params.prompt)?;
    let new = slash_command(&engine, &session.cwd, &session_id, &input).await.unwrap_or(NewInput {
        input_id: None,
        delivery: Delivery::Queue,
        input,
        agent: None,
        model: None,
        kind: InputKind::Prompt,
    });
    let mut run = engine.prompt(&session_id, new)?;
    // Cancels and config changes for this session must not wait behind a prompt that lasts a whole activity.
    call.release_order();
    let mut mapper = mapper(&engine, &session.cwd, &session.model);
    mapper.cost_usd = session.cost_usd;
    catch_up(&engine, &call.peer, &mut mapper, &session_id, run.cursor()).await;
    let mut children: std::collections::HashMap<String, ChildTask> = std::collections::HashMap::new();
    // Whether the activity's last turn ran out of output tokens: its answer is cut, which ACP calls `max_tokens`.
    let mut cut = false;
    let mut used = TurnUsage::default();
    loop {
        match run.next().await.map_err(AcpError::internal)? {
            Step::Event { event, body, ours: false } if is_job(&body) => {
                for update in mapper.updates(event.seq, body) {
                    send_update(&call.peer, &session_id, update).await;
                }
            }
            // Other events before the prompt's activity opened belong to others.
            Step::Event { ours: false, .. } => {}
            // Inputs are remembered for replays only; a live prompt's own text is the client's.
            Step::Event { event, body: body @ EventBody::InputAdmitted(_), .. } => {
                let _ = mapper.updates(event.seq, body);
            }
            Step::Event { event, body, .. } => {
                match &body {
                    EventBody::TurnCompleted(d) => {
                        cut = d.was_cut();
                        add_usage(&mut used, &d.usage);
                    }
                    EventBody::SubagentStarted(d) => {
                        if let Some(task) = follow_child(&engine, &call.peer, &session_id, d, event.seq) {
                            children.insert(d.call_id.clone(), task);
                        }
                    }
                    EventBody::SubagentCompleted(d) => {
                        if let Some(mut task) = children.remove(&d.call_id) {
                            let _ = (&mut task.0).await;
                        }
                        read_child(&engine, &mut mapper, &d.call_id, &d.child_session_id);
                    }
                    _ => {}
                }
                for update in mapper.updates(event.seq, body) {
                    send_update(&call.peer, &session_id, update).await;
                }
            }
            Step::Delta(delta) => stream_delta(&call.peer, &mut mapper, &delta, &session_id, run.cursor()).await,
            Step::Approval(row) => ask_permission(&engine, &call.peer, row, &session_id),
            Step::ApprovalResolved(approval_id) => call.peer.withdraw(&approval_id),
            // Cancelled before our input opened an activity: it stays queued (paused) and the prompt ends.
            // ACP has no queue: a cancelled prompt must not run later, so its input is withdrawn.
            Step::PausedBeforeStart => {
                seen(&call.peer, &session_id, run.cursor());
                let _ = engine.remove_input(&session_id, &run.receipt().input_id);
                return Ok(PromptResponse { stop_reason: StopReason::Cancelled, usage: None });
            }
            Step::Closed(outcome) => {
                seen(&call.peer, &session_id, run.cursor());
                let stop_reason = match outcome.reason {
                    CloseReason::Completed if cut => StopReason::MaxTokens,
                    CloseReason::Completed => StopReason::EndTurn,
                    CloseReason::TurnLimit => StopReason::MaxTurnRequests,
                    CloseReason::Interrupted => StopReason::Cancelled,
                    CloseReason::Failed => {
                        return Err(AcpError::Internal(outcome.error.unwrap_or_else(|| "the turn failed".into())));
                    }
                };
                return Ok(PromptResponse { stop_reason, usage: Some(used) });
            }
        }
    }
}

/// Shows the background jobs' starts and ends that this connection has not shown since it last showed the
/// session, up to `until` where the prompt's own stream starts: a job can end while no prompt runs.
async fn catch_up(engine: &Engine, peer: &PeerRef, mapper: &mut Mapper, session_id: &str, until: u64) {
    let Some(mut after) = peer.state::<Seen>().sessions.lock().get(session_id).copied() else { return };
    while after < until {
        let Ok(events) = engine.events(session_id, after, 256) else { return };
        let Some(last) = events.last() else { return };
        after = last.seq;
        for event in events.into_iter().take_while(|e| e.seq <= until) {
            let Ok(body) = event.body() else { continue };
            if is_job(&body) {
                for update in mapper.updates(event.seq, body) {
                    send_update(peer, session_id, update).await;
                }
            }
        }
    }
}

fn add_usage(total: &mut TurnUsage, turn: &keel_protocol::session::Usage) {
    let input = turn.input_tokens + turn.cache_read_tokens + turn.cache_write_tokens;
    total.input_tokens += input;
    total.output_tokens += turn.output_tokens + turn.reasoning_tokens;
    total.total_tokens += input + turn.output_tokens + turn.reasoning_tokens;
    let add = |field: &mut Option<u64>, n: u64| *field = Some(field.unwrap_or(0) + n);
    add(&mut total.thought_tokens, turn.reasoning_tokens);
    add(&mut total.cached_read_tokens, turn.cache_read_tokens);
    add(&mut total.cached_write_tokens, turn.cache_write_tokens);
}

async fn stream_delta(peer: &PeerRef, mapper: &mut Mapper, delta: &Delta, session_id: &str, seq: u64) {
    // A part already sent whole has nothing left to stream.
    if mapper.completed.contains(&delta.part_id) {
        return;
    }
    let chunk =
        || Chunk { content: ContentBlock::Text { text: delta.text.clone() }, message_id: delta.message_id.clone() };
    let kind = match delta.kind {
        DeltaKind::Text => UpdateKind::AgentMessageChunk(chunk()),
        DeltaKind::Reasoning => UpdateKind::AgentThoughtChunk(chunk()),
        _ => return,
    };
    *mapper.streamed.entry(delta.part_id.clone()).or_default() += delta.text.len();
    // A streamed fragment is not an event yet: it says which seq it follows, not one of its own.
    let update = SessionUpdate { kind, meta: Meta { keel: Position { seq: None, after_seq: Some(seq) } } };
    send_update(peer, session_id, update).await;
}

/// Asks the client with `session/request_permission` and records its choice as the approval's answer.
/// Asks the client about a call of the prompt's session (`shown_in`) or of one of its subagents.
fn ask_permission(engine: &Arc<Engine>, peer: &PeerRef, row: ApprovalRow, shown_in: &str) {
    let shown_in = shown_in.to_owned();
    let engine = Arc::clone(engine);
    let peer = Arc::clone(peer);
    tokio::spawn(async move {
        let options = [
            (PermissionOptionKind::AllowOnce, "Allow once"),
            (PermissionOptionKind::AllowAlways, "Always allow"),
            (PermissionOptionKind::RejectOnce, "Reject"),
            (PermissionOptionKind::RejectAlways, "Always reject"),
        ]
        .into_iter()
        .map(|(kind, name)| PermissionOption { option_id: kind, name, kind })
        .collect();
        // The same title and input as the `tool_call` update, so a client applying this update loses nothing; what
        // the approval is about goes in `_meta`.
        let called = engine.tool_call(&row.session_id, &row.call_id).ok().flatten();
        let (tool, input) = called.unwrap_or_else(|| (row.tool.clone(), Value::Null));
        let call = keel_protocol::turn::ToolCalledData {
            turn_id: String::new(),
            message_id: String::new(),
            call_id: row.call_id.clone(),
            provider_call_id: None,
            tool,
            input,
        };
        let key = row.approval_id.clone();
        let tool_call = ToolCall {
            title: tool_title(&call),
            kind: tool_kind(&row.tool),
            tool_call_id: row.call_id,
            status: ToolCallStatus::Pending,
            raw_input: call.input,
            locations: None,
            meta: Some(Meta {
                keel: ApprovalMeta {
                    approval_id: row.approval_id,
                    title: row.title,
                    action: row.action,
                    resources: row.resources,
                },
            }),
        };
        let params = RequestPermissionRequest { session_id: shown_in, tool_call, options };
        let Some(Ok(answer)) = peer
            .request_withdrawable(
                &key,
                "session/request_permission",
                &params,
                std::time::Duration::from_secs(24 * 3600),
            )
            .await
        else {
            return;
        };
        let decision = match serde_json::from_value::<RequestPermissionResponse>(answer).map(|a| a.outcome) {
            Ok(PermissionOutcome::Selected { option_id }) => match option_id.as_str() {
                "allow_once" => Resolved::Once,
                "allow_always" => Resolved::Always,
                _ => Resolved::Reject,
            },
            // `cancelled`: the client gave up on the question (it cancelled the prompt); the interrupt answers it.
            // An answer keel cannot read is left to the same path.
            Ok(PermissionOutcome::Cancelled) | Err(_) => return,
        };
        let by = peer.lifecycle().client_name;
        let _ = engine.answer_approval(&key, decision, None, &by);
    });
}

/// Epoch milliseconds as RFC 3339 (UTC), which ACP uses for times.
fn rfc3339(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn initialize_keeps_its_wire_shape() {
        let expected = serde_json::json!({
            "protocolVersion": 1,
            "agentCapabilities": {
                "loadSession": true,
                "promptCapabilities": { "image": true, "audio": false, "embeddedContext": true },
                "mcpCapabilities": { "http": true, "sse": false },
                "sessionCapabilities": { "list": {}, "resume": {}, "close": {}, "fork": {} },
                "_meta": { "keel": { "steer": "_keel/steer", "protocolVersion": keel_protocol::PROTOCOL_VERSION } },
            },
            "authMethods": [],
            "agentInfo": { "name": "keel", "title": "keel", "version": env!("CARGO_PKG_VERSION") },
        });
        assert_eq!(serde_json::to_value(super::initialized()).unwrap(), expected);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_607_690_010), "2026-11-25T11:54:50Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
