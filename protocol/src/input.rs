//! The inbox: `session/prompt` (queue or steer), `session/resume`, `session/interrupt`, `session/queue/remove`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method;

/// One piece of user input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    /// A file in the workspace, optionally a line range of it.
    File {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<LineRange>,
    },
    Image {
        mime: String,
        #[serde(rename = "dataBase64")]
        data_base64: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineRange {
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// A future activity of its own, after the current one settles (FIFO).
    #[default]
    Queue,
    /// Joins the active activity at the next provider-turn boundary.
    Steer,
}

/// What an inbox item asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// User input for the model.
    #[default]
    Prompt,
    /// A compaction of the session's context (`session/compact`); it carries no content.
    Compact,
}

impl InputKind {
    pub fn is_prompt(&self) -> bool {
        *self == InputKind::Prompt
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The input opened an activity at once.
    Started,
    #[default]
    Queued,
    Steered,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptParams {
    pub session_id: String,
    pub input: Vec<ContentPart>,
    #[serde(default)]
    pub delivery: Delivery,
    /// Client idempotency key: the same id with the same content returns the same receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `provider/model` for the activity this input opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The receipt of an admitted input: it is on disk when this is returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptResult {
    pub input_id: String,
    pub delivery: Delivery,
    pub disposition: Disposition,
    pub admitted_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResumeResult {
    /// False when a run was already going and this call joined it.
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterruptResult {
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueRemoveParams {
    pub session_id: String,
    pub input_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueRemoveResult {
    pub removed: bool,
}

/// A pending (admitted, not yet promoted) input, as `session/get` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingInput {
    pub input_id: String,
    pub delivery: Delivery,
    pub input: Vec<ContentPart>,
    pub admitted_seq: u64,
}

method!(SessionPrompt, "session/prompt", PromptParams, PromptResult, ordered_by = "sessionId");
method!(
    /// An explicit run: at least one provider attempt, and a paused queue restarts.
    SessionResume, "session/resume", crate::session::SessionIdParams, ResumeResult, ordered_by = "sessionId"
);
method!(
    SessionInterrupt,
    "session/interrupt",
    crate::session::SessionIdParams,
    InterruptResult,
    ordered_by = "sessionId"
);
method!(SessionQueueRemove, "session/queue/remove", QueueRemoveParams, QueueRemoveResult, ordered_by = "sessionId");
