//! The engine core for sessions: the service (CRUD), the inbox, the runner and its context. Knows nothing of
//! connections or JSON-RPC.

pub mod approval;
pub mod compaction;
pub mod context;
pub mod coordinator;
pub mod follow;
pub mod inbox;
pub mod prompt;
pub mod recovery;
pub mod runner;
pub mod service;
mod services;
pub mod shell;
pub mod title;
pub mod usage;

use keel_protocol::session::SessionStatus;
use keel_protocol::turn::DeltaKind;

pub use service::Sessions;
pub use services::{Services, Settings};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("session {0} not found")]
    NotFound(String),
    #[error("{path}: {reason}")]
    InvalidParam { path: &'static str, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
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

/// An event to append, with the session layer's error type.
pub(crate) fn event(body: keel_protocol::catalogue::EventBody) -> Result<crate::store::NewEvent, Error> {
    Ok(crate::store::NewEvent::new(body)?)
}

/// A streamed fragment; ephemeral, batched by the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub session_id: String,
    pub message_id: String,
    pub part_id: String,
    pub kind: DeltaKind,
    pub text: String,
}

/// Engine-wide news for every connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    StatusChanged {
        session_id: String,
        status: SessionStatus,
    },
    /// A tool call waits for an answer.
    ApprovalRequested(crate::store::approvals::ApprovalRow),
    /// An approval was answered (or cancelled): outstanding questions about it can be withdrawn.
    ApprovalResolved {
        session_id: String,
        approval_id: String,
    },
    /// The effective config of a directory (`None`: the global layers) changed in these top-level keys.
    ConfigChanged {
        cwd: Option<String>,
        keys: Vec<String>,
    },
    /// A config file changed and does not load; the last good config stays in effect.
    ConfigInvalid {
        path: String,
        message: String,
    },
    ModelsChanged,
    ProvidersChanged,
    /// The stored credential of a provider changed (never the credential itself).
    AuthChanged {
        provider: String,
    },
    /// Config's MCP servers changed and were restarted as they now read.
    McpListChanged,
    /// A plugin started, registered, failed or stopped.
    PluginListChanged,
    /// A turn or a compaction changed the session's usage or the size of its context.
    UsageChanged {
        session_id: String,
        context: usage::ContextFigures,
    },
}
