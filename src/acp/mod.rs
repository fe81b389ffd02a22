//! `keel acp`: the Agent Client Protocol (v1) over stdio, on the same engine. Editors that speak ACP (Zed,
//! JetBrains, Neovim and Emacs plugins) drive keel sessions through it.
//!
//! The connection layer is `rpc`'s (ndjson framing is detected like any other); this module is only a method table
//! translating ACP calls into engine calls, and engine events into `session/update`s (`updates`).

mod ordering;
mod updates;

use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::ErrorObjectOwned;
use keel_protocol::approval::Resolved;
use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery};
use keel_protocol::turn::{CloseReason, DeltaKind};
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::provider::registry::Registry;
use crate::rpc::{Call, PeerRef};
use crate::session::Delta;
use crate::session::inbox::NewInput;
use crate::session::prompt::Step;
use crate::session::service::{NewSession, SessionChanges};
use crate::store::approvals::ApprovalRow;
pub use ordering::ordering;
use updates::{Mapper, tool_kind, tool_title};

pub const PROTOCOL_VERSION: u64 = 1;

type Reply = Result<Value, ErrorObjectOwned>;

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

fn invalid(message: impl Into<String>) -> ErrorObjectOwned {
    error(keel_protocol::error::INVALID_PARAMS, message)
}

fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    error(keel_protocol::error::INTERNAL_ERROR, e.to_string())
}

/// ACP's "resource not found".
fn not_found(e: impl std::fmt::Display) -> ErrorObjectOwned {
    error(-32002, e.to_string())
}

fn string(params: &Value, key: &str) -> Result<String, ErrorObjectOwned> {
    params.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| invalid(format!("missing {key}")))
}

/// The ACP method table.
pub fn methods(engine: Arc<Engine>) -> Result<RpcModule<Engine>, RegisterMethodError> {
    let mut module = RpcModule::from_arc(engine);
    macro_rules! method {
        ($name:literal, $handler:path) => {
            module.register_async_method($name, |params, engine, ext| async move {
                let call = ext.get::<Call>().cloned().ok_or_else(|| internal("no call context"))?;
                let params: Value = params.parse().unwrap_or(Value::Null);
                $handler(engine, params, call).await
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

async fn initialize(_: Arc<Engine>, params: Value, call: Call) -> Reply {
    let name = params["clientInfo"]["name"].as_str().unwrap_or("acp client").to_owned();
    call.peer.update_lifecycle(|l| {
        l.initialized = true;
        l.client_name = name;
    });
    Ok(json!({
        "protocolVersion": PROTOCOL_VERSION,
        "agentCapabilities": {
            "loadSession": true,
            "promptCapabilities": { "image": true, "audio": false, "embeddedContext": true },
            "sessionCapabilities": { "list": {}, "resume": {}, "close": {} },
            "_meta": { "keel": { "steer": "_keel/steer", "protocolVersion": keel_protocol::PROTOCOL_VERSION } },
        },
        "authMethods": [],
        "agentInfo": { "name": "keel", "title": "keel", "version": env!("CARGO_PKG_VERSION") },
    }))
}

/// The session's choices as ACP config options: model and agent.
fn config_options(engine: &Engine, session_id: &str) -> Result<Value, ErrorObjectOwned> {
    let session = engine.sessions.get(session_id).map_err(not_found)?;
    let config = engine.config(Some(&session.cwd));
    let current_model = if session.model.is_empty() { Registry::default_model(&config) } else { session.model.clone() };
    let mut models: Vec<Value> =
        engine.providers().models(&config).into_iter().map(|m| json!({ "value": m.id, "name": m.name })).collect();
    if !models.iter().any(|m| m["value"] == current_model.as_str()) {
        models.push(json!({ "value": current_model, "name": current_model }));
    }
    let mut agents: Vec<String> = config.agents.keys().cloned().collect();
    for builtin in ["build", &session.agent] {
        if !agents.iter().any(|a| a == builtin) {
            agents.push(builtin.to_owned());
        }
    }
    Ok(json!([
        { "id": "model", "name": "Model", "category": "model", "type": "select", "currentValue": current_model, "options": models },
        { "id": "agent", "name": "Agent", "category": "mode", "type": "select", "currentValue": session.agent,
          "options": agents.iter().map(|a| json!({ "value": a, "name": a })).collect::<Vec<_>>() },
    ]))
}

async fn new_session(engine: Arc<Engine>, params: Value, _: Call) -> Reply {
    let cwd = string(&params, "cwd")?;
    let session = engine
        .sessions
        .create(NewSession { cwd, title: None, agent: None, model: None, parent_id: None })
        .map_err(|e| invalid(e.to_string()))?;
    Ok(json!({ "sessionId": session.id, "configOptions": config_options(&engine, &session.id)? }))
}

async fn resume_session(engine: Arc<Engine>, params: Value, _: Call) -> Reply {
    let session_id = string(&params, "sessionId")?;
    Ok(json!({ "configOptions": config_options(&engine, &session_id)? }))
}

/// Replays the stored history as `session/update`s, then answers.
async fn load_session(engine: Arc<Engine>, params: Value, call: Call) -> Reply {
    let session_id = string(&params, "sessionId")?;
    let session = engine.sessions.get(&session_id).map_err(not_found)?;
    let mut mapper = mapper(&engine, &session.cwd, &session.model);
    let mut history = engine.follow(&session_id, Some(0)).map_err(internal)?;
    while let Some(events) = history.next_page(512, false).await.map_err(internal)? {
        for event in events {
            for update in mapper.updates(event.seq, event.body().map_err(internal)?) {
                send_update(&call.peer, &session_id, update).await;
            }
        }
    }
    Ok(json!({ "configOptions": config_options(&engine, &session_id)? }))
}

fn mapper(engine: &Engine, cwd: &str, model: &str) -> Mapper {
    let config = engine.config(Some(cwd));
    let model = if model.is_empty() { Registry::default_model(&config) } else { model.to_owned() };
    let context_window =
        engine.providers().models(&config).into_iter().find(|m| m.id == model).map_or(0, |m| m.context_window);
    Mapper::new(cwd, context_window)
}

async fn send_update(peer: &PeerRef, session_id: &str, update: Value) {
    let _ = peer.notify("session/update", &json!({ "sessionId": session_id, "update": update })).await;
}

async fn list_sessions(engine: Arc<Engine>, params: Value, _: Call) -> Reply {
    let cwd = params.get("cwd").and_then(Value::as_str);
    let cursor = params.get("cursor").and_then(Value::as_str);
    let page = engine.sessions.list(cwd, cursor, 50).map_err(|e| invalid(e.to_string()))?;
    let sessions: Vec<Value> = page
        .sessions
        .iter()
        .map(|s| json!({ "sessionId": s.id, "cwd": s.cwd, "title": s.title, "updatedAt": rfc3339(s.updated_at) }))
        .collect();
    let mut result = json!({ "sessions": sessions });
    if let Some(next) = page.next.as_ref() {
        result["nextCursor"] = json!(crate::session::service::encode_cursor(next));
    }
    Ok(result)
}

async fn close_session(engine: Arc<Engine>, params: Value, _: Call) -> Reply {
    let session_id = string(&params, "sessionId")?;
    engine.sessions.get(&session_id).map_err(not_found)?;
    engine.interrupt(&session_id);
    Ok(json!({}))
}

async fn cancel(engine: Arc<Engine>, params: Value, _: Call) -> Reply {
    let session_id = string(&params, "sessionId")?;
    engine.interrupt(&session_id);
    Ok(Value::Null)
}

async fn set_config_option(engine: Arc<Engine>, params: Value, _: Call) -> Reply {
    let session_id = string(&params, "sessionId")?;
    let value = string(&params, "value")?;
    let changes = match string(&params, "configId")?.as_str() {
        "model" => {
            let session = engine.sessions.get(&session_id).map_err(not_found)?;
            engine.check_model(Some(&session.cwd), &value).map_err(|e| invalid(e.to_string()))?;
            SessionChanges { model: Some(value), ..Default::default() }
        }
        "agent" => SessionChanges { agent: Some(value), ..Default::default() },
        other => return Err(invalid(format!("unknown config option {other:?}"))),
    };
    engine.sessions.update(&session_id, changes).map_err(|e| invalid(e.to_string()))?;
    Ok(json!({ "configOptions": config_options(&engine, &session_id)? }))
}

/// ACP content blocks as keel input.
fn input_of(params: &Value) -> Result<Vec<ContentPart>, ErrorObjectOwned> {
    let blocks = params.get("prompt").and_then(Value::as_array).ok_or_else(|| invalid("missing prompt"))?;
    let mut parts = Vec::new();
    for block in blocks {
        match block["type"].as_str().unwrap_or_default() {
            "text" => parts.push(ContentPart::Text { text: block["text"].as_str().unwrap_or_default().to_owned() }),
            "image" => parts.push(ContentPart::Image {
                mime: block["mimeType"].as_str().unwrap_or("image/png").to_owned(),
                data_base64: block["data"].as_str().unwrap_or_default().to_owned(),
            }),
            "resource_link" => {
                let uri = block["uri"].as_str().unwrap_or_default();
                parts.push(ContentPart::File {
                    path: uri.strip_prefix("file://").unwrap_or(uri).to_owned(),
                    range: None,
                });
            }
            "resource" => {
                let resource = &block["resource"];
                let uri = resource["uri"].as_str().unwrap_or_default();
                let text = resource["text"].as_str().unwrap_or_default();
                parts.push(ContentPart::Text { text: format!("Context from {uri}:\n{text}") });
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(invalid("the prompt has no content keel can use"));
    }
    Ok(parts)
}

async fn steer(engine: Arc<Engine>, params: Value, _: Call) -> Reply {
    let session_id = string(&params, "sessionId")?;
    let new =
        NewInput { input_id: None, delivery: Delivery::Steer, input: input_of(&params)?, agent: None, model: None };
    let receipt = engine.admit(&session_id, new).map_err(|e| invalid(e.to_string()))?;
    Ok(json!({ "inputId": receipt.input_id }))
}

/// Admits the prompt, streams the activity it opens as updates, and answers with its stop reason.
async fn prompt(engine: Arc<Engine>, params: Value, call: Call) -> Reply {
    let session_id = string(&params, "sessionId")?;
    let session = engine.sessions.get(&session_id).map_err(not_found)?;
    let new =
        NewInput { input_id: None, delivery: Delivery::Queue, input: input_of(&params)?, agent: None, model: None };
    let mut run = engine.prompt(&session_id, new).map_err(|e| invalid(e.to_string()))?;
    // Cancels and config changes for this session must not wait behind a prompt that lasts a whole activity.
    call.release_order();
    let mut mapper = mapper(&engine, &session.cwd, &session.model);
    loop {
        match run.next().await.map_err(internal)? {
            // Events before the prompt's activity opened belong to others.
            Step::Event { ours: false, .. } => {}
            // Inputs are remembered for replays only; a live prompt's own text is the client's.
            Step::Event { event, body: body @ EventBody::InputAdmitted(_), .. } => {
                let _ = mapper.updates(event.seq, body);
            }
            Step::Event { event, body, .. } => {
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
                return Ok(json!({ "stopReason": "cancelled" }));
            }
            Step::Closed(outcome) => {
                return match outcome.reason {
                    CloseReason::Completed => Ok(json!({ "stopReason": "end_turn" })),
                    CloseReason::TurnLimit => Ok(json!({ "stopReason": "max_turn_requests" })),
                    CloseReason::Interrupted => Ok(json!({ "stopReason": "cancelled" })),
                    CloseReason::Failed => Err(internal(outcome.error.unwrap_or_else(|| "the turn failed".into()))),
                };
            }
        }
    }
}

async fn stream_delta(peer: &PeerRef, mapper: &mut Mapper, delta: &Delta, session_id: &str, seq: u64) {
    // A part already sent whole has nothing left to stream.
    if mapper.completed.contains(&delta.part_id) {
        return;
    }
    let update = match delta.kind {
        DeltaKind::Text => "agent_message_chunk",
        DeltaKind::Reasoning => "agent_thought_chunk",
        _ => return,
    };
    *mapper.streamed.entry(delta.part_id.clone()).or_default() += delta.text.len();
    // A streamed fragment is not an event yet: it says which seq it follows, not one of its own.
    let chunk = json!({
        "sessionUpdate": update, "content": { "type": "text", "text": delta.text }, "messageId": delta.message_id,
        "_meta": { "keel": { "afterSeq": seq } },
    });
    send_update(peer, session_id, chunk).await;
}

/// Asks the client with `session/request_permission` and records its choice as the approval's answer.
fn ask_permission(engine: &Arc<Engine>, peer: &PeerRef, row: ApprovalRow) {
    let engine = Arc::clone(engine);
    let peer = Arc::clone(peer);
    tokio::spawn(async move {
        let options: Vec<Value> = [
            ("allow_once", "Allow once"),
            ("allow_always", "Always allow"),
            ("reject_once", "Reject"),
            ("reject_always", "Always reject"),
        ]
        .iter()
        .map(|(kind, name)| json!({ "optionId": kind, "name": name, "kind": kind }))
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
        let tool_call = json!({
            "toolCallId": row.call_id, "title": tool_title(&call), "kind": tool_kind(&row.tool), "status": "pending",
            "rawInput": call.input,
            "_meta": { "keel": { "approvalId": row.approval_id, "title": row.title, "action": row.action, "resources": row.resources } },
        });
        let params = json!({ "sessionId": row.session_id, "toolCall": tool_call, "options": options });
        let key = row.approval_id.clone();
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
        let decision = match (answer["outcome"]["outcome"].as_str(), answer["outcome"]["optionId"].as_str()) {
            (Some("selected"), Some("allow_once")) => Resolved::Once,
            (Some("selected"), Some("allow_always")) => Resolved::Always,
            (Some("selected"), Some(_)) => Resolved::Reject,
            // `cancelled`: the client gave up on the question (it cancelled the prompt); the interrupt answers it.
            _ => return,
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
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_607_690_010), "2026-11-25T11:54:50Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
