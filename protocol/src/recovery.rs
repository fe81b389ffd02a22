//! Recovery of work a stopped engine left unfinished: what needs a decision, the decision, and how it is asked for.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Empty, method};

/// Why an activity cannot go on by itself: its last provider attempt may have reached the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryReason {
    /// The request was sent and nothing came back before the engine stopped.
    AttemptDispatched,
    /// The model had answered in part when the engine stopped.
    AttemptStreamed,
}

/// `recovery.required` (version 1): the session waits for `recovery/decide` (status `recovering`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryRequiredData {
    pub activity_id: String,
    /// The turn whose outcome is unknown.
    pub turn_id: String,
    pub reason: RecoveryReason,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryDecision {
    /// Send the step to the model again.
    Retry,
    /// Close the activity; queued input stays queued.
    Abandon,
}

/// `recovery.resolved` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryResolvedData {
    pub activity_id: String,
    pub decision: RecoveryDecision,
    /// `client`, or `policy` for an automatic retry that config allows.
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryDecideParams {
    pub session_id: String,
    pub decision: RecoveryDecision,
}

method!(
    /// Decides what happens to an activity whose last attempt had an unknown outcome. -32011 when the session
    /// waits for no decision.
    RecoveryDecide,
    "recovery/decide",
    RecoveryDecideParams,
    Empty,
    ordered_by = "sessionId"
);
