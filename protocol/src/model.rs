//! The model database and providers: `model/list`, `provider/list`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Empty, method, notification};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelListResult {
    pub models: Vec<ModelInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// `provider/model`.
    pub id: String,
    pub provider: String,
    pub name: String,
    pub context_window: u64,
    pub max_output_tokens: u64,
    pub capabilities: ModelCapabilities,
    pub cost: ModelCost,
    /// The provider is configured and has credentials (or needs none).
    pub available: bool,
    /// `catalog`, `config` or `runtime`.
    pub source: String,
    /// The model can run now: its provider is declared in config (or is built in with its key present) and has
    /// its credential. The offline `scripted` player counts only when config names it. Pickers offer these.
    #[serde(default)]
    pub runnable: bool,
    /// Why the model cannot run (absent when `runnable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_runnable: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelCapabilities {
    pub tools: bool,
    pub reasoning: bool,
    pub images: bool,
}

/// USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelCost {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderListResult {
    pub providers: Vec<ProviderInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInfo {
    pub id: String,
    pub name: String,
    /// `openai-chat`, `openai-responses`, `anthropic` or `scripted`.
    pub wire: String,
    pub base_url: String,
    pub authenticated: bool,
    /// `builtin` or `config`.
    pub source: String,
    /// `unknown` (not checked), `up` (it listed its models) or `down` (it could not be reached: `error` says
    /// why). Only providers that list their models are checked.
    pub status: ProviderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    #[default]
    Unknown,
    Up,
    Down,
}

method!(ModelList, "model/list", Option<ModelListParams>, ModelListResult);
method!(ProviderList, "provider/list", Option<Empty>, ProviderListResult);
notification!(
    /// The model database changed (config, a provider's discovered models, credentials): `model/list` again.
    ModelListChanged, "model/listChanged", Empty
);
notification!(
    /// Providers changed (config, credentials, reachability): `provider/list` again.
    ProviderListChanged, "provider/listChanged", Empty
);
