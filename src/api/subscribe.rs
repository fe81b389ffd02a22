//! Cursor subscriptions: `session/subscribe`, `session/unsubscribe`, `session/events`.
//!
//! Each subscription is a task on its connection that owns a cursor. It replays from the store in pages, then
//! follows the session's shared feed; it reads at the pace its client reads, so a slow client costs database
//! reads, never writer time or memory. A client that accepts nothing for the stall period is ended as `lagged`.

use super::client::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keel_protocol::Empty;
use keel_protocol::Notification;
use keel_protocol::agent::SubagentStartedData;
use keel_protocol::catalogue::EventKind;
use keel_protocol::event::{
    Event as WireEvent, EventNotificationParams, EventsParams, EventsResult, SessionEvent, SessionSubscriptionEnded,
    SessionSynced, SubscribeParams, SubscribeResult, SubscriptionEndReason, SubscriptionEndedParams, SyncedParams,
    UnsubscribeParams,
};
use keel_protocol::turn::{DeltaParams, SessionDelta};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use super::ApiError;
use crate::engine::Engine;
use crate::rpc::{Call, PeerError, PeerRef};
use crate::session::Delta;
use crate::store::{Event, Feed};

/// Events read from the store per page during a replay.
const REPLAY_PAGE: usize = 512;
const DEFAULT_EVENTS_LIMIT: u32 = 512;
const MAX_EVENTS_LIMIT: u32 = 4096;
const MAX_WAIT_MS: u64 = 60_000;

static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

pub async fn subscribe(engine: Arc<Engine>, p: SubscribeParams, call: Call) -> Result<SubscribeResult, ApiError> {
    // The feed exists before the history is read, so nothing that commits from here on can be missed.
    let feed = engine.feed(&p.session_id)?;
    let head_seq = feed.head();
    let cursor = match p.after_seq {
        -1 => head_seq,
        n if n >= 0 => n.unsigned_abs(),
        _ => {
            return Err(ApiError::invalid("afterSeq", "must be -1 (from now) or a seq"));
        }
    };
    let limit = engine.settings().max_subscriptions_per_connection;
    let client = Client::of(&call.peer);
    if client.attachments() >= limit {
        return Err(ApiError::Overloaded(format!("this connection already has {limit} subscriptions")));
    }
    let subscription_id = format!("sub_{}_{}", call.peer.id(), NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed));
    let subscription =
        Subscription::new(&engine, &call.peer, subscription_id.clone(), feed, cursor, p.include_children);
    let peer = Arc::clone(&call.peer);
    let key = subscription_id.clone();
    client.attach(&subscription_id, &p.session_id);
    let session_id = p.session_id.clone();
    call.after_response(move || {
        peer.spawn_task(key, subscription.run());
        super::approval::replay_pending(&engine, &peer, &session_id);
    });
    Ok(SubscribeResult { subscription_id, head_seq })
}

pub async fn unsubscribe(_: Arc<Engine>, p: UnsubscribeParams, call: Call) -> Result<Empty, ApiError> {
    Client::of(&call.peer).detach(&p.subscription_id);
    if !call.peer.stop_task_tree(&p.subscription_id) {
        return Err(ApiError::invalid("subscriptionId", "no such subscription on this connection"));
    }
    Ok(Empty {})
}

pub async fn events(engine: Arc<Engine>, p: EventsParams, call: Call) -> Result<EventsResult, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_EVENTS_LIMIT).clamp(1, MAX_EVENTS_LIMIT) as usize;
    if i64::try_from(p.after_seq).is_err() {
        return Err(ApiError::invalid("afterSeq", "must be at most 2^63 - 1"));
    }
    let mut events = engine.events(&p.session_id, p.after_seq, limit)?;
    if let Some(wait) = p.wait_ms.filter(|_| events.is_empty()) {
        let feed = engine.feed(&p.session_id)?;
        let mut wake = feed.watch();
        call.release_order();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait.min(MAX_WAIT_MS));
        while feed.head() <= p.after_seq && !feed.is_deleted() {
            if tokio::time::timeout_at(deadline, wake.changed()).await.is_err() {
                break;
            }
        }
        events = engine.events(&p.session_id, p.after_seq, limit)?;
    }
    let head_seq = engine.head(&p.session_id)?.ok_or_else(|| ApiError::SessionNotFound(p.session_id.clone()))?;
    let has_more = events.last().is_some_and(|e| e.seq < head_seq);
    let events = events
        .iter()
        .map(|e| wire(e).try_map_data(|d| serde_json::from_str(d.get())))
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .map_err(|e| ApiError::Internal(format!("stored event is not JSON: {e}")))?;
    Ok(EventsResult { events, head_seq, has_more })
}

struct Subscription {
    /// Streamed fragments, for clients that asked for them at `initialize`.
    deltas: Option<broadcast::Receiver<Arc<Delta>>>,
    id: String,
    engine: Arc<Engine>,
    feed: Arc<Feed>,
    peer: PeerRef,
    stall: std::time::Duration,
    cursor: u64,
    include_children: bool,
    /// The subscriptions this one opened for children; they end with it.
    children: Vec<String>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Also when the task is aborted (`session/unsubscribe`, the connection closing).
        for child in &self.children {
            self.peer.stop_task(child);
            Client::of(&self.peer).detach(child);
        }
    }
}

enum Stop {
    Ended(SubscriptionEndReason),
    Closed,
}

impl Subscription {
    fn new(
        engine: &Arc<Engine>,
        peer: &PeerRef,
        id: String,
        feed: Arc<Feed>,
        cursor: u64,
        include_children: bool,
    ) -> Self {
        let deltas = Client::of(peer).capabilities().deltas.then(|| engine.deltas().subscribe());
        Subscription {
            deltas,
            id,
            engine: Arc::clone(engine),
            feed,
            peer: Arc::clone(peer),
            stall: engine.settings().subscriber_stall,
            cursor,
            include_children,
            children: Vec::new(),
        }
    }

    /// Opens the subscription of a child the parent's `subagent.started` names, from the child's first event.
    fn follow_child(&mut self, event: &Event) {
        let Ok(started) = serde_json::from_str::<SubagentStartedData>(event.data.get()) else { return };
        let Ok(feed) = self.engine.feed(&started.child_session_id) else { return };
        let id = format!("{}/{}", self.id, started.child_session_id);
        if self.children.contains(&id) {
            return;
        }
        let child = Subscription::new(&self.engine, &self.peer, id.clone(), feed, 0, true);
        Client::of(&self.peer).attach(&id, &started.child_session_id);
        self.peer.spawn_task(id.clone(), child.run());
        self.children.push(id);
    }

    async fn run(mut self) {
        let stop = self.deliver().await;
        if let Stop::Ended(reason) = stop {
            let ended = SubscriptionEndedParams { subscription_id: self.id.clone(), reason, last_seq: self.cursor };
            let _ = self.peer.notify(SessionSubscriptionEnded::NAME, &ended).await;
        }
        self.peer.forget_task(&self.id);
        Client::of(&self.peer).detach(&self.id);
    }

    async fn deliver(&mut self) -> Stop {
        let mut wake = self.feed.watch();
        let mut synced = false;
        loop {
            wake.borrow_and_update();
            loop {
                // Fragments streamed before an event committed go out before it.
                while let Some(delta) = self.deltas.as_mut().and_then(|rx| rx.try_recv().ok()) {
                    if synced && let Err(stop) = self.send_delta(&delta).await {
                        return stop;
                    }
                }
                let batch = match self.next_batch() {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::error!(subscription = %self.id, "replay failed: {e}");
                        return Stop::Closed;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                for event in batch {
                    if let Err(stop) = self.send(&event).await {
                        return stop;
                    }
                    self.cursor = event.seq;
                    if self.include_children && event.kind == EventKind::SubagentStarted {
                        self.follow_child(&event);
                    }
                    if event.kind == EventKind::SessionDeleted {
                        return Stop::Ended(SubscriptionEndReason::Deleted);
                    }
                }
            }
            if self.feed.is_deleted() {
                return Stop::Ended(SubscriptionEndReason::Deleted);
            }
            if !synced {
                synced = true;
                let params = SyncedParams { subscription_id: self.id.clone(), seq: self.cursor };
                if let Err(stop) = self.send_notification(SessionSynced::NAME, &params).await {
                    return stop;
                }
            }
            loop {
                let delta = tokio::select! {
                    biased;
                    delta = next_delta(&mut self.deltas) => delta,
                    changed = wake.changed() => match changed {
                        Ok(()) => break,
                        Err(_) => return Stop::Closed,
                    },
                };
                if let Err(stop) = self.send_delta(&delta).await {
                    return stop;
                }
            }
        }
    }

    async fn send_delta(&self, delta: &Delta) -> Result<(), Stop> {
        if delta.session_id != self.feed.session_id() {
            return Ok(());
        }
        let params = DeltaParams {
            session_id: delta.session_id.clone(),
            message_id: delta.message_id.clone(),
            part_id: delta.part_id.clone(),
            kind: delta.kind,
            delta: delta.text.clone(),
        };
        self.send_notification(SessionDelta::NAME, &params).await
    }

    /// The next events after the cursor: from the feed's memory when it reaches back that far, else a store page.
    fn next_batch(&self) -> Result<Vec<Arc<Event>>, crate::session::Error> {
        if let Some(recent) = self.feed.recent_after(self.cursor, REPLAY_PAGE) {
            return Ok(recent);
        }
        let page = self.engine.events(self.feed.session_id(), self.cursor, REPLAY_PAGE)?;
        Ok(page.into_iter().map(Arc::new).collect())
    }

    async fn send(&self, event: &Event) -> Result<(), Stop> {
        let params = EventNotificationParams { subscription_id: self.id.clone(), event: wire(event) };
        self.send_notification(SessionEvent::NAME, &params).await
    }

    async fn send_notification(&self, method: &str, params: &impl serde::Serialize) -> Result<(), Stop> {
        match self.peer.notify_within(method, params, self.stall).await {
            Ok(()) => Ok(()),
            Err(PeerError::Stalled(_)) => Err(Stop::Ended(SubscriptionEndReason::Lagged)),
            Err(_) => Err(Stop::Closed),
        }
    }
}

/// The next delta; pends forever without a receiver. Deltas are ephemeral: missed ones are skipped.
async fn next_delta(deltas: &mut Option<broadcast::Receiver<Arc<Delta>>>) -> Arc<Delta> {
    let Some(rx) = deltas else { return std::future::pending().await };
    loop {
        match rx.recv().await {
            Ok(delta) => return delta,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// A stored event in its wire shape, borrowing its data: nothing is parsed or copied.
pub fn wire(e: &Event) -> WireEvent<&RawValue> {
    e.wire()
}
