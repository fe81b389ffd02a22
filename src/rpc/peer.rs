//! The server's handle on one connection: the ordered outbound queue, server→client requests with their pending
//! table, and the connection's lifecycle state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::message;

/// Frames waiting for the writer. Bounded: a client that stops reading fills it, and then senders wait or give up.
pub const OUTBOUND_FRAMES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeerError {
    #[error("the connection is closed")]
    Closed,
    #[error("the client did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the client's outbound queue stayed full for {0:?}")]
    Stalled(Duration),
    #[error("the client answered with error {code}: {message}")]
    Remote { code: i64, message: String },
}

#[derive(Debug, Default, Clone)]
pub struct Lifecycle {
    pub initialized: bool,
    pub shut_down: bool,
    pub client_name: String,
}

/// How the client is told that a server→client request was withdrawn: LSP's `$/cancelRequest {id}` or ACP's
/// `$/cancel_request {requestId}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CancelNotice {
    #[default]
    Lsp,
    Acp,
}

pub struct Peer {
    id: u64,
    cancel_notice: CancelNotice,
    out: mpsc::Sender<Vec<u8>>,
    /// Bytes the client has accepted so far; a subscriber is cut only when this stops moving.
    progress: Arc<AtomicU64>,
    pending: Mutex<HashMap<String, oneshot::Sender<Result<Value, PeerError>>>>,
    /// Set (under `pending`'s lock) once the client is gone: later requests fail at once instead of waiting out
    /// their timeout.
    gone: AtomicBool,
    next_request: AtomicU64,
    lifecycle: Mutex<Lifecycle>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    /// The method table's per-connection state, by type.
    states: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Server→client requests that may be withdrawn, by the caller's key.
    withdrawable: Mutex<HashMap<String, CancellationToken>>,
}

impl Peer {
    #[cfg(test)]
    pub(super) fn new(id: u64, out: mpsc::Sender<Vec<u8>>) -> Self {
        Self::with_cancel_notice(id, out, CancelNotice::Lsp)
    }

    pub(super) fn with_cancel_notice(id: u64, out: mpsc::Sender<Vec<u8>>, cancel_notice: CancelNotice) -> Self {
        Self {
            id,
            cancel_notice,
            out,
            progress: Arc::default(),
            pending: Mutex::new(HashMap::new()),
            gone: AtomicBool::new(false),
            next_request: AtomicU64::new(1),
            lifecycle: Mutex::new(Lifecycle::default()),
            tasks: Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
            withdrawable: Mutex::new(HashMap::new()),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.lock().clone()
    }

    pub fn update_lifecycle<T>(&self, f: impl FnOnce(&mut Lifecycle) -> T) -> T {
        f(&mut self.lifecycle.lock())
    }

    pub(super) fn progress(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.progress)
    }

    pub fn is_closed(&self) -> bool {
        self.out.is_closed()
    }

    /// Queues a frame, waiting for room as long as the client reads.
    pub(super) async fn send_frame(&self, frame: Vec<u8>) -> Result<(), PeerError> {
        self.out.send(frame).await.map_err(|_| PeerError::Closed)
    }

    pub async fn notify(&self, method: &str, params: &impl Serialize) -> Result<(), PeerError> {
        self.send_frame(message::notification(method, params)).await
    }

    /// Like `notify`, but gives up when the client accepts no byte at all for `stall`: it has stopped reading.
    /// A full queue alone is no reason; a slow reader that keeps reading waits its turn.
    pub async fn notify_within(&self, method: &str, params: &impl Serialize, stall: Duration) -> Result<(), PeerError> {
        let mut frame = message::notification(method, params);
        let mut seen = self.progress.load(Ordering::Relaxed);
        loop {
            match self.out.send_timeout(frame, stall).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(PeerError::Closed),
                Err(mpsc::error::SendTimeoutError::Timeout(unsent)) => {
                    let now = self.progress.load(Ordering::Relaxed);
                    if now == seen {
                        return Err(PeerError::Stalled(stall));
                    }
                    seen = now;
                    frame = unsent;
                }
            }
        }
    }

    /// Sends a server→client request and waits for the answer. On timeout the client is told with
    /// `$/cancelRequest`. Ids are strings prefixed with `s` so they never collide with the client's own.
    pub async fn request(&self, method: &str, params: &impl Serialize, timeout: Duration) -> Result<Value, PeerError> {
        self.request_until(method, params, timeout, std::future::pending()).await
    }

    /// Like `request`, but `withdraw` (by `key`) cancels it: the client gets `$/cancelRequest`. `None` when a
    /// request with that key is already out.
    pub async fn request_withdrawable(
        &self,
        key: &str,
        method: &str,
        params: &impl Serialize,
        timeout: Duration,
    ) -> Option<Result<Value, PeerError>> {
        let token = CancellationToken::new();
        {
            let mut out = self.withdrawable.lock();
            if out.contains_key(key) {
                return None;
            }
            out.insert(key.to_owned(), token.clone());
        }
        let result = self.request_until(method, params, timeout, token.cancelled()).await;
        self.withdrawable.lock().remove(key);
        Some(result)
    }

    /// The one request path: answered, timed out, or stopped by `stop`; the last two tell the client.
    pub async fn request_until(
        &self,
        method: &str,
        params: &impl Serialize,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<Value, PeerError> {
        let id = format!("s{}", self.next_request.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if self.gone.load(Ordering::Relaxed) {
                return Err(PeerError::Closed);
            }
            pending.insert(id.clone(), tx);
        }
        let _guard = PendingGuard { peer: self, id: &id };
        self.send_frame(message::request(&id, method, params)).await?;
        let result = tokio::select! {
            answer = tokio::time::timeout(timeout, rx) => match answer {
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => return Err(PeerError::Closed),
                Err(_) => Err(PeerError::Timeout(timeout)),
            },
            () = stop => Err(PeerError::Remote { code: -32800, message: "withdrawn".into() }),
        };
        let _ = match self.cancel_notice {
            CancelNotice::Lsp => self.notify("$/cancelRequest", &serde_json::json!({ "id": id })).await,
            CancelNotice::Acp => self.notify("$/cancel_request", &serde_json::json!({ "requestId": id })).await,
        };
        result
    }

    /// Withdraws the request sent with `request_withdrawable` under `key`, if it is still out.
    pub fn withdraw(&self, key: &str) {
        if let Some(token) = self.withdrawable.lock().remove(key) {
            token.cancel();
        }
    }

    /// The method table's own state for this connection (what the client declared, what it follows), created on
    /// first use: the connection layer keeps it without knowing what it is.
    pub fn state<T: Any + Default + Send + Sync>(&self) -> Arc<T> {
        let mut states = self.states.lock();
        let state = states.entry(TypeId::of::<T>()).or_insert_with(|| Arc::new(T::default()));
        match Arc::clone(state).downcast::<T>() {
            Ok(state) => state,
            // The map is keyed by the type, so the entry is always a `T`; a fresh one keeps this total anyway.
            Err(_) => Arc::new(T::default()),
        }
    }

    /// Routes a client's response to the request waiting for it; false when nobody waits for that id.
    pub(super) fn complete(&self, id: &str, result: Result<Value, PeerError>) -> bool {
        let waiter = self.pending.lock().remove(id);
        match waiter {
            Some(waiter) => waiter.send(result).is_ok(),
            None => false,
        }
    }

    /// Runs a task that lives as long as the connection, or until `stop_task` with the same key.
    pub fn spawn_task(&self, key: String, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        if let Some(previous) = self.tasks.lock().insert(key, handle) {
            previous.abort();
        }
    }

    pub fn stop_task(&self, key: &str) -> bool {
        let handle = self.tasks.lock().remove(key);
        handle.map(|h| h.abort()).is_some()
    }

    /// Stops the task and those keyed under it (`key/…`); whether `key` itself was running.
    pub fn stop_task_tree(&self, key: &str) -> bool {
        let prefix = format!("{key}/");
        let mut tasks = self.tasks.lock();
        let below: Vec<String> = tasks.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        for k in below {
            if let Some(h) = tasks.remove(&k) {
                h.abort();
            }
        }
        tasks.remove(key).map(|h| h.abort()).is_some()
    }

    /// Forgets a task that ended by itself.
    pub fn forget_task(&self, key: &str) {
        self.tasks.lock().remove(key);
    }

    /// The client is gone: every server→client request still waiting fails with `Closed`.
    pub(super) fn fail_pending(&self) {
        let pending: Vec<_> = {
            let mut pending = self.pending.lock();
            self.gone.store(true, Ordering::Relaxed);
            pending.drain().collect()
        };
        for (_, waiter) in pending {
            let _ = waiter.send(Err(PeerError::Closed));
        }
    }

    /// The connection is over: its tasks (subscriptions) stop.
    pub(super) fn stop_tasks(&self) {
        let tasks: Vec<_> = self.tasks.lock().drain().collect();
        for (_, task) in tasks {
            task.abort();
        }
    }
}

struct PendingGuard<'a> {
    peer: &'a Peer,
    id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.peer.pending.lock().remove(self.id);
    }
}

/// A connection's peer, shared by its tasks.
pub type PeerRef = Arc<Peer>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that takes one frame per `pace`, counting what it accepts the way the connection's writer does.
    fn slow_reader(mut rx: mpsc::Receiver<Vec<u8>>, progress: Arc<AtomicU64>, pace: Duration) {
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                tokio::time::sleep(pace).await;
                progress.fetch_add(frame.len() as u64, Ordering::Relaxed);
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_reading_is_never_stalled_however_long_the_line() {
        let (tx, rx) = mpsc::channel(1);
        let peer = Arc::new(Peer::new(1, tx));
        slow_reader(rx, peer.progress(), Duration::from_millis(300));
        // Ten senders queue behind one slot: the last waits 3 s, six times the stall, yet bytes keep moving.
        let senders: Vec<_> = (0..10)
            .map(|i| {
                let peer = Arc::clone(&peer);
                tokio::spawn(async move { peer.notify_within("n", &i, Duration::from_millis(500)).await })
            })
            .collect();
        for sender in senders {
            assert_eq!(sender.await.unwrap(), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_stalled_after_the_stall_time() {
        let (tx, _rx) = mpsc::channel(1);
        let peer = Peer::new(1, tx);
        assert_eq!(peer.notify_within("n", &0, Duration::from_millis(500)).await, Ok(()));
        assert_eq!(
            peer.notify_within("n", &1, Duration::from_millis(500)).await,
            Err(PeerError::Stalled(Duration::from_millis(500)))
        );
    }
}
