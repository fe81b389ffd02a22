//! ACP v1 messages as keel receives and sends them, camelCase on the wire. Only the fields keel reads or writes are
//! declared: requests accept anything else a client sends (ACP grows by adding fields), and replies leave out what
//! keel has nothing to say about.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const PROTOCOL_VERSION: u64 = 1;

/// `_meta` under keel's own key, so it never collides with another agent's or client's extension.
#[derive(Debug, Clone, Serialize)]
pub struct Meta<T> {
    pub keel: T,
}

// --- initialize ---

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeRequest {
    /// Not checked: keel answers with the one version it speaks and the client decides.
    #[serde(default)]
    pub protocol_version: Option<u64>,
    #[serde(default)]
    pub client_info: Option<ClientInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    pub protocol_version: u64,
    pub agent_capabilities: AgentCapabilities,
    /// Always empty: keel authenticates providers itself (`keel auth`), so ACP clients have nothing to do.
    pub auth_methods: Vec<AuthMethod>,
    pub agent_info: Implementation,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthMethod {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    pub load_session: bool,
    pub prompt_capabilities: PromptCapabilities,
    pub mcp_capabilities: McpCapabilities,
    pub session_capabilities: SessionCapabilities,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta<KeelCapabilities>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptCapabilities {
    pub image: bool,
    pub audio: bool,
    pub embedded_context: bool,
}

/// The MCP transports `mcpServers` may use besides stdio, which every agent supports.
#[derive(Debug, Clone, Serialize)]
pub struct McpCapabilities {
    pub http: bool,
    pub sse: bool,
}

/// Each capability is an empty object when supported and absent when not.
#[derive(Debug, Clone, Serialize)]
pub struct SessionCapabilities {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close: Option<Empty>,
    /// Unstable in ACP: `session/fork`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fork: Option<Empty>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeelCapabilities {
    /// The extension method that steers a running prompt.
    pub steer: &'static str,
    /// keel's native protocol version, for clients that also speak it.
    pub protocol_version: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Implementation {
    pub name: &'static str,
    pub title: &'static str,
    pub version: &'static str,
}

// --- sessions ---

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSessionRequest {
    pub cwd: String,
    /// Started for this session only, in the background.
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
}

/// An MCP server the client wants the session to have: stdio (no `type`, or `stdio`) or `http`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpServer {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<NameValue>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub headers: Vec<NameValue>,
}

/// An environment variable or an HTTP header.
#[derive(Debug, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// `session/load` and `session/resume`: a stored session, and the MCP servers to give it on this connection
/// (`cwd` is the stored session's).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenSessionRequest {
    pub session_id: String,
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSessionResponse {
    pub session_id: String,
    pub modes: SessionModeState,
    pub config_options: Vec<ConfigOption>,
}

/// The answer of `session/load` and `session/resume`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenSessionResponse {
    pub modes: SessionModeState,
    pub config_options: Vec<ConfigOption>,
}

/// keel's primary agents are ACP's session modes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionModeState {
    pub current_mode_id: String,
    pub available_modes: Vec<SessionMode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionMode {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetSessionModeRequest {
    pub session_id: String,
    pub mode_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetSessionModeResponse {}

/// `session/close` and the `session/cancel` notification: a session and nothing keel needs besides.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    pub session_id: String,
}

pub type LoadSessionRequest = OpenSessionRequest;

/// `session/fork` (unstable in ACP): a copy of a stored session's history as a new session. The copy keeps the
/// source's workspace, so ACP's required `cwd` is read as any unknown field is: not at all.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForkSessionRequest {
    pub session_id: String,
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
}
pub type ResumeSessionRequest = OpenSessionRequest;
pub type CloseSessionRequest = SessionRequest;
pub type CancelNotification = SessionRequest;

/// The answer of `session/set_config_option`, and the `config_option_update` notification's body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigOptionsResponse {
    pub config_options: Vec<ConfigOption>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CloseSessionResponse {}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsRequest {
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsResponse {
    pub sessions: Vec<SessionInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub session_id: String,
    pub cwd: String,
    pub title: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetConfigOptionRequest {
    pub session_id: String,
    pub config_id: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConfigOption {
    Select(SelectOption),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectOption {
    pub id: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub current_value: String,
    pub options: Vec<SelectValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectValue {
    pub value: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

// --- prompts ---

/// `session/prompt`, and keel's `_keel/steer` which has the same shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptRequest {
    pub session_id: String,
    pub prompt: Vec<ContentBlock>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptResponse {
    pub stop_reason: StopReason,
    /// What the prompt's turns used (ACP's end-of-turn token usage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TurnUsage>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnUsage {
    pub total_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_read_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_write_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    MaxTurnRequests,
    Refusal,
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SteerResponse {
    pub input_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    Image {
        #[serde(rename = "mimeType", default, skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
        data: String,
    },
    ResourceLink {
        uri: String,
        #[serde(default)]
        name: String,
    },
    Resource {
        resource: EmbeddedResource,
    },
    /// Blocks keel does not take (audio, newer kinds): skipped, as the capabilities announce.
    #[serde(other, skip_serializing)]
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedResource {
    pub uri: String,
    /// Absent for binary resources, which keel cannot read into a prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

// --- permissions ---

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestPermissionRequest {
    pub session_id: String,
    pub tool_call: ToolCall,
    pub options: Vec<PermissionOption>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionOption {
    /// keel uses the kind as the id: one option of each kind.
    pub option_id: PermissionOptionKind,
    pub name: &'static str,
    pub kind: PermissionOptionKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionOptionKind {
    AllowOnce,
    AllowAlways,
    RejectOnce,
    RejectAlways,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalMeta {
    pub approval_id: String,
    pub title: String,
    pub action: String,
    pub resources: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct RequestPermissionResponse {
    pub outcome: PermissionOutcome,
}

/// The option id stays a string: an id keel did not offer is read as a rejection, not as a malformed answer.
#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PermissionOutcome {
    Selected {
        #[serde(rename = "optionId")]
        option_id: String,
    },
    Cancelled,
}

// --- session/update ---

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionNotification {
    pub session_id: String,
    pub update: SessionUpdate,
}

/// One update, with keel's position in the session's log.
#[derive(Debug, Clone, Serialize)]
pub struct SessionUpdate {
    #[serde(flatten)]
    pub kind: UpdateKind,
    #[serde(rename = "_meta")]
    pub meta: Meta<Position>,
}

/// An event's update says its own seq; a streamed fragment, not yet an event, says the seq it follows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "sessionUpdate", rename_all = "snake_case")]
pub enum UpdateKind {
    UserMessageChunk(Chunk),
    AgentMessageChunk(Chunk),
    AgentThoughtChunk(Chunk),
    ToolCall(ToolCall),
    ToolCallUpdate(ToolCallUpdate),
    Plan(Plan),
    UsageUpdate(Usage),
    SessionInfoUpdate(SessionInfoUpdate),
    AvailableCommandsUpdate(AvailableCommands),
    CurrentModeUpdate(CurrentMode),
    ConfigOptionUpdate(ConfigOptionsResponse),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentMode {
    pub current_mode_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableCommands {
    pub available_commands: Vec<AvailableCommand>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AvailableCommand {
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<CommandInput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommandInput {
    pub hint: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfoUpdate {
    pub title: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    pub content: ContentBlock,
    pub message_id: String,
}

/// A tool call as `tool_call` announces it and as `session/request_permission` asks about it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    pub tool_call_id: String,
    pub title: String,
    pub kind: ToolKind,
    pub status: ToolCallStatus,
    /// The model's input as it wrote it: arbitrary JSON.
    pub raw_input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<Location>>,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta<ApprovalMeta>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallUpdate {
    pub tool_call_id: String,
    pub status: ToolCallStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ToolCallContent>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<RawOutput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RawOutput {
    pub output: String,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    Read,
    Edit,
    Execute,
    Search,
    Fetch,
    Think,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolCallContent {
    Content {
        content: ContentBlock,
    },
    /// The texts are copied from the model's tool input unvalidated, hence `Value`; `oldText` is null for a new file.
    Diff {
        path: String,
        #[serde(rename = "oldText")]
        old_text: Value,
        #[serde(rename = "newText")]
        new_text: Value,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
}

/// Copied from `todowrite`'s input as the model wrote it, hence `Value`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub content: Value,
    pub priority: &'static str,
    pub status: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub used: u64,
    pub size: u64,
    pub cost: Cost,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub amount: f64,
    pub currency: &'static str,
}
