//! keel events as ACP `session/update`s. The same mapping serves live prompts and `session/load` replays; every
//! update carries keel's seq in `_meta.keel.seq`, so a client can resume from the native protocol's cursor.

use std::collections::HashMap;

use keel_protocol::agent::SubagentStartedData;
use keel_protocol::catalogue::EventBody;
use keel_protocol::event::SessionUpdatedData;
use keel_protocol::input::ContentPart;
use keel_protocol::turn::{CloseReason, PartCompletedData, ToolCalledData};
use serde_json::{Value, json};

use super::schema::{
    Chunk, ContentBlock, Cost, CurrentMode, Location, Meta, Plan, PlanEntry, Position, RawOutput, SessionInfoUpdate,
    SessionUpdate, ToolCall, ToolCallContent, ToolCallStatus, ToolCallUpdate, ToolKind, UpdateKind, Usage,
};

/// What the mapping remembers across events: inputs by id, calls by id, text already streamed per part.
#[derive(Default)]
pub struct Mapper {
    inputs: HashMap<String, Vec<ContentPart>>,
    calls: HashMap<String, ToolCalledData>,
    /// Each subagent's progress by its `task` call, kept once it ended so the call's result leaves it shown.
    pub children: HashMap<String, Child>,
    /// Bytes of each part already sent as chunks from live deltas.
    pub streamed: HashMap<String, usize>,
    /// Parts whose whole text went out: late deltas for them are dropped.
    pub completed: std::collections::HashSet<String>,
    /// The session's workspace, for absolute paths in locations and diffs.
    pub cwd: String,
    /// The context window of the session's model, for `usage_update.size`.
    pub context_window: u64,
    /// The session's cost up to the events mapped so far: `usage_update.cost` is cumulative.
    pub cost_usd: f64,
}

fn with_seq(kind: UpdateKind, seq: u64) -> SessionUpdate {
    SessionUpdate { kind, meta: Meta { keel: Position { seq: Some(seq), after_seq: None } } }
}

pub fn tool_kind(tool: &str) -> ToolKind {
    match tool {
        "read" => ToolKind::Read,
        "write" | "edit" | "apply_patch" => ToolKind::Edit,
        "bash" => ToolKind::Execute,
        "grep" | "glob" | "list" => ToolKind::Search,
        "webfetch" => ToolKind::Fetch,
        "todowrite" => ToolKind::Think,
        _ => ToolKind::Other,
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

fn content_block(part: &ContentPart) -> ContentBlock {
    match part {
        ContentPart::Text { text } => ContentBlock::Text { text: text.clone() },
        ContentPart::File { path, .. } => {
            ContentBlock::ResourceLink { uri: format!("file://{path}"), name: path.clone() }
        }
        ContentPart::Image { mime, data_base64 } => {
            ContentBlock::Image { mime_type: Some(mime.clone()), data: data_base64.clone() }
        }
    }
}

fn text(text: impl Into<String>) -> ContentBlock {
    ContentBlock::Text { text: text.into() }
}

/// A subagent as the content of its parent's `task` call: a line naming it, then the child's text parts and a
/// line per tool call it makes, in its log's order. ACP replaces a call's content with each update, so the whole
/// is kept and sent every time.
#[derive(Debug, Clone, Default)]
pub struct Child {
    pub content: Vec<ToolCallContent>,
}

impl Child {
    pub fn new(d: &SubagentStartedData) -> Self {
        let line = format!("{} subagent: {} (session {})", d.agent, d.description, d.child_session_id);
        Self { content: vec![ToolCallContent::Content { content: text(line) }] }
    }

    /// Takes an event of the child's log; true when the content changed.
    pub fn add(&mut self, body: &EventBody) -> bool {
        let block = match body {
            EventBody::TextCompleted(d) if !d.text.trim().is_empty() => text(d.text.clone()),
            EventBody::ToolCalled(d) => text(format!("→ {}", tool_title(d))),
            _ => return false,
        };
        self.content.push(ToolCallContent::Content { content: block });
        true
    }

    /// The update showing the content so far.
    pub fn update(&self, call_id: &str, status: ToolCallStatus) -> UpdateKind {
        UpdateKind::ToolCallUpdate(ToolCallUpdate {
            tool_call_id: call_id.to_owned(),
            status,
            content: Some(self.content.clone()),
            raw_output: None,
        })
    }

    /// Ends the content with the child's answer, unless its last text part already is that answer.
    fn finish(&mut self, answer: Option<&str>) {
        let Some(answer) = answer.filter(|a| !a.trim().is_empty()) else { return };
        let last = self.content.iter().rev().find_map(|c| match c {
            ToolCallContent::Content { content: ContentBlock::Text { text } } => Some(text.as_str()),
            _ => None,
        });
        if last != Some(answer) {
            self.content.push(ToolCallContent::Content { content: text(answer) });
        }
    }
}

/// A background job's end as the update of the call its start showed.
fn job_ended(job_id: String, status: ToolCallStatus, output: String, truncated: bool) -> UpdateKind {
    UpdateKind::ToolCallUpdate(ToolCallUpdate {
        tool_call_id: job_id,
        status,
        content: Some(vec![ToolCallContent::Content { content: text(output.clone()) }]),
        raw_output: Some(RawOutput { output, truncated }),
    })
}

/// The events a prompt shows even when they are not of its activity: a background job's start and end belong to
/// no prompt, and its end may come while another activity (or none) runs.
pub fn is_job(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::JobStarted(_) | EventBody::JobCompleted(_) | EventBody::JobFailed(_) | EventBody::JobCancelled(_)
    )
}

impl Mapper {
    pub fn new(cwd: &str, context_window: u64) -> Self {
        Self { cwd: cwd.to_owned(), context_window, ..Default::default() }
    }

    fn usage(&self, used: u64) -> UpdateKind {
        UpdateKind::UsageUpdate(Usage {
            used,
            size: self.context_window,
            cost: Cost { amount: self.cost_usd, currency: "USD" },
        })
    }

    fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') { path.to_owned() } else { format!("{}/{path}", self.cwd.trim_end_matches('/')) }
    }

    /// The updates the event at `seq` becomes (often none).
    pub fn updates(&mut self, seq: u64, body: EventBody) -> Vec<SessionUpdate> {
        let mut out = Vec::new();
        match body {
            EventBody::InputAdmitted(d) => {
                self.inputs.insert(d.input_id, d.input);
            }
            EventBody::InputPromoted(d) => {
                for id in &d.input_ids {
                    for part in self.inputs.get(id).into_iter().flatten() {
                        let chunk = Chunk { content: content_block(part), message_id: d.message_id.clone() };
                        out.push(UpdateKind::UserMessageChunk(chunk));
                    }
                }
            }
            EventBody::TextCompleted(d) => out.extend(self.part_completed(d).map(UpdateKind::AgentMessageChunk)),
            EventBody::ReasoningCompleted(d) => out.extend(self.part_completed(d).map(UpdateKind::AgentThoughtChunk)),
            EventBody::ToolCalled(d) => {
                let locations = d
                    .input
                    .get("filePath")
                    .and_then(Value::as_str)
                    .map(|path| vec![Location { path: self.absolute(path) }]);
                out.push(UpdateKind::ToolCall(ToolCall {
                    tool_call_id: d.call_id.clone(),
                    title: tool_title(&d),
                    kind: tool_kind(&d.tool),
                    status: ToolCallStatus::Pending,
                    raw_input: d.input.clone(),
                    locations,
                    meta: None,
                }));
                self.calls.insert(d.call_id.clone(), d);
            }
            EventBody::ToolStarted(d) => {
                out.push(UpdateKind::ToolCallUpdate(ToolCallUpdate {
                    tool_call_id: d.call_id,
                    status: ToolCallStatus::InProgress,
                    content: None,
                    raw_output: None,
                }));
            }
            // The subagent's progress stays the content of its `task` call.
            EventBody::ToolCompleted(d) if self.children.contains_key(&d.call_id) => {
                out.push(UpdateKind::ToolCallUpdate(ToolCallUpdate {
                    tool_call_id: d.call_id,
                    status: ToolCallStatus::Completed,
                    content: None,
                    raw_output: Some(RawOutput { output: d.output, truncated: d.truncated }),
                }));
            }
            EventBody::ToolCompleted(d) => {
                let mut content = vec![ToolCallContent::Content { content: text(d.output.clone()) }];
                if let Some(call) = self.calls.get(&d.call_id) {
                    content.extend(self.diff(call));
                    if call.tool == "todowrite" {
                        out.push(plan(&call.input));
                    }
                }
                out.push(UpdateKind::ToolCallUpdate(ToolCallUpdate {
                    tool_call_id: d.call_id,
                    status: ToolCallStatus::Completed,
                    content: Some(content),
                    raw_output: Some(RawOutput { output: d.output, truncated: d.truncated }),
                }));
            }
            EventBody::ToolFailed(d) => {
                let mut content = self.children.get(&d.call_id).map(|c| c.content.clone()).unwrap_or_default();
                content.push(ToolCallContent::Content { content: text(d.error) });
                out.push(UpdateKind::ToolCallUpdate(ToolCallUpdate {
                    tool_call_id: d.call_id,
                    status: ToolCallStatus::Failed,
                    content: Some(content),
                    raw_output: None,
                }));
            }
            EventBody::TurnCompleted(d) => {
                let u = &d.usage;
                let used =
                    u.input_tokens + u.cache_read_tokens + u.cache_write_tokens + u.output_tokens + u.reasoning_tokens;
                self.cost_usd += d.cost_usd;
                out.push(self.usage(used));
            }
            EventBody::CompactionCompleted(d) => {
                self.cost_usd += d.usage.as_ref().map_or(0.0, |u| u.cost_usd);
                out.push(self.usage(d.tokens_after));
            }
            // ACP shows a subagent as its `task` call, whose content follows the child (see `Child`).
            EventBody::SubagentStarted(d) => {
                let child = self.children.entry(d.call_id.clone()).or_insert_with(|| Child::new(&d));
                out.push(child.update(&d.call_id, ToolCallStatus::InProgress));
            }
            // By now the child's progress was added (`children`) by whoever read the child's log.
            EventBody::SubagentCompleted(d) => {
                let child = self.children.entry(d.call_id.clone()).or_default();
                child.finish(d.answer.as_deref());
                let status = match d.reason {
                    CloseReason::Completed => ToolCallStatus::Completed,
                    CloseReason::Interrupted | CloseReason::TurnLimit | CloseReason::Failed => ToolCallStatus::Failed,
                };
                out.push(child.update(&d.call_id, status));
            }
            // A background job is a call of its own, under its job id, from its start to its end.
            EventBody::JobStarted(d) => {
                out.push(UpdateKind::ToolCall(ToolCall {
                    raw_input: json!({ "command": d.command, "description": d.description }),
                    tool_call_id: d.job_id,
                    title: d.command,
                    kind: ToolKind::Execute,
                    status: ToolCallStatus::InProgress,
                    locations: None,
                    meta: None,
                }));
            }
            EventBody::JobCompleted(d) => {
                let status = if d.exit_code == Some(0) { ToolCallStatus::Completed } else { ToolCallStatus::Failed };
                out.push(job_ended(d.job_id, status, d.output, d.truncated));
            }
            EventBody::JobFailed(d) => out.push(job_ended(d.job_id, ToolCallStatus::Failed, d.error, false)),
            EventBody::JobCancelled(d) => {
                out.push(job_ended(d.job_id, ToolCallStatus::Failed, "cancelled".to_owned(), false));
            }
            EventBody::SessionUpdated(SessionUpdatedData { title, agent, .. }) => {
                if let Some(title) = title {
                    out.push(UpdateKind::SessionInfoUpdate(SessionInfoUpdate { title }));
                }
                // The session's agent is its ACP mode, whoever changed it.
                if let Some(current_mode_id) = agent {
                    out.push(UpdateKind::CurrentModeUpdate(CurrentMode { current_mode_id }));
                }
            }
            // ACP has no update for these: prompts learn of them through `session/prompt`'s answer or not at all.
            EventBody::SessionCreated(_)
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
            | EventBody::ApprovalResolved(_)
            | EventBody::TurnDispatched(_)
            | EventBody::TurnStreamed(_)
            | EventBody::ActivitySuspended(_)
            | EventBody::ActivityResumed(_)
            | EventBody::RecoveryRequired(_)
            | EventBody::RecoveryResolved(_)
            | EventBody::CompactionStarted(_)
            | EventBody::CompactionFailed(_)
            // `session/shell` is not an ACP method: its commands come from keel's own clients.
            | EventBody::ShellStarted(_)
            | EventBody::ShellCompleted(_)
            // The `skill` call itself is shown.
            | EventBody::SkillLoaded(_)
            | EventBody::PluginActed(_)
            | EventBody::PluginFailed(_) => {}
        }
        out.into_iter().map(|u| with_seq(u, seq)).collect()
    }

    /// The rest of a part's text that live deltas did not already send.
    fn part_completed(&mut self, d: PartCompletedData) -> Option<Chunk> {
        self.completed.insert(d.part_id.clone());
        let sent = self.streamed.get(&d.part_id).copied().unwrap_or(0);
        let rest = d.text.get(sent..).unwrap_or_default();
        (!rest.is_empty()).then(|| Chunk { content: text(rest), message_id: d.message_id })
    }

    /// The diff an edit or write shows: the replaced text and its replacement.
    fn diff(&self, call: &ToolCalledData) -> Option<ToolCallContent> {
        let path = call.input.get("filePath").and_then(Value::as_str)?;
        let path = self.absolute(path);
        let (old_text, new_text) = match call.tool.as_str() {
            "write" => (Value::Null, call.input["content"].clone()),
            "edit" => (call.input["oldString"].clone(), call.input["newString"].clone()),
            _ => return None,
        };
        Some(ToolCallContent::Diff { path, old_text, new_text })
    }
}

fn plan(input: &Value) -> UpdateKind {
    let entries = input["todos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| PlanEntry { content: t["content"].clone(), priority: "medium", status: t["status"].clone() })
        .collect();
    UpdateKind::Plan(Plan { entries })
}

#[cfg(test)]
mod tests {
    use keel_protocol::session::Usage;
    use keel_protocol::turn::{ToolCompletedData, ToolStartedData, TurnCompletedData};
    use serde_json::json;

    use super::*;

    fn wire(mapper: &mut Mapper, seq: u64, body: EventBody) -> Vec<Value> {
        mapper.updates(seq, body).iter().map(|u| serde_json::to_value(u).unwrap()).collect()
    }

    #[test]
    fn tool_updates_keep_their_wire_shape() {
        let mut mapper = Mapper::new("/ws", 1000);
        let called = ToolCalledData {
            turn_id: "t".into(),
            message_id: "m".into(),
            call_id: "c".into(),
            provider_call_id: None,
            tool: "write".into(),
            input: json!({ "filePath": "a.txt", "content": "hi" }),
        };
        assert_eq!(
            wire(&mut mapper, 3, EventBody::ToolCalled(called)),
            [json!({
                "sessionUpdate": "tool_call", "toolCallId": "c", "title": "write: a.txt", "kind": "edit",
                "status": "pending", "rawInput": { "filePath": "a.txt", "content": "hi" },
                "locations": [{ "path": "/ws/a.txt" }], "_meta": { "keel": { "seq": 3 } },
            })]
        );
        assert_eq!(
            wire(&mut mapper, 4, EventBody::ToolStarted(ToolStartedData { call_id: "c".into() })),
            [json!({ "sessionUpdate": "tool_call_update", "toolCallId": "c", "status": "in_progress",
                     "_meta": { "keel": { "seq": 4 } } })]
        );
        let completed = ToolCompletedData { call_id: "c".into(), output: "ok".into(), truncated: false };
        assert_eq!(
            wire(&mut mapper, 5, EventBody::ToolCompleted(completed)),
            [json!({
                "sessionUpdate": "tool_call_update", "toolCallId": "c", "status": "completed",
                "content": [
                    { "type": "content", "content": { "type": "text", "text": "ok" } },
                    { "type": "diff", "path": "/ws/a.txt", "oldText": null, "newText": "hi" },
                ],
                "rawOutput": { "output": "ok", "truncated": false }, "_meta": { "keel": { "seq": 5 } },
            })]
        );
        let usage = Usage { input_tokens: 10, output_tokens: 5, ..Default::default() };
        let turn = TurnCompletedData { turn_id: "t".into(), finish_reason: "stop".into(), usage, cost_usd: 0.5 };
        assert_eq!(
            wire(&mut mapper, 6, EventBody::TurnCompleted(turn)),
            [json!({ "sessionUpdate": "usage_update", "used": 15, "size": 1000,
                     "cost": { "amount": 0.5, "currency": "USD" }, "_meta": { "keel": { "seq": 6 } } })]
        );
    }

    #[test]
    fn a_job_is_an_execute_call_from_its_start_to_its_end() {
        use keel_protocol::job::{JobCompletedData, JobStartedData};
        let mut mapper = Mapper::new("/ws", 0);
        let started = JobStartedData {
            job_id: "job_1".into(),
            call_id: "c".into(),
            command: "make".into(),
            description: None,
            host: "h".into(),
            owner_pid: 1,
            pid: 2,
        };
        assert_eq!(
            wire(&mut mapper, 7, EventBody::JobStarted(started)),
            [json!({
                "sessionUpdate": "tool_call", "toolCallId": "job_1", "title": "make", "kind": "execute",
                "status": "in_progress", "rawInput": { "command": "make", "description": null },
                "_meta": { "keel": { "seq": 7 } },
            })]
        );
        let failed =
            JobCompletedData { job_id: "job_1".into(), exit_code: Some(2), output: "no rule".into(), truncated: false };
        assert_eq!(
            wire(&mut mapper, 9, EventBody::JobCompleted(failed)),
            [json!({
                "sessionUpdate": "tool_call_update", "toolCallId": "job_1", "status": "failed",
                "content": [{ "type": "content", "content": { "type": "text", "text": "no rule" } }],
                "rawOutput": { "output": "no rule", "truncated": false }, "_meta": { "keel": { "seq": 9 } },
            })]
        );
    }
}
