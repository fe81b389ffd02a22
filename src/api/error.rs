//! The one place where engine errors become JSON-RPC error codes.

use jsonrpsee::types::ErrorObjectOwned;
use keel_protocol::error as code;
use serde_json::json;

use crate::{mcp, plugin, session, store};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid params: {path}: {message}")]
    InvalidParams { path: String, message: String },
    #[error("session {0} not found")]
    SessionNotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    ApprovalGone(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not available: {0}")]
    Unavailable(String),
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(path: &str, message: impl Into<String>) -> Self {
        Self::InvalidParams { path: path.to_owned(), message: message.into() }
    }
}

impl From<session::Error> for ApiError {
    fn from(e: session::Error) -> Self {
        match e {
            session::Error::NotFound(id) => Self::SessionNotFound(id),
            session::Error::InvalidParam { path, reason } => Self::invalid(path, reason),
            session::Error::Conflict(message) => Self::Conflict(message),
            session::Error::Unavailable(message) => Self::Unavailable(message),
            session::Error::Store(e) => e.into(),
        }
    }
}

impl From<mcp::McpError> for ApiError {
    fn from(e: mcp::McpError) -> Self {
        match &e {
            mcp::McpError::UnknownServer(_) => Self::invalid("name", e.to_string()),
            mcp::McpError::InvalidSpec(spec) => Self::invalid(&spec.path, spec.message.clone()),
            mcp::McpError::Prompt(_) => Self::invalid("arguments", e.to_string()),
        }
    }
}

impl From<plugin::PluginError> for ApiError {
    fn from(e: plugin::PluginError) -> Self {
        match e {
            plugin::PluginError::NotAPlugin => Self::InvalidRequest(e.to_string()),
            plugin::PluginError::BadTool { path, message } => Self::invalid(&path, message),
            plugin::PluginError::ProviderTaken(_) => Self::invalid("id", e.to_string()),
            plugin::PluginError::UnknownTurn(_) => Self::invalid("requestId", e.to_string()),
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::SessionNotFound(id) => Self::SessionNotFound(id),
            other => {
                tracing::error!("store: {other}");
                Self::Internal(other.to_string())
            }
        }
    }
}

impl From<ApiError> for ErrorObjectOwned {
    fn from(e: ApiError) -> Self {
        let message = e.to_string();
        match e {
            ApiError::InvalidParams { path, .. } => {
                ErrorObjectOwned::owned(code::INVALID_PARAMS, message, Some(json!({ "path": path })))
            }
            ApiError::SessionNotFound(id) => {
                ErrorObjectOwned::owned(code::SESSION_NOT_FOUND, message, Some(json!({ "sessionId": id })))
            }
            ApiError::Conflict(_) => ErrorObjectOwned::owned(code::CONFLICT, message, None::<()>),
            ApiError::Unavailable(_) => ErrorObjectOwned::owned(code::PROVIDER_UNAVAILABLE, message, None::<()>),
            ApiError::ApprovalGone(_) => ErrorObjectOwned::owned(code::APPROVAL_NOT_FOUND, message, None::<()>),
            ApiError::InvalidRequest(_) => ErrorObjectOwned::owned(code::INVALID_REQUEST, message, None::<()>),
            ApiError::Unauthorized(_) => ErrorObjectOwned::owned(code::UNAUTHORIZED, message, None::<()>),
            ApiError::Overloaded(_) => ErrorObjectOwned::owned(code::OVERLOADED, message, None::<()>),
            ApiError::Internal(_) => ErrorObjectOwned::owned(code::INTERNAL_ERROR, message, None::<()>),
        }
    }
}
