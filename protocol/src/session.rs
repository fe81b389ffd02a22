//! Sessions: the `session/*` CRUD methods and the `Session` read model.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Empty, method, notification};

/// Milliseconds since the Unix epoch.
pub type EpochMillis = i64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    /// The workspace directory (absolute).
    pub cwd: String,
    pub title: String,
    pub agent: String,
    /// `provider/model`, empty when the configured default applies.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
    pub status: SessionStatus,
    pub usage: Usage,
    /// How hard the model thinks in this session; `default` follows the agent's and the config's `reasoningEffort`.
    #[serde(default, skip_serializing_if = "ReasoningEffort::is_default")]
    pub reasoning_effort: ReasoningEffort,
}

/// How much a reasoning model thinks before it answers. Sent only to models the catalog marks as reasoning:
/// OpenAI's `reasoning_effort` (Chat) and `reasoning.effort` (Responses), Anthropic's thinking budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    /// Whatever the agent, the config or else the provider choose.
    #[default]
    Default,
    Minimal,
    Low,
    Medium,
    High,
}

impl ReasoningEffort {
    pub const ALL: [ReasoningEffort; 5] = [Self::Default, Self::Minimal, Self::Low, Self::Medium, Self::High];

    pub fn is_default(&self) -> bool {
        *self == Self::Default
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Idle,
    Running,
    WaitingApproval,
    Retrying,
    /// Waits for `recovery/decide`.
    Recovering,
    Failed,
    /// A shutdown stopped its activity at a safe point; the next engine to run the session resumes it.
    Suspended,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// The provider reported no usage (a server that ignores `stream_options.include_usage`): these counts are
    /// keel's estimate from the request's and the answer's sizes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreateParams {
    /// An absolute directory that exists.
    pub cwd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `provider/model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResult {
    pub session: Session,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionListParams {
    /// Only sessions whose workspace is exactly this directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The `nextCursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1..=500, default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only the children of this session (the sessions its `task` calls started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Only sessions without a parent: no subagents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionListResult {
    /// Most recently updated first.
    pub sessions: Vec<Session>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionIdParams {
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionGetResult {
    pub session: Session,
    pub status: SessionStatus,
    /// The seq of the session's newest event.
    pub head_seq: u64,
    /// Admitted inputs not yet promoted, in admission order.
    pub pending_inputs: Vec<crate::input::PendingInput>,
    /// The queue is paused after an interrupt, until the next prompt or resume.
    pub queue_paused: bool,
    pub pending_approvals: Vec<crate::approval::Approval>,
    pub context: ContextUsage,
    /// Its background jobs still running.
    pub running_jobs: Vec<crate::job::Job>,
}

/// How full the model's context is: what the session's next request would hold, against its model's window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContextUsage {
    /// Estimated tokens of the next request: the last size the provider reported plus what was added since.
    pub tokens: u64,
    /// The model's context window; 0 when the model is not known.
    pub window: u64,
    /// The size at which automatic compaction runs before a turn (the usable window).
    pub compact_at: u64,
    /// `tokens / window`; 0 when the window is not known.
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionUsageParams {
    pub session_id: String,
    pub context: ContextUsage,
    /// The session's totals so far, with its cost from the catalog's prices.
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionUpdateParams {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionForkParams {
    pub session_id: String,
    /// The last event of the source to keep; default: its head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatusChangedParams {
    pub session_id: String,
    pub status: SessionStatus,
}

method!(SessionCreate, "session/create", SessionCreateParams, SessionResult);
method!(SessionList, "session/list", Option<SessionListParams>, SessionListResult);
method!(SessionGet, "session/get", SessionIdParams, SessionGetResult, ordered_by = "sessionId");
method!(SessionUpdate, "session/update", SessionUpdateParams, SessionResult, ordered_by = "sessionId");
method!(SessionFork, "session/fork", SessionForkParams, SessionResult, ordered_by = "sessionId");
method!(
    /// Interrupts running work, then removes the session and its events.
    SessionDelete, "session/delete", SessionIdParams, Empty, ordered_by = "sessionId"
);
notification!(
    /// Sent to every initialized connection after each turn and compaction.
    SessionUsage, "session/usage", SessionUsageParams
);
notification!(
    /// Sent to every initialized connection.
    SessionStatusChanged, "session/statusChanged", SessionStatusChangedParams
);
