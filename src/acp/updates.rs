//! keel events as ACP `session/update`s. The same mapping serves live prompts and `session/load` replays; every
//! update carries keel's seq in `_meta.keel.seq`, so a client can resume from the native protocol's cursor.

use std::collections::HashMap;

use keel_protocol::catalogue::EventBody;
use keel_protocol::input::ContentPart;
use keel_protocol::turn::{PartCompletedData, ToolCalledData};
use serde_json::{Value, json};

/// What the mapping remembers across events: inputs by id, calls by id, text already streamed per part.
#[derive(Default)]
pub struct Mapper {
    inputs: HashMap<String, Vec<ContentPart>>,
    calls: HashMap<String, ToolCalledData>,
    /// Bytes of each part already sent as chunks from live deltas.
    pub streamed: HashMap<String, usize>,
    /// Parts whose whole text went out: late deltas for them are dropped.
    pub completed: std::collections::HashSet<String>,
    /// The session's workspace, for absolute paths in locations and diffs.
    pub cwd: String,
    /// The context window of the session's model, for `usage_update.size`.
    pub context_window: u64,
}

fn with_seq(mut update: Value, seq: u64) -> Value {
    update["_meta"] = json!({ "keel": { "seq": seq } });
    update
}

pub fn tool_kind(tool: &str) -> &'static str {
    match tool {
        "read" => "read",
        "write" | "edit" | "apply_patch" => "edit",
        "bash" => "execute",
        "grep" | "glob" | "list" => "search",
        "webfetch" => "fetch",
        "todowrite" => "think",
        _ => "other",
    }
}

pub fn tool_title(call: &ToolCalledData) -> String {
    let detail = ["filePath", "command", "pattern", "url", "path"]
        .iter()
        .find_map(|k| call.input.get(*k).and_then(Value::as_str))
        .map(|d| d.chars().take(80).collect::<String>());
    match detail {
        Some(detail) => format!("{}: {detail}", call.tool),
        None => call.tool.clone(),
    }
}

fn content_block(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text { text } => json!({ "type": "text", "text": text }),
        ContentPart::File { path, .. } => {
            json!({ "type": "resource_link", "uri": format!("file://{path}"), "name": path })
        }
        ContentPart::Image { mime, data_base64 } => json!({ "type": "image", "mimeType": mime, "data": data_base64 }),
    }
}

impl Mapper {
    pub fn new(cwd: &str, context_window: u64) -> Self {
        Self { cwd: cwd.to_owned(), context_window, ..Default::default() }
    }

    fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') { path.to_owned() } else { format!("{}/{path}", self.cwd.trim_end_matches('/')) }
    }

    /// The updates the event at `seq` becomes (often none).
    pub fn updates(&mut self, seq: u64, body: EventBody) -> Vec<Value> {
        let mut out = Vec::new();
        match body {
            EventBody::InputAdmitted(d) => {
                self.inputs.insert(d.input_id, d.input);
            }
            EventBody::InputPromoted(d) => {
                for id in &d.input_ids {
                    for part in self.inputs.get(id).into_iter().flatten() {
                        out.push(json!({ "sessionUpdate": "user_message_chunk", "content": content_block(part), "messageId": d.message_id }));
                    }
                }
            }
            EventBody::TextCompleted(d) => out.extend(self.part_completed("agent_message_chunk", d)),
            EventBody::ReasoningCompleted(d) => out.extend(self.part_completed("agent_thought_chunk", d)),
            EventBody::ToolCalled(d) => {
                let mut update = json!({
                    "sessionUpdate": "tool_call", "toolCallId": d.call_id, "title": tool_title(&d),
                    "kind": tool_kind(&d.tool), "status": "pending", "rawInput": d.input,
                });
                if let Some(path) = d.input.get("filePath").and_then(Value::as_str) {
                    update["locations"] = json!([{ "path": self.absolute(path) }]);
                }
                out.push(update);
                self.calls.insert(d.call_id.clone(), d);
            }
            EventBody::ToolStarted(d) => {
                out.push(
                    json!({ "sessionUpdate": "tool_call_update", "toolCallId": d.call_id, "status": "in_progress" }),
                );
            }
            EventBody::ToolCompleted(d) => {
                let mut content = vec![json!({ "type": "content", "content": { "type": "text", "text": d.output } })];
                if let Some(call) = self.calls.get(&d.call_id) {
                    content.extend(self.diff(call));
                    if call.tool == "todowrite" {
                        out.push(plan(&call.input));
                    }
                }
                out.push(json!({
                    "sessionUpdate": "tool_call_update", "toolCallId": d.call_id, "status": "completed",
                    "content": content, "rawOutput": { "output": d.output, "truncated": d.truncated },
                }));
            }
            EventBody::ToolFailed(d) => {
                out.push(json!({
                    "sessionUpdate": "tool_call_update", "toolCallId": d.call_id, "status": "failed",
                    "content": [{ "type": "content", "content": { "type": "text", "text": d.error } }],
                }));
            }
            EventBody::TurnCompleted(d) => {
                let u = &d.usage;
                let used =
                    u.input_tokens + u.cache_read_tokens + u.cache_write_tokens + u.output_tokens + u.reasoning_tokens;
                out.push(json!({
                    "sessionUpdate": "usage_update", "used": used, "size": self.context_window,
                    "cost": { "amount": d.cost_usd, "currency": "USD" },
                }));
            }
            // ACP has no update for these: prompts learn of them through `session/prompt`'s answer or not at all.
            EventBody::SessionCreated(_)
            | EventBody::SessionUpdated(_)
            | EventBody::SessionDeleted(_)
            | EventBody::SessionStatus(_)
            | EventBody::InputRemoved(_)
            | EventBody::ActivityOpened(_)
            | EventBody::ActivityClosed(_)
            | EventBody::QueuePaused(_)
            | EventBody::QueueResumed(_)
            | EventBody::TurnStarted(_)
            | EventBody::TurnFailed(_)
            | EventBody::RetryScheduled(_)
            | EventBody::ApprovalRequested(_)
            | EventBody::ApprovalResolved(_) => {}
        }
        out.into_iter().map(|u| with_seq(u, seq)).collect()
    }

    /// The rest of a part's text that live deltas did not already send.
    fn part_completed(&mut self, update: &str, d: PartCompletedData) -> Option<Value> {
        self.completed.insert(d.part_id.clone());
        let sent = self.streamed.get(&d.part_id).copied().unwrap_or(0);
        let rest = d.text.get(sent..).unwrap_or_default();
        (!rest.is_empty()).then(
            || json!({ "sessionUpdate": update, "content": { "type": "text", "text": rest }, "messageId": d.message_id }),
        )
    }

    /// The diff an edit or write shows: the replaced text and its replacement.
    fn diff(&self, call: &ToolCalledData) -> Option<Value> {
        let path = call.input.get("filePath").and_then(Value::as_str)?;
        let path = self.absolute(path);
        match call.tool.as_str() {
            "write" => Some(json!({ "type": "diff", "path": path, "oldText": null, "newText": call.input["content"] })),
            "edit" => Some(
                json!({ "type": "diff", "path": path, "oldText": call.input["oldString"], "newText": call.input["newString"] }),
            ),
            _ => None,
        }
    }
}

fn plan(input: &Value) -> Value {
    let entries: Vec<Value> = input["todos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| json!({ "content": t["content"], "priority": "medium", "status": t["status"] }))
        .collect();
    json!({ "sessionUpdate": "plan", "entries": entries })
}
