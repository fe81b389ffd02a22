//! Following a session's log from a cursor: pages read from the store, then a wait on the session's feed for the
//! next commit. The one implementation behind `keel run`, ACP prompts and `keel sessions events --follow`.

use std::sync::Arc;

use tokio::sync::watch;

use super::Error;
use crate::store::{Event, Feed, Store};

pub struct Follower {
    store: Arc<Store>,
    session_id: String,
    cursor: u64,
    /// Held so that the session's feed (and its wake) lives as long as the follower.
    _feed: Arc<Feed>,
    wake: watch::Receiver<u64>,
}

impl Follower {
    /// Opens the feed before anything is read, so that nothing committed after this call can be missed.
    /// `after`: the exclusive cursor; `None` starts at the head.
    pub(crate) fn open(store: Arc<Store>, session_id: &str, after: Option<u64>) -> Result<Self, Error> {
        let feed = store.feed(session_id)?;
        let wake = feed.watch();
        let cursor = after.unwrap_or_else(|| feed.head());
        Ok(Self { store, session_id: session_id.to_owned(), cursor, _feed: feed, wake })
    }

    /// The seq of the last event handed out.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next page after the cursor, empty when caught up; never waits.
    pub fn page(&mut self, limit: usize) -> Result<Vec<Event>, Error> {
        // Marks the current head seen before reading, so a commit racing this read still wakes `changed`.
        self.wake.borrow_and_update();
        let events = self.store.events_after(&self.session_id, self.cursor, limit)?;
        if let Some(last) = events.last() {
            self.cursor = last.seq;
        }
        Ok(events)
    }

    /// Waits for the next commit; false when the feed closed.
    pub async fn changed(&mut self) -> bool {
        self.wake.changed().await.is_ok()
    }

    /// The next non-empty page; with `live`, waits for one. `None` when caught up (not live) or the feed closed.
    pub async fn next_page(&mut self, limit: usize, live: bool) -> Result<Option<Vec<Event>>, Error> {
        loop {
            let events = self.page(limit)?;
            if !events.is_empty() {
                return Ok(Some(events));
            }
            if !live || !self.changed().await {
                return Ok(None);
            }
        }
    }
}
