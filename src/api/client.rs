//! What `api` remembers of one connection: the capabilities its client declared at `initialize`, and the sessions
//! its subscriptions follow. Kept in the connection's state slot (`Peer::state`); `rpc` holds it without knowing it.

use std::collections::HashMap;
use std::sync::Arc;

use keel_protocol::initialize::ClientCapabilities;
use parking_lot::Mutex;

use crate::rpc::Peer;

#[derive(Default)]
pub struct Client {
    capabilities: Mutex<ClientCapabilities>,
    /// Sessions this connection follows, by subscription id.
    attached: Mutex<HashMap<String, String>>,
}

impl Client {
    pub fn of(peer: &Peer) -> Arc<Self> {
        peer.state::<Self>()
    }

    pub fn declare(&self, capabilities: ClientCapabilities) {
        *self.capabilities.lock() = capabilities;
    }

    pub fn capabilities(&self) -> ClientCapabilities {
        self.capabilities.lock().clone()
    }

    /// Records that a subscription of this connection follows `session_id`.
    pub fn attach(&self, subscription_id: &str, session_id: &str) {
        self.attached.lock().insert(subscription_id.to_owned(), session_id.to_owned());
    }

    pub fn detach(&self, subscription_id: &str) {
        self.attached.lock().remove(subscription_id);
    }

    pub fn attachments(&self) -> usize {
        self.attached.lock().len()
    }

    pub fn is_attached(&self, session_id: &str) -> bool {
        self.attached.lock().values().any(|s| s == session_id)
    }
}
