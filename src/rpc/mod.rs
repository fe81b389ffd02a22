//! The only code that knows JSON-RPC framing and connections.
//! jsonrpsee's `Methods` is the method table; reading, writing, lifecycle, cancellation and server→client requests
//! are ours.

mod auth;
mod conn;
pub mod framing;
mod listen;
mod memory;
pub(crate) mod message;
mod ordering;
mod peer;
mod websocket;

pub use auth::tokens_match;
pub use conn::{Call, DEFAULT_MAX_CONNECTIONS, Ended, Server};
pub use listen::{ListenError, stdio, tcp, unix};
pub use ordering::RequestOrder;
pub use peer::{CancelNotice, Lifecycle, Peer, PeerError, PeerRef};
pub use websocket::{OriginPolicy, websocket};
