//! User shell commands: `session/shell` runs a command the user typed (opencode's `!cmd`) in the session's workspace,
//! under its permission rules and sandbox. The command and its output are events of the session, and the model sees
//! them in its next turn.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShellParams {
    pub session_id: String,
    /// A bash command line.
    pub command: String,
    /// Milliseconds before the command and everything it started are killed (default 120000, at most 600000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShellResult {
    pub shell_id: String,
    /// stdout then stderr, as the model will see it (a long output is cut and saved, as for the `bash` tool).
    pub output: String,
    /// Absent when the command was killed (timeout, interrupt) or could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The seq of its `shell.completed`.
    pub seq: u64,
}

/// `shell.started` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShellStartedData {
    pub shell_id: String,
    pub command: String,
}

/// `shell.completed` (version 1): also when the command failed or was killed; `error` then says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShellCompletedData {
    pub shell_id: String,
    pub command: String,
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

method!(
    /// Runs a user's command in the session's workspace and answers when it ended; refused where the rules deny
    /// it. A rule that asks is answered by the call itself: the user is the one asking. It runs to its end (or
    /// timeout) also when the request is cancelled, so that its `shell.completed` is always recorded.
    SessionShell, "session/shell", ShellParams, ShellResult, ordered_by = "sessionId"
);
