//! The agent loop's durable events (activities, turns, text, tools), ephemeral deltas, and the projected transcript.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::input::{ContentPart, Delivery, Disposition, InputKind};
use crate::session::Usage;
use crate::{method, notification};

/// `input.admitted` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputAdmittedData {
    pub input_id: String,
    pub delivery: Delivery,
    /// What the admission answered: the input opened an activity, waits in the queue, or steers.
    pub disposition: Disposition,
    pub input: Vec<ContentPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Absent for prompts.
    #[serde(default, skip_serializing_if = "InputKind::is_prompt")]
    pub kind: InputKind,
}

impl InputAdmittedData {
    /// What must match for a repeated `inputId` to be the same input.
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(&(&self.delivery, &self.input, &self.agent, &self.model)).unwrap_or_default()
    }
}

/// `input.promoted` (version 1): inputs become one user message in the model-visible transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputPromotedData {
    pub input_ids: Vec<String>,
    pub activity_id: String,
    pub message_id: String,
}

/// `input.removed` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputRemovedData {
    pub input_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityTrigger {
    Queue,
    Steer,
    Resume,
    /// A `session/compact` item: the activity compacts the context and makes no model turn.
    Compact,
}

/// `activity.opened` (version 1): one unit of agent work, from promoted input to a settled answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityOpenedData {
    pub activity_id: String,
    pub trigger: ActivityTrigger,
    /// The step limit of this activity (per agent).
    pub step_limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Completed,
    Interrupted,
    Failed,
    TurnLimit,
}

/// `activity.closed` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityClosedData {
    pub activity_id: String,
    pub reason: CloseReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `activity.suspended` (version 1): the engine stopped at a safe point (a shutdown); whichever engine runs the
/// session next resumes the activity by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivitySuspendedData {
    pub activity_id: String,
}

/// What an engine found when it took over an activity that another engine (or an earlier run of itself) left open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResumedAfter {
    /// A shutdown suspended it.
    Suspension,
    /// Its engine stopped without a shutdown; what it left was safe to continue.
    Crash,
    /// A client decided `retry` after `recovery.required`.
    Decision,
}

/// `activity.resumed` (version 1): an engine continues an activity left open by an engine that stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityResumedData {
    pub activity_id: String,
    pub after: ResumedAfter,
}

/// `session.status` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusData {
    pub status: crate::session::SessionStatus,
}

/// `queue.paused` / `queue.resumed` (version 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueueData {}

/// `turn.started` (version 1): one provider request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartedData {
    pub turn_id: String,
    pub activity_id: String,
    /// The assistant message this turn writes.
    pub message_id: String,
    /// `provider/model`.
    pub model: String,
    pub agent: String,
    /// The instruction files in the system prompt (`AGENTS.md`, `CLAUDE.md`, config `instructions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instructions: Vec<String>,
}

/// `turn.dispatched` (version 1): the turn's request is about to leave for the provider. Recorded before it is
/// sent, so that an engine that stops cannot have sent a request that its log does not show; from here until the
/// turn completes or fails, whether the model received it is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnDispatchedData {
    pub turn_id: String,
    /// 1 for the first request of the turn, then one more per automatic retry.
    pub attempt: u32,
}

/// `text.completed` and `reasoning.completed` (version 1): the full value of a streamed part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartCompletedData {
    pub turn_id: String,
    pub message_id: String,
    pub part_id: String,
    pub text: String,
    /// Reasoning only: the provider's seal on it (Anthropic's thinking signature), which must come back with it
    /// in the requests that continue the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `tool.called` (version 1): a complete tool call from the model, recorded before it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolCalledData {
    pub turn_id: String,
    pub message_id: String,
    /// Assigned by keel, unique within the session; every event, approval and client-facing field names the call
    /// by it.
    pub call_id: String,
    /// The id the provider gave the call, which may repeat across turns or be missing; only the requests replayed
    /// to that provider carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_call_id: Option<String>,
    pub tool: String,
    pub input: serde_json::Value,
}

/// `tool.started` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolStartedData {
    pub call_id: String,
}

/// `tool.completed` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolCompletedData {
    pub call_id: String,
    pub output: String,
    pub truncated: bool,
}

/// `tool.failed` (version 1): the error is what the model sees as the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolFailedData {
    pub call_id: String,
    pub error: String,
}

/// `turn.completed` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnCompletedData {
    pub turn_id: String,
    /// `stop`, `tool_calls`, `length`, `content_filter`, or what the provider said.
    pub finish_reason: String,
    pub usage: Usage,
    pub cost_usd: f64,
}

impl TurnCompletedData {
    /// The model stopped because it reached its output limit: the answer is cut off.
    pub fn was_cut(&self) -> bool {
        self.finish_reason == "length"
    }
}

/// `turn.failed` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnFailedData {
    pub turn_id: String,
    pub error: ProviderFailure,
    /// Whether trying again could help; automatic retries are recorded as `retry.scheduled` instead.
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderFailure {
    /// `unauthorized`, `unknown_model`, `context_overflow`, `rate_limited`, `server_error`, `connection`,
    /// `malformed_stream`, `interrupted_stream`, `timeout`, `not_configured`, `other`.
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// `retry.scheduled` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryScheduledData {
    pub turn_id: String,
    /// 1 for the first retry.
    pub attempt: u32,
    /// When the next attempt starts, epoch milliseconds.
    pub at: i64,
    pub delay_ms: u64,
    pub error: ProviderFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeltaKind {
    Text,
    Reasoning,
    ToolInput,
    ToolOutput,
}

/// `session/delta`: streamed fragments, not durable. The matching `*.completed` event carries the whole value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeltaParams {
    pub session_id: String,
    pub message_id: String,
    pub part_id: String,
    pub kind: DeltaKind,
    pub delta: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// A message of the projected transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub role: Role,
    /// The seq of the event that created the message; transcript cursors are these.
    pub seq: u64,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        id: String,
        text: String,
    },
    Reasoning {
        id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    File {
        id: String,
        path: String,
    },
    Image {
        id: String,
        mime: String,
    },
    #[serde(rename_all = "camelCase")]
    Tool {
        call_id: String,
        /// The provider's own id for the call (see `tool.called`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_call_id: Option<String>,
        tool: String,
        input: serde_json::Value,
        status: ToolStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagesParams {
    pub session_id: String,
    /// The `nextCursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1..=500, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagesResult {
    /// Oldest first.
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

method!(SessionMessages, "session/messages", MessagesParams, MessagesResult, ordered_by = "sessionId");
notification!(SessionDelta, "session/delta", DeltaParams);
