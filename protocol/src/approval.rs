//! Approvals: durable questions to the user about a tool call, and their answers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Empty, method};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allow this call.
    Once,
    /// Allow this call and store an allow rule for the project.
    Always,
    /// Refuse; the optional message reaches the model.
    Reject,
}

/// A pending approval, as `session/get` lists it and `approval/request` asks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub approval_id: String,
    pub session_id: String,
    pub call_id: String,
    pub tool: String,
    /// The permission asked for, e.g. `edit`, `bash`, `external_directory`.
    pub action: String,
    /// What the action touches: paths, commands.
    pub resources: Vec<String>,
    pub title: String,
}

/// The answer to the server→client `approval/request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalAnswer {
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRespondParams {
    pub approval_id: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `approval.requested` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestedData {
    pub approval_id: String,
    pub call_id: String,
    pub tool: String,
    pub action: String,
    pub resources: Vec<String>,
    pub title: String,
    /// Always `["once", "always", "reject"]`.
    pub options: Vec<String>,
}

/// What an approval was resolved with: a client's decision, or `cancelled` by an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolved {
    Once,
    Always,
    Reject,
    Cancelled,
}

impl From<Decision> for Resolved {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Once => Resolved::Once,
            Decision::Always => Resolved::Always,
            Decision::Reject => Resolved::Reject,
        }
    }
}

/// `approval.resolved` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalResolvedData {
    pub approval_id: String,
    pub decision: Resolved,
    /// Who answered: a client name, `rule` (covered by an `always` rule), `interrupt`, `keel run`.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

method!(
    /// Answers a pending approval; -32012 when it is unknown or already answered.
    ApprovalRespond, "approval/respond", ApprovalRespondParams, Empty
);
method!(
    /// Server→client: sent to every subscribed client that declared `capabilities.approvals`; first answer wins.
    ApprovalRequest, "approval/request", Approval, ApprovalAnswer
);
