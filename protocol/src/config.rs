//! `config/get` and `tool/list`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigGetParams {
    /// Project config is looked up from this directory upwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigGetResult {
    /// The effective config, with secrets (`apiKey`, header values) redacted.
    pub config: serde_json::Value,
    /// The layers merged, lowest precedence first.
    pub layers: Vec<ConfigLayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLayer {
    /// `global`, `env-file` (KEEL_CONFIG), `project`, `legacy` (opencode.json) or `env-content` (KEEL_CONFIG_CONTENT).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolListResult {
    pub tools: Vec<ToolInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    /// `builtin`, `mcp` or `plugin`.
    pub source: String,
}

method!(ConfigGet, "config/get", Option<ConfigGetParams>, ConfigGetResult);
method!(ToolList, "tool/list", Option<ToolListParams>, ToolListResult);
