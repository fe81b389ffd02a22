//! The engine: the store and the services over it, shared by every connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::session::Sessions;
use crate::store::{self, Store};

pub struct Engine {
    pub store: Arc<Store>,
    pub sessions: Sessions,
    pub settings: Settings,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where state lives: the database, auth, tool output.
    pub data_dir: PathBuf,
    /// A subscriber whose connection accepts nothing for this long is ended as `lagged`.
    pub subscriber_stall: Duration,
    /// How often to look for events that other engine processes committed.
    pub poll_other_writers: Duration,
}

impl Engine {
    pub fn open(settings: Settings) -> Result<Arc<Self>, store::Error> {
        let store = Arc::new(Store::open(&settings.data_dir.join("keel.db"))?);
        let engine = Arc::new(Self { sessions: Sessions::new(Arc::clone(&store)), store, settings });
        Ok(engine)
    }

    /// Starts the background work of a serving engine. Needs a running tokio runtime.
    pub fn start(self: &Arc<Self>) {
        let store = Arc::clone(&self.store);
        let every = self.settings.poll_other_writers;
        tokio::spawn(async move {
            if let Err(e) = store.watch_other_writers(every).await {
                tracing::error!("watching for other engine processes stopped: {e}");
            }
        });
    }
}
