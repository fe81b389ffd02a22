//! `plugin/register`, `tool/register` (a plugin's own connection only) and `plugin/list`.

use std::sync::Arc;

use keel_protocol::Empty;
use keel_protocol::plugin::{
    PluginListResult, PluginRegisterParams, ProviderDeltaParams, ProviderRegisterParams, ToolRegisterParams,
};

use super::ApiError;
use crate::engine::Engine;
use crate::rpc::Call;

pub async fn register(engine: Arc<Engine>, p: PluginRegisterParams, call: Call) -> Result<Empty, ApiError> {
    engine.plugin_host().register_hooks(call.peer.id(), p.hooks)?;
    Ok(Empty {})
}

pub async fn register_tools(engine: Arc<Engine>, p: ToolRegisterParams, call: Call) -> Result<Empty, ApiError> {
    engine.register_plugin_tools(call.peer.id(), p.tools)?;
    Ok(Empty {})
}

pub async fn list(engine: Arc<Engine>, _: Option<Empty>, _: Call) -> Result<PluginListResult, ApiError> {
    Ok(PluginListResult { plugins: engine.plugins() })
}

pub async fn register_provider(engine: Arc<Engine>, p: ProviderRegisterParams, call: Call) -> Result<Empty, ApiError> {
    engine.register_plugin_provider(call.peer.id(), p)?;
    Ok(Empty {})
}

pub async fn delta(engine: Arc<Engine>, p: ProviderDeltaParams, call: Call) -> Result<Empty, ApiError> {
    engine.plugin_host().deliver(call.peer.id(), p)?;
    Ok(Empty {})
}
