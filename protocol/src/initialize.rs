//! The LSP-style lifecycle: `initialize`, `initialized`, `shutdown`, `exit`, `$/cancelRequest`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Empty, method, notification};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// Must be 1.
    pub protocol_version: u32,
    pub client_info: ClientInfo,
    #[serde(default)]
    pub capabilities: ClientCapabilities,
    /// Required on a non-loopback TCP listener started with `--token-file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCapabilities {
    /// The client answers `approval/request` server→client requests.
    #[serde(default)]
    pub approvals: bool,
    /// The client wants ephemeral `session/delta` notifications.
    #[serde(default)]
    pub deltas: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    pub protocol_version: u32,
    pub server_info: ServerInfo,
    pub capabilities: ServerCapabilities,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerCapabilities {
    /// Replays are exactly-once from any cursor, also across engine restarts.
    pub durable_cursors: bool,
    /// The largest frame the engine reads, in bytes.
    pub max_frame_bytes: u64,
    /// The framings this engine detects per connection.
    pub framings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelParams {
    /// The id of the request to cancel.
    pub id: serde_json::Value,
}

method!(
    /// The first request on every connection.
    Initialize, "initialize", InitializeParams, InitializeResult
);
method!(
    /// Afterwards only `exit` is accepted.
    Shutdown, "shutdown", Option<Empty>, ()
);
notification!(Initialized, "initialized", Option<Empty>);
notification!(
    /// Ends the process (stdio) or the connection (sockets).
    Exit, "exit", Option<Empty>
);
notification!(
    /// Either direction: the named request answers -32800.
    CancelRequest, "$/cancelRequest", CancelParams
);
