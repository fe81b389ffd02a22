//! `config/get`, `config/set`, `config/unset`, the config notifications, and `tool/list`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{method, notification};

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

/// Which config file `config/set` and `config/unset` edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigScope {
    /// `config.jsonc` (or an existing `config.json`) in keel's config directory.
    Global,
    /// The project file in `cwd`: an existing `keel.jsonc`, `keel.json` or `.keel/config.jsonc`, else a new
    /// `keel.jsonc`.
    Project,
}

/// A place in the config: dotted (`providers.local.baseUrl`) or, for keys that contain dots (`gpt-4.1`), one
/// string per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ConfigPath {
    Dotted(String),
    Keys(Vec<String>),
}

impl ConfigPath {
    /// The keys from the top level down.
    pub fn keys(&self) -> Vec<String> {
        match self {
            Self::Dotted(path) => path.split('.').map(str::to_owned).collect(),
            Self::Keys(keys) => keys.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSetParams {
    pub scope: ConfigScope,
    pub path: ConfigPath,
    pub value: serde_json::Value,
    /// The project directory (required for `project`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigUnsetParams {
    pub scope: ConfigScope,
    pub path: ConfigPath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigEditResult {
    /// The file written.
    pub path: String,
    /// False when the file already said so (`config/unset` of an absent key, or the same value).
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChangedParams {
    /// The top-level keys whose effective value changed (`model`, `providers`, …).
    pub keys: Vec<String>,
    /// The directory whose effective config this is (the engine's own or a session's); absent: the global layers
    /// alone, as `config/get` without `cwd` shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigInvalidParams {
    /// The file that does not parse or validate.
    pub path: String,
    /// Why; the engine keeps using the last config that was valid.
    pub message: String,
}

method!(ConfigGet, "config/get", Option<ConfigGetParams>, ConfigGetResult);
method!(
    /// Sets one value in a config file, keeping its comments; validated before anything is written.
    ConfigSet, "config/set", ConfigSetParams, ConfigEditResult
);
method!(ConfigUnset, "config/unset", ConfigUnsetParams, ConfigEditResult);
notification!(
    /// A watched config file changed and parsed: the effective config's changed top-level keys.
    ConfigChanged, "config/changed", ConfigChangedParams
);
notification!(
    /// A watched config file changed but does not parse or validate; the last valid config stays in effect. Also
    /// sent to a connection as it initializes, for every file that is broken then.
    ConfigInvalid, "config/invalid", ConfigInvalidParams
);

method!(ToolList, "tool/list", Option<ToolListParams>, ToolListResult);
