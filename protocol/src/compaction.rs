//! Compaction: the durable record of a session's context being made smaller, and `session/compact`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method;

/// Why a compaction ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompactionReason {
    /// The estimate of the next request passed the model's usable window.
    Auto,
    /// The provider refused a request as too long.
    Overflow,
    /// `session/compact`.
    Manual,
}

/// `compaction.started` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactionStartedData {
    pub compaction_id: String,
    pub reason: CompactionReason,
}

/// `compaction.completed` (version 1): from here on the model's context is `summary` (when present) followed by
/// the transcript after `checkpointSeq`. Nothing is deleted: the log still holds every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactionCompletedData {
    pub compaction_id: String,
    /// The last seq the summary covers; the transcript after it is kept verbatim. Unchanged when only tool outputs
    /// were pruned.
    pub checkpoint_seq: u64,
    /// Estimated tokens of the context before and after.
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// The summary of everything up to `checkpointSeq`; absent when pruning was enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Tool calls whose outputs the model's context shows as a placeholder from now on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_calls: Vec<String>,
    /// What the summary request used and cost; counted in the session's totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::session::Usage>,
}

/// `compaction.failed` (version 1): the context is as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactionFailedData {
    pub compaction_id: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactParams {
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactResult {
    /// The inbox item that carries the compaction, ordered with prompts.
    pub input_id: String,
    pub admitted_seq: u64,
}

method!(
    /// Queues a compaction of the session's context as an inbox item: it runs after the inputs admitted before it.
    SessionCompact,
    "session/compact",
    CompactParams,
    CompactResult,
    ordered_by = "sessionId"
);
