//! `mcp/*`: the Model Context Protocol servers whose tools the model sees.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{method, notification};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpListParams {
    /// Config's servers and this session's own; without it, every server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpListResult {
    pub servers: Vec<McpServer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServer {
    pub name: String,
    /// Set for a server that a client passed for one session (ACP `mcpServers`); config's servers have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `stdio` or `http`.
    pub transport: String,
    pub status: McpStatus,
    /// Why it failed (with the end of a stdio server's stderr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a failed server: whether keel starts it again on its own (with backoff) or waits for `mcp/restart`.
    pub retrying: bool,
    pub tool_count: u32,
    /// The tools' names as the model sees them (`server_tool`).
    pub tools: Vec<String>,
    /// A stdio server's process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Starts after the first one (crashes and `mcp/restart`).
    pub restarts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum McpStatus {
    Starting,
    Ready,
    Failed,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpRestartParams {
    #[serde(alias = "server")]
    pub name: String,
    /// Restart this session's own server of that name rather than config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpRestartResult {
    /// The server as the restart leaves it: `starting`.
    pub server: McpServer,
}

method!(McpList, "mcp/list", Option<McpListParams>, McpListResult);
method!(McpRestart, "mcp/restart", McpRestartParams, McpRestartResult);
notification!(
    /// Sent to every initialized connection when a server's state changes (starting, ready, failed, stopped, its
    /// tool list); `mcp/list` has them all.
    McpStatusChanged, "mcp/statusChanged", McpServer
);
notification!(
    /// Config's MCP servers were added, removed or changed (they restart as the config now reads): `mcp/list` again.
    McpListChanged, "mcp/listChanged", crate::Empty
);
