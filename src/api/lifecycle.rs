//! `initialize` and `shutdown`. `exit`, `initialized` and `$/cancelRequest` are handled by the connection itself.

use std::sync::Arc;

use keel_protocol::PROTOCOL_VERSION;
use keel_protocol::initialize::{InitializeParams, InitializeResult, ServerCapabilities, ServerInfo};

use keel_protocol::Empty;
use keel_protocol::Notification;
use keel_protocol::auth::{AuthChanged, AuthChangedParams};
use keel_protocol::config::{ConfigChanged, ConfigChangedParams, ConfigInvalid, ConfigInvalidParams};
use keel_protocol::mcp::{McpListChanged, McpStatusChanged};
use keel_protocol::model::{ModelListChanged, ProviderListChanged};
use keel_protocol::plugin::PluginListChanged;
use keel_protocol::session::{SessionStatusChanged, SessionStatusChangedParams, SessionUsage, SessionUsageParams};
use tokio::sync::broadcast;

use super::ApiError;
use crate::engine::Engine;
use crate::rpc::PeerRef;
use crate::rpc::{Call, framing::MAX_FRAME};
use crate::session::Notice;

pub async fn initialize(engine: Arc<Engine>, p: InitializeParams, call: Call) -> Result<InitializeResult, ApiError> {
    if p.protocol_version != PROTOCOL_VERSION {
        let reason = format!("this engine speaks protocol version {PROTOCOL_VERSION}");
        return Err(ApiError::invalid("protocolVersion", reason));
    }
    if let Some(required) = &call.required_token
        && !crate::rpc::tokens_match(p.auth_token.as_deref().unwrap_or_default(), required)
    {
        tracing::info!(connection = call.peer.id(), "initialize refused: bad or missing authToken");
        return Err(ApiError::Unauthorized("bad or missing authToken"));
    }
    let already = call.peer.update_lifecycle(|l| {
        let already = l.initialized;
        if !already {
            l.initialized = true;
            l.client_name = p.client_info.name.clone();
        }
        already
    });
    if !already {
        super::client::Client::of(&call.peer).declare(p.capabilities.clone());
    }
    if already {
        return Err(ApiError::InvalidRequest("the connection is already initialized".into()));
    }
    let notices = engine.notices().subscribe();
    let mcp = engine.watch_mcp();
    let peer = Arc::clone(&call.peer);
    call.after_response(move || {
        peer.spawn_task("notices".into(), forward_notices(engine, notices, mcp, Arc::clone(&peer)))
    });
    Ok(InitializeResult {
        protocol_version: PROTOCOL_VERSION,
        server_info: ServerInfo { name: "keel".into(), version: env!("CARGO_PKG_VERSION").into() },
        capabilities: ServerCapabilities {
            durable_cursors: true,
            max_frame_bytes: MAX_FRAME as u64,
            framings: vec!["content-length".into(), "ndjson".into()],
        },
    })
}

pub async fn shutdown(engine: Arc<Engine>, _: Option<keel_protocol::Empty>, call: Call) -> Result<(), ApiError> {
    call.peer.update_lifecycle(|l| l.shut_down = true);
    // Answered once running turns are suspended, so that the `exit` that follows ends the process at once.
    if engine.settings().suspend_on_shutdown_request {
        engine.shutdown().await;
    }
    Ok(())
}

/// Engine-wide news goes to every initialized connection. A connection too slow to keep up misses some; status is
/// also in the event log and in `session/get`.
async fn forward_notices(
    engine: Arc<Engine>,
    mut notices: broadcast::Receiver<Notice>,
    mut mcp: broadcast::Receiver<crate::mcp::ServerInfo>,
    peer: PeerRef,
) {
    use broadcast::error::RecvError;
    // A client that connects while a config file is broken hears of it as one that was connected would have.
    for (path, message) in engine.config_problems() {
        if peer.notify(ConfigInvalid::NAME, &ConfigInvalidParams { path, message }).await.is_err() {
            return;
        }
    }
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => notice,
            server = mcp.recv() => match server {
                Ok(server) => {
                    let params = super::catalog::server(server);
                    if peer.notify(McpStatusChanged::NAME, &params).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(RecvError::Lagged(_)) => continue,
                // The engine's MCP manager lives as long as the engine: this only happens at shutdown.
                Err(RecvError::Closed) => return,
            },
        };
        match notice {
            Ok(Notice::ApprovalRequested(row)) => super::approval::deliver(&engine, &peer, row),
            Ok(Notice::ApprovalResolved { approval_id, .. }) => peer.withdraw(&approval_id),
            Ok(Notice::StatusChanged { session_id, status }) => {
                let params = SessionStatusChangedParams { session_id, status };
                if peer.notify(SessionStatusChanged::NAME, &params).await.is_err() {
                    return;
                }
            }
            Ok(Notice::ConfigChanged { cwd, keys }) => {
                if peer.notify(ConfigChanged::NAME, &ConfigChangedParams { keys, cwd }).await.is_err() {
                    return;
                }
            }
            Ok(Notice::ConfigInvalid { path, message }) => {
                if peer.notify(ConfigInvalid::NAME, &ConfigInvalidParams { path, message }).await.is_err() {
                    return;
                }
            }
            Ok(Notice::AuthChanged { provider }) => {
                if peer.notify(AuthChanged::NAME, &AuthChangedParams { provider }).await.is_err() {
                    return;
                }
            }
            Ok(Notice::ModelsChanged) => {
                if peer.notify(ModelListChanged::NAME, &Empty {}).await.is_err() {
                    return;
                }
            }
            Ok(Notice::ProvidersChanged) => {
                if peer.notify(ProviderListChanged::NAME, &Empty {}).await.is_err() {
                    return;
                }
            }
            Ok(Notice::McpListChanged) => {
                if peer.notify(McpListChanged::NAME, &Empty {}).await.is_err() {
                    return;
                }
            }
            Ok(Notice::PluginListChanged) => {
                if peer.notify(PluginListChanged::NAME, &Empty {}).await.is_err() {
                    return;
                }
            }
            Ok(Notice::UsageChanged { session_id, context }) => {
                // A session deleted since has no totals to tell.
                let Ok(row) = engine.sessions.get(&session_id) else { continue };
                let params = SessionUsageParams {
                    usage: super::session::usage(&row),
                    context: super::session::context_usage(context),
                    session_id,
                };
                if peer.notify(SessionUsage::NAME, &params).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}
