//! Wakes for subscribers: one shared feed per session that someone is watching.
//!
//! A feed holds the session's head seq in a `watch` channel (one wake for all of its subscribers) and a ring of the
//! most recent events, so that live subscribers are served from memory. Anything older, or anything another process
//! committed, is read from the database by the subscriber at its own pace: a slow reader never holds up a writer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use super::Event;

/// How many recent events a feed keeps in memory.
const RING: usize = 1024;

pub struct Feed {
    session_id: String,
    head: watch::Sender<u64>,
    recent: Mutex<VecDeque<Arc<Event>>>,
    deleted: AtomicBool,
    /// Owned by `Feeds` so that dropping the last subscriber removes the entry.
    feeds: Weak<Mutex<HashMap<String, Weak<Feed>>>>,
}

impl Feed {
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// A receiver that wakes whenever the head moves; it has already seen the current head.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// The events after `cursor` that are still in memory, if the ring reaches back that far.
    pub fn recent_after(&self, cursor: u64, limit: usize) -> Option<Vec<Arc<Event>>> {
        if cursor >= self.head() {
            return Some(Vec::new());
        }
        let recent = self.recent.lock();
        let first = recent.front()?.seq;
        let last = recent.back()?.seq;
        if first > cursor + 1 || last <= cursor {
            return None;
        }
        let skip = usize::try_from(cursor + 1 - first).ok()?;
        Some(recent.iter().skip(skip).take(limit).cloned().collect())
    }

    pub(super) fn publish(&self, events: &[Arc<Event>]) {
        let Some(last) = events.last() else { return };
        // On PostgreSQL two commits to one session can publish out of order; the later one has the head already.
        if last.seq <= self.head() {
            return;
        }
        {
            let mut recent = self.recent.lock();
            // The ring must stay contiguous; events another process wrote in between are not in it.
            if recent.back().is_some_and(|e| e.seq + 1 != events[0].seq) {
                recent.clear();
            }
            for event in events {
                if recent.len() == RING {
                    recent.pop_front();
                }
                recent.push_back(Arc::clone(event));
            }
        }
        if last.kind == keel_protocol::catalogue::EventKind::SessionDeleted {
            self.deleted.store(true, Ordering::Release);
        }
        self.head.send_replace(last.seq);
    }

    /// Moves the head without events in memory (another process appended them).
    pub(super) fn advance(&self, head: u64) {
        self.head.send_if_modified(|current| {
            let moved = head > *current;
            if moved {
                *current = head;
            }
            moved
        });
    }

    /// True once the session is known to be gone (deleted by any process).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Wakes subscribers without new events: the session was deleted, possibly by another process.
    pub(super) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        self.head.send_modify(|_| {});
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(feeds) = self.feeds.upgrade() {
            let mut feeds = feeds.lock();
            if feeds.get(&self.session_id).is_some_and(|w| w.strong_count() == 0) {
                feeds.remove(&self.session_id);
            }
        }
    }
}

pub struct Feeds {
    map: Arc<Mutex<HashMap<String, Weak<Feed>>>>,
    /// Every event this engine commits, for observers of all sessions (plugins' `event` hook); sent only while
    /// someone listens.
    all: broadcast::Sender<Arc<Event>>,
}

impl Default for Feeds {
    fn default() -> Self {
        Self { map: Arc::default(), all: broadcast::channel(RING).0 }
    }
}

impl Feeds {
    /// The session's feed, created on first use; it lives as long as a subscriber holds it.
    pub fn open(&self, session_id: &str, head: u64) -> Arc<Feed> {
        let mut map = self.map.lock();
        if let Some(feed) = map.get(session_id).and_then(Weak::upgrade) {
            return feed;
        }
        let feed = Arc::new(Feed {
            session_id: session_id.to_owned(),
            head: watch::Sender::new(head),
            recent: Mutex::new(VecDeque::new()),
            deleted: AtomicBool::new(false),
            feeds: Arc::downgrade(&self.map),
        });
        map.insert(session_id.to_owned(), Arc::downgrade(&feed));
        feed
    }

    pub(super) fn get(&self, session_id: &str) -> Option<Arc<Feed>> {
        self.map.lock().get(session_id).and_then(Weak::upgrade)
    }

    pub(super) fn publish(&self, session_id: &str, events: &[Arc<Event>]) {
        if let Some(feed) = self.get(session_id) {
            feed.publish(events);
        }
        if self.all.receiver_count() > 0 {
            for event in events {
                let _ = self.all.send(Arc::clone(event));
            }
        }
    }

    pub(super) fn committed(&self) -> broadcast::Receiver<Arc<Event>> {
        self.all.subscribe()
    }

    pub(super) fn live(&self) -> Vec<Arc<Feed>> {
        self.map.lock().values().filter_map(Weak::upgrade).collect()
    }
}
