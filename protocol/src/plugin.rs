//! Plugins: processes (any language) that the engine starts from config and talks to over their stdio with this
//! same protocol. A plugin is a client like any other (it may `initialize`, prompt a session, list models) that also
//! declares hooks (`plugin/register`) and tools (`tool/register`); the engine then sends it the hook requests below.
//! A hook answers with the changes it wants; they apply only when the answer comes in time and without error, so a
//! failing plugin leaves the call exactly as it was.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::{method, notification};

/// The points of the engine a plugin can hook into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Hook {
    /// Before a tool call's permission check: may rewrite its input or refuse it.
    #[serde(rename = "tool/before")]
    ToolBefore,
    /// After a tool ran: may rewrite its output.
    #[serde(rename = "tool/after")]
    ToolAfter,
    /// Before a model request: may add to the system prompt, set the temperature, add headers.
    #[serde(rename = "chat/params")]
    ChatParams,
    /// When the rules ask for approval: may answer in the user's stead.
    #[serde(rename = "permission/ask")]
    PermissionAsk,
    /// Every durable event this engine commits, after the commit.
    #[serde(rename = "event")]
    Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginRegisterParams {
    /// Replaces the hooks declared before.
    pub hooks: Vec<Hook>,
}

/// A tool a plugin offers; the engine calls it with `tool/call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolDeclaration {
    /// `^[a-zA-Z0-9_-]{1,64}$`; a built-in tool's name is refused.
    pub name: String,
    pub description: String,
    /// The JSON Schema of its input (an object).
    pub input_schema: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolRegisterParams {
    /// Replaces the tools registered before.
    pub tools: Vec<ToolDeclaration>,
}

method!(
    /// Only on a plugin's own connection: the hooks the engine sends it.
    PluginRegister,
    "plugin/register",
    PluginRegisterParams,
    crate::Empty
);
method!(
    /// Only on a plugin's own connection: tools the model may call, run by the plugin (`tool/call`). Their
    /// permission action is `plugin`, on `plugin/tool`.
    ToolRegister,
    "tool/register",
    ToolRegisterParams,
    crate::Empty
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    /// The process runs and has not registered yet.
    Starting,
    Ready,
    /// It could not start or it died; `retrying` says whether another start comes on its own.
    Failed,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plugin {
    pub name: String,
    pub status: PluginStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub retrying: bool,
    pub hooks: Vec<Hook>,
    pub tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Starts after the first one.
    pub restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginListResult {
    /// In the order their hooks run.
    pub plugins: Vec<Plugin>,
}

method!(PluginList, "plugin/list", Option<crate::Empty>, PluginListResult);

// Engine → plugin.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolBeforeParams {
    pub session_id: String,
    pub call_id: String,
    pub tool: String,
    /// The input as the model (or an earlier plugin) wrote it.
    pub input: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolBeforeResult {
    /// The input to use instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Refuses the call; the model sees this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolAfterParams {
    pub session_id: String,
    pub call_id: String,
    pub tool: String,
    pub input: Value,
    pub output: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolAfterResult {
    /// The output the model sees instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatParamsParams {
    pub session_id: String,
    pub agent: String,
    /// `provider/model`.
    pub model: String,
    pub system: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Extra HTTP headers of the request (values of configured headers are not shown).
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatParamsResult {
    /// Appended to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Added to the request's HTTP headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionAskParams {
    pub session_id: String,
    pub call_id: String,
    pub tool: String,
    pub action: String,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PermissionAnswer {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionAskResult {
    /// Without it the user is asked as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<PermissionAnswer>,
    /// The reason the model sees when denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallParams {
    pub session_id: String,
    pub call_id: String,
    pub tool: String,
    pub input: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallResult {
    pub output: String,
    /// The call failed; `output` says why.
    #[serde(default)]
    pub is_error: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventHookParams {
    pub event: Event,
}

method!(ToolBefore, "tool/before", ToolBeforeParams, ToolBeforeResult);
method!(ToolAfter, "tool/after", ToolAfterParams, ToolAfterResult);
method!(ChatParams, "chat/params", ChatParamsParams, ChatParamsResult);
method!(PermissionAsk, "permission/ask", PermissionAskParams, PermissionAskResult);
method!(ToolCall, "tool/call", ToolCallParams, ToolCallResult);
notification!(EventHook, "event", EventHookParams);

/// `plugin.acted` (version 1): a plugin's hook changed something of a session's call or request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginActedData {
    pub plugin: String,
    pub hook: Hook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// What it did, in words ("rewrote the input", "denied: …").
    pub change: String,
    /// The input it gave a call (`tool/before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// `plugin.failed` (version 1): a hook failed, timed out or its plugin died; what it was given went on unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginFailedData {
    pub plugin: String,
    pub hook: Hook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub error: String,
}

notification!(
    /// A plugin started, registered, failed or stopped; `plugin/list` has the current list.
    PluginListChanged,
    "plugin/listChanged",
    crate::Empty
);

// A plugin's own provider: its models join the model database, and their turns are streamed by the plugin.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderModel {
    /// Without the provider's prefix.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tokens; unknown when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Whether it calls tools (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
    #[serde(default)]
    pub reasoning: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRegisterParams {
    /// The provider's id, the prefix of its models' ids (`id/model`); a built-in or configured provider's id is
    /// refused.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Replaces the models registered before under this id.
    pub models: Vec<ProviderModel>,
}

method!(
    /// Only on a plugin's own connection: a provider the plugin serves (`provider/stream`).
    ProviderRegister,
    "provider/register",
    ProviderRegisterParams,
    crate::Empty
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UserContent {
    Text { text: String },
    Image { mime: String, data: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderToolCall {
    pub id: String,
    pub name: String,
    pub input: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "role", rename_all = "camelCase")]
pub enum ProviderMessage {
    User {
        content: Vec<UserContent>,
    },
    #[serde(rename_all = "camelCase")]
    Assistant {
        text: String,
        tool_calls: Vec<ProviderToolCall>,
    },
    #[serde(rename_all = "camelCase")]
    Tool {
        call_id: String,
        tool: String,
        output: String,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStreamParams {
    /// Names this turn in the plugin's `provider/delta` requests.
    pub request_id: String,
    /// Without the provider's prefix.
    pub model: String,
    pub system: String,
    pub messages: Vec<ProviderMessage>,
    pub tools: Vec<ToolDeclaration>,
    pub max_output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<crate::session::ReasoningEffort>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderUsage {
    pub input: u64,
    pub output: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStreamResult {
    /// `stop`, `tool_calls` or `length`.
    pub finish_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ProviderUsage>,
}

method!(
    /// Engine → plugin: stream one turn of a model the plugin registered. The plugin sends the turn's pieces with
    /// `provider/delta` and answers once they are answered.
    ProviderStream,
    "provider/stream",
    ProviderStreamParams,
    ProviderStreamResult
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ProviderDelta {
    Text { text: String },
    Reasoning { text: String },
    ToolCall(ProviderToolCall),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderDeltaParams {
    pub request_id: String,
    pub deltas: Vec<ProviderDelta>,
}

method!(
    /// Only on a plugin's own connection, while a `provider/stream` is out: the next pieces of that turn.
    ProviderDeltas,
    "provider/delta",
    ProviderDeltaParams,
    crate::Empty,
    ordered_by = "requestId"
);
