//! The one place where ACP failures become JSON-RPC errors, and where params are decoded.

use jsonrpsee::types::ErrorObjectOwned;
use keel_protocol::error as code;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::provider::ProviderError;
use crate::{session, store};

/// ACP's "resource not found" (the JSON-RPC server-error range; ACP names no other code of its own).
pub const RESOURCE_NOT_FOUND: i32 = -32002;

#[derive(Debug, thiserror::Error)]
pub enum AcpError {
    /// A param that does not decode or says something keel cannot use; `path` names it.
    #[error("invalid params: {path}: {message}")]
    InvalidParams { path: String, message: String },
    /// Well-formed params the engine turns down (an unknown model, a session that is busy, ...).
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AcpError {
    pub fn invalid(path: &str, message: impl Into<String>) -> Self {
        Self::InvalidParams { path: path.to_owned(), message: message.into() }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The error's `data` for invalid params, as the native protocol sends it.
#[derive(Serialize)]
struct PathData {
    path: String,
}

impl From<AcpError> for ErrorObjectOwned {
    fn from(e: AcpError) -> Self {
        let message = e.to_string();
        match e {
            AcpError::InvalidParams { path, .. } => {
                ErrorObjectOwned::owned(code::INVALID_PARAMS, message, Some(PathData { path }))
            }
            AcpError::Rejected(_) => ErrorObjectOwned::owned(code::INVALID_PARAMS, message, None::<()>),
            AcpError::NotFound(_) => ErrorObjectOwned::owned(RESOURCE_NOT_FOUND, message, None::<()>),
            AcpError::Internal(_) => ErrorObjectOwned::owned(code::INTERNAL_ERROR, message, None::<()>),
        }
    }
}

impl From<session::Error> for AcpError {
    fn from(e: session::Error) -> Self {
        match e {
            session::Error::NotFound(_) => Self::NotFound(e.to_string()),
            session::Error::InvalidParam { path, reason } => Self::invalid(path, reason),
            session::Error::Conflict(message) | session::Error::Unavailable(message) => Self::Rejected(message),
            session::Error::Store(e) => e.into(),
        }
    }
}

impl From<store::Error> for AcpError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::SessionNotFound(_) => Self::NotFound(e.to_string()),
            other => {
                tracing::error!("store: {other}");
                Self::Internal(other.to_string())
            }
        }
    }
}

impl From<ProviderError> for AcpError {
    fn from(e: ProviderError) -> Self {
        Self::Rejected(e.to_string())
    }
}

/// Decodes a method's params; a field that does not fit is named by its path. Absent params are an empty object, so
/// a missing required field is reported by name.
pub fn parse<P: DeserializeOwned>(raw: Option<&str>) -> Result<P, AcpError> {
    let mut de = serde_json::Deserializer::from_str(raw.unwrap_or("{}"));
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_json appends the position, which says nothing useful about a single params object.
        let message = message.split(" at line ").next().unwrap_or_default().to_owned();
        let field = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
        let path = match (field, at.as_str()) {
            (Some(field), ".") => field.to_owned(),
            (Some(field), parent) => format!("{parent}.{field}"),
            (None, path) => path.to_owned(),
        };
        AcpError::InvalidParams { path, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acp::schema::{PromptRequest, SetConfigOptionRequest};

    fn path_of<P: DeserializeOwned + std::fmt::Debug>(raw: &str) -> String {
        match parse::<P>(Some(raw)) {
            Err(AcpError::InvalidParams { path, .. }) => path,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        assert_eq!(path_of::<SetConfigOptionRequest>(r#"{"sessionId":"s","configId":"model"}"#), "value");
        assert_eq!(path_of::<PromptRequest>(r#"{"sessionId":"s","prompt":[{"type":"text"}]}"#), "prompt[0].text");
        assert_eq!(path_of::<PromptRequest>(r#"{"sessionId":1,"prompt":[]}"#), "sessionId");
    }

    #[test]
    fn extra_fields_and_unknown_blocks_are_accepted() {
        let raw = r#"{"sessionId":"s","x":1,"prompt":[{"type":"audio","data":""},{"type":"text","text":"hi","y":2}]}"#;
        let request: PromptRequest = parse(Some(raw)).unwrap();
        assert_eq!(request.prompt.len(), 2);
    }
}
