//! `model/list`, `provider/list`, `auth/*`, `config/get`, `tool/list`, `mcp/*`.

use std::sync::Arc;

use keel_protocol::Empty;
use keel_protocol::auth::{AuthEntry, AuthListResult, AuthRemoveParams, AuthRemoveResult, AuthSetParams};
use keel_protocol::config::{ConfigGetParams, ConfigGetResult, ConfigLayer, ToolInfo, ToolListParams, ToolListResult};
use keel_protocol::mcp::{McpListParams, McpListResult, McpRestartParams, McpRestartResult, McpServer, McpStatus};
use keel_protocol::model::{
    ModelInfo, ModelListParams, ModelListResult, ProviderInfo, ProviderListResult, ProviderStatus,
};

use super::ApiError;
use crate::engine::Engine;
use crate::provider::auth::Credential;
use crate::rpc::Call;

pub async fn models(engine: Arc<Engine>, p: Option<ModelListParams>, _: Call) -> Result<ModelListResult, ApiError> {
    let filter = p.and_then(|p| p.provider);
    let config = engine.config(None);
    let providers = engine.providers().providers(&config);
    let models: Vec<_> = engine
        .providers()
        .models(&config)
        .into_iter()
        .filter(|m| filter.as_deref().is_none_or(|f| m.provider() == f))
        .collect();
    let runnable = engine.providers().runnable_each(&config, &models);
    let models = models
        .into_iter()
        .zip(runnable)
        .map(|(m, runnable)| {
            let available = providers.iter().any(|p| p.id == m.provider() && engine.providers().authenticated(p));
            let not_runnable = runnable.err();
            ModelInfo {
                runnable: not_runnable.is_none(),
                not_runnable,
                provider: m.provider().to_owned(),
                capabilities: m.capabilities(),
                id: m.id,
                name: m.name,
                context_window: m.context_window,
                max_output_tokens: m.max_output_tokens,
                cost: m.cost,
                available,
                source: m.source.to_owned(),
            }
        })
        .collect();
    Ok(ModelListResult { models })
}

pub async fn providers(engine: Arc<Engine>, _: Option<Empty>, _: Call) -> Result<ProviderListResult, ApiError> {
    let config = engine.config(None);
    let providers = engine
        .providers()
        .providers(&config)
        .into_iter()
        .map(|p| {
            let reach = engine.providers().reach(&p.id);
            let (status, error) = match reach {
                None => (ProviderStatus::Unknown, None),
                Some(Ok(())) => (ProviderStatus::Up, None),
                Some(Err(reason)) => (ProviderStatus::Down, Some(reason)),
            };
            ProviderInfo {
                authenticated: engine.providers().authenticated(&p),
                status,
                error,
                id: p.id,
                name: p.name,
                wire: p.wire.as_str().to_owned(),
                base_url: p.base_url,
                source: p.source.to_owned(),
            }
        })
        .collect();
    Ok(ProviderListResult { providers })
}

pub async fn auth_set(engine: Arc<Engine>, p: AuthSetParams, call: Call) -> Result<Empty, ApiError> {
    if p.api_key.trim().is_empty() {
        return Err(ApiError::invalid("apiKey", "must not be empty"));
    }
    engine
        .providers()
        .auth
        .set(&p.provider, Credential::ApiKey { key: p.api_key.trim().to_owned() })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(connection = call.peer.id(), provider = %p.provider, "credential stored");
    Ok(Empty {})
}

pub async fn auth_list(engine: Arc<Engine>, _: Option<Empty>, _: Call) -> Result<AuthListResult, ApiError> {
    let entries = engine.providers().auth.list().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(AuthListResult {
        entries: entries
            .into_iter()
            .map(|e| AuthEntry { provider: e.provider, kind: e.kind.into(), source: e.source.into() })
            .collect(),
    })
}

pub async fn auth_remove(engine: Arc<Engine>, p: AuthRemoveParams, call: Call) -> Result<AuthRemoveResult, ApiError> {
    let removed = engine.providers().auth.remove(&p.provider).map_err(|e| ApiError::Internal(e.to_string()))?;
    if removed {
        tracing::info!(connection = call.peer.id(), provider = %p.provider, "credential removed");
    }
    Ok(AuthRemoveResult { removed })
}

pub async fn config(engine: Arc<Engine>, p: Option<ConfigGetParams>, _: Call) -> Result<ConfigGetResult, ApiError> {
    let cwd = p.and_then(|p| p.cwd);
    let loaded = crate::config::load(engine.paths(), cwd.as_deref().map(std::path::Path::new))
        .map_err(|e| ApiError::invalid("config", e.to_string()))?;
    Ok(ConfigGetResult {
        config: loaded.config.redacted(),
        layers: loaded
            .layers
            .into_iter()
            .map(|l| ConfigLayer { source: l.source.into(), path: l.path.map(|p| p.display().to_string()) })
            .collect(),
    })
}

pub async fn tools(engine: Arc<Engine>, p: Option<ToolListParams>, _: Call) -> Result<ToolListResult, ApiError> {
    let session_id = p.and_then(|p| p.session_id);
    Ok(ToolListResult {
        tools: engine
            .tools()
            .all_for(session_id.as_deref())
            .into_iter()
            .map(|(t, source)| ToolInfo {
                name: t.name().to_owned(),
                description: t.description().to_owned(),
                input_schema: t.input_schema(),
                source: match source {
                    crate::tool::Source::Builtin => "builtin",
                    crate::tool::Source::Mcp => "mcp",
                }
                .into(),
            })
            .collect(),
    })
}

pub async fn mcp_list(engine: Arc<Engine>, p: Option<McpListParams>, _: Call) -> Result<McpListResult, ApiError> {
    let session_id = p.and_then(|p| p.session_id);
    Ok(McpListResult {
        servers: engine
            .mcp_servers()
            .into_iter()
            .filter(|s| session_id.is_none() || s.session_id.is_none() || s.session_id == session_id)
            .map(server)
            .collect(),
    })
}

pub async fn mcp_restart(engine: Arc<Engine>, p: McpRestartParams, _: Call) -> Result<McpRestartResult, ApiError> {
    Ok(McpRestartResult { server: server(engine.restart_mcp(&p.name, p.session_id.as_deref())?) })
}

/// A server as the protocol shows it (`mcp/list`, `mcp/statusChanged`).
pub(super) fn server(info: crate::mcp::ServerInfo) -> McpServer {
    use crate::mcp::Status;
    let (status, error, retrying) = match info.status {
        Status::Starting => (McpStatus::Starting, None, false),
        Status::Ready => (McpStatus::Ready, None, false),
        Status::Failed { reason, retrying } => (McpStatus::Failed, Some(reason), retrying),
        Status::Stopped => (McpStatus::Stopped, None, false),
    };
    McpServer {
        name: info.name,
        session_id: info.session_id,
        transport: info.transport.into(),
        status,
        error,
        retrying,
        tool_count: u32::try_from(info.tools.len()).unwrap_or(u32::MAX),
        tools: info.tools,
        pid: info.pid,
        restarts: info.restarts,
    }
}
