//! Credentials: `auth/set`, `auth/list`, `auth/remove`. No answer ever carries a secret.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Empty, method, notification};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSetParams {
    pub provider: String,
    pub api_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthListResult {
    pub entries: Vec<AuthEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthEntry {
    pub provider: String,
    /// `api_key`.
    pub kind: String,
    /// `store` (auth.json) or `env` (the provider's environment variable).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthRemoveParams {
    pub provider: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthRemoveResult {
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthChangedParams {
    /// The provider whose stored credential was added, replaced or removed; never the credential.
    pub provider: String,
}

notification!(
    /// The credential store changed for one provider.
    AuthChanged, "auth/changed", AuthChangedParams
);
method!(AuthSet, "auth/set", AuthSetParams, Empty);
method!(AuthList, "auth/list", Option<Empty>, AuthListResult);
method!(AuthRemove, "auth/remove", AuthRemoveParams, AuthRemoveResult);
