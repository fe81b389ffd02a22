//! The engine core for sessions. Knows nothing of connections or JSON-RPC.

pub mod service;

pub use service::Sessions;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("session {0} not found")]
    NotFound(String),
    #[error("{path}: {reason}")]
    InvalidParam { path: &'static str, reason: String },
    #[error(transparent)]
    Store(crate::store::Error),
}

impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Self {
        match e {
            crate::store::Error::SessionNotFound(id) => Self::NotFound(id),
            crate::store::Error::SeqOutOfRange { at_seq, head, .. } => Self::InvalidParam {
                path: "atSeq",
                reason: format!("{at_seq} is outside the session's history (1..={head})"),
            },
            other => Self::Store(other),
        }
    }
}
