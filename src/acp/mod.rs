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
use keel_protocol::turn::{CloseReason, DeltaKind};
use serde_json::Value;

use crate::engine::Engine;
use crate::mcp;
use crate::provider::registry::Registry;
use crate::rpc::{Call, PeerRef};
use crate::session::Delta;
use crate::session::inbox::NewInput;
use crate::session::prompt::Step;
use crate::session::service::{NewSession, SessionChanges};
use crate::store::approvals::ApprovalRow;
pub use error::AcpError;
pub use ordering::ordering;
pub use schema::PROTOCOL_VERSION;
use schema::*;
use updates::{Mapper, tool_kind, tool_title};

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
    method!("session/list", list_sessions);
    method!("session/close", close_session);
    method!("session/prompt", prompt);
    method!("session/cancel", cancel);
    method!("session/set_config_option", set_config_option);
    method!("_keel/steer", steer);
    Ok(module)
}

async fn initialize(_: Arc<Engine>, params: InitializeRequest, call: Call) -> Reply<InitializeResponse> {
    let name = params.client_info.and_then(|c| c.name).unwrap_or_else(|| "acp client".to_owned());
    call.peer.update_lifecycle(|l| {
        l.initialized = true;
        l.client_name = name;
    });
    Ok(initialized())
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
            },
            meta: Some(Meta {
                keel: KeelCapabilities { steer: "_keel/steer", protocol_version: keel_protocol::PROTOCOL_VERSION },
            }),
        },
        auth_methods: Vec::new(),
        agent_info: Implementation { name: "keel", title: "keel", version: env!("CARGO_PKG_VERSION") },
    }
}

/// The session's choices as ACP config options: model and agent.
fn config_options(engine: &Engine, session_id: &str) -> Reply<Vec<ConfigOption>> {
    let session = engine.sessions.get(session_id)?;
    let config = engine.config(Some(&session.cwd));
    let current_model = if session.model.is_empty() { Registry::default_model(&config) } else { session.model.clone() };
    let mut models: Vec<SelectValue> =
        engine.providers().models(&config).into_iter().map(|m| SelectValue { value: m.id, name: m.name }).collect();
    if !models.iter().any(|m| m.value == current_model) {
        models.push(SelectValue { value: current_model.clone(), name: current_model.clone() });
    }
    let mut agents: Vec<String> = config.agents.keys().cloned().collect();
    for builtin in ["build", &session.agent] {
        if !agents.iter().any(|a| a == builtin) {
            agents.push(builtin.to_owned());
        }
    }
    Ok(vec![
        ConfigOption::Select(SelectOption {
            id: "model",
            name: "Model",
            category: "model",
            current_value: current_model,
            options: models,
        }),
        ConfigOption::Select(SelectOption {
            id: "agent",
            name: "Agent",
            category: "mode",
            current_value: session.agent,
            options: agents.into_iter().map(|a| SelectValue { value: a.clone(), name: a }).collect(),
        }),
    ])
}

async fn new_session(engine: Arc<Engine>, params: NewSessionRequest, call: Call) -> Reply<NewSessionResponse> {
    let specs = mcp_specs(params.mcp_servers, &params.cwd)?;
    let new = NewSession { cwd: params.cwd, title: None, agent: None, model: None, parent_id: None };
    let session = engine.sessions.create(new)?;
    start_mcp(&engine, &call.peer, &session.id, &session.cwd, specs);
    Ok(NewSessionResponse { config_options: config_options(&engine, &session.id)?, session_id: session.id })
}

async fn resume_session(engine: Arc<Engine>, params: ResumeSessionRequest, call: Call) -> Reply<ConfigOptionsResponse> {
    let session = engine.sessions.get(&params.session_id)?;
    let specs = mcp_specs(params.mcp_servers, &session.cwd)?;
    start_mcp(&engine, &call.peer, &session.id, &session.cwd, specs);
    Ok(ConfigOptionsResponse { config_options: config_options(&engine, &params.session_id)? })
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
async fn load_session(engine: Arc<Engine>, params: LoadSessionRequest, call: Call) -> Reply<ConfigOptionsResponse> {
    let session_id = params.session_id;
    let session = engine.sessions.get(&session_id)?;
    let specs = mcp_specs(params.mcp_servers, &session.cwd)?;
    start_mcp(&engine, &call.peer, &session_id, &session.cwd, specs);
    let mut mapper = mapper(&engine, &session.cwd, &session.model);
    let mut history = engine.follow(&session_id, Some(0))?;
    while let Some(events) = history.next_page(512, false).await? {
        for event in events {
            for update in mapper.updates(event.seq, event.body().map_err(AcpError::internal)?) {
                send_update(&call.peer, &session_id, update).await;
            }
        }
    }
    Ok(ConfigOptionsResponse { config_options: config_options(&engine, &session_id)? })
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
    let page = engine.sessions.list(params.cwd.as_deref(), params.cursor.as_deref(), 50)?;
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
    Ok(CloseSessionResponse {})
}

async fn cancel(engine: Arc<Engine>, params: CancelNotification, _: Call) -> Reply<()> {
    engine.interrupt(&params.session_id);
    Ok(())
}

async fn set_config_option(
    engine: Arc<Engine>,
    params: SetConfigOptionRequest,
    _: Call,
) -> Reply<ConfigOptionsResponse> {
    let SetConfigOptionRequest { session_id, config_id, value } = params;
    let changes = match config_id.as_str() {
        "model" => {
            let session = engine.sessions.get(&session_id)?;
            engine.check_model(Some(&session.cwd), &value)?;
            SessionChanges { model: Some(value), ..Default::default() }
        }
        "agent" => SessionChanges { agent: Some(value), ..Default::default() },
        other => return Err(AcpError::invalid("configId", format!("unknown config option {other:?}"))),
    };
    engine.sessions.update(&session_id, changes)?;
    Ok(ConfigOptionsResponse { config_options: config_options(&engine, &session_id)? })
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
    let new = NewInput {
        input_id: None,
        delivery: Delivery::Queue,
        input,
        agent: None,
        model: None,
        kind: InputKind::Prompt,
    };
    let mut run = engine.prompt(&session_id, new)?;
    // Cancels and config changes for this session must not wait behind a prompt that lasts a whole activity.
    call.release_order();
    let mut mapper = mapper(&engine, &session.cwd, &session.model);
    mapper.cost_usd = session.cost_usd;
    // Whether the activity's last turn ran out of output tokens: its answer is cut, which ACP calls `max_tokens`.
    let mut cut = false;
    let mut used = TurnUsage::default();
    loop {
        match run.next().await.map_err(AcpError::internal)? {
            // Events before the prompt's activity opened belong to others.
            Step::Event { ours: false, .. } => {}
            // Inputs are remembered for replays only; a live prompt's own text is the client's.
            Step::Event { event, body: body @ EventBody::InputAdmitted(_), .. } => {
                let _ = mapper.updates(event.seq, body);
            }
            Step::Event { event, body, .. } => {
                if let EventBody::TurnCompleted(d) = &body {
                    cut = d.was_cut();
                    add_usage(&mut used, &d.usage);
                }
                for update in mapper.updates(event.seq, body) {
                    send_update(&call.peer, &session_id, update).await;
                }
            }
            Step::Delta(delta) => stream_delta(&call.peer, &mut mapper, &delta, &session_id, run.cursor()).await,
            Step::Approval(row) => ask_permission(&engine, &call.peer, row),
            Step::ApprovalResolved(approval_id) => call.peer.withdraw(&approval_id),
            // Cancelled before our input opened an activity: it stays queued (paused) and the prompt ends.
            // ACP has no queue: a cancelled prompt must not run later, so its input is withdrawn.
            Step::PausedBeforeStart => {
                let _ = engine.remove_input(&session_id, &run.receipt().input_id);
                return Ok(PromptResponse { stop_reason: StopReason::Cancelled, usage: None });
            }
            Step::Closed(outcome) => {
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
fn ask_permission(engine: &Arc<Engine>, peer: &PeerRef, row: ApprovalRow) {
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
        let params = RequestPermissionRequest { session_id: row.session_id, tool_call, options };
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
                "sessionCapabilities": { "list": {}, "resume": {}, "close": {} },
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
