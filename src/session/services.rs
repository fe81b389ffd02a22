//! What the runner and the approval gate work with: the store, the providers and tools, the paths and settings, the
//! broadcast channels, and the approval waiters. Deliberately not the coordinator: the runner cannot start or stop
//! drains, so it cannot reach back into the code that runs it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::catalogue::{EventBody, EventKind};
use parking_lot::Mutex;
use tokio::sync::{broadcast, oneshot};

use super::approval::Resolution;
use super::{Delta, Error, Notice};
use crate::config::{self, Config, Paths};
use crate::provider::registry::Registry;
use crate::store::{NewEvent, Store};
use crate::tool;

#[derive(Debug, Clone)]
pub struct Settings {
    /// A subscriber whose connection accepts nothing for this long is ended as `lagged`.
    pub subscriber_stall: Duration,
    /// How often to look for events that other engine processes committed.
    pub poll_other_writers: Duration,
    /// The first retry delay of a failed provider request, doubled per attempt.
    pub retry_base: Duration,
    pub max_retries: u32,
    /// Tool calls executed per provider turn; calls over the cap get an error result.
    pub max_tool_calls_per_turn: usize,
    /// Subscriptions one connection may hold at once; more are refused with -32001.
    pub max_subscriptions_per_connection: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            subscriber_stall: Duration::from_secs(10),
            poll_other_writers: Duration::from_millis(100),
            retry_base: Duration::from_secs(1),
            max_retries: 4,
            max_tool_calls_per_turn: 32,
            max_subscriptions_per_connection: 256,
        }
    }
}

pub struct Services {
    pub store: Arc<Store>,
    pub providers: Registry,
    pub tools: tool::Registry,
    pub paths: Paths,
    pub settings: Settings,
    /// Streamed fragments for subscribers that asked for them.
    pub deltas: broadcast::Sender<Arc<Delta>>,
    pub notices: broadcast::Sender<Notice>,
    /// Tool calls in this process waiting for an approval, by approval id.
    waiters: Mutex<HashMap<String, oneshot::Sender<Resolution>>>,
}

impl Services {
    pub fn new(store: Arc<Store>, providers: Registry, paths: Paths, settings: Settings) -> Self {
        let (deltas, _) = broadcast::channel(1024);
        let (notices, _) = broadcast::channel(256);
        Self {
            store,
            providers,
            tools: tool::Registry::builtin(),
            paths,
            settings,
            deltas,
            notices,
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// The effective config for a session in `cwd`. A broken config file is logged and the last layers that
    /// parsed are not used: the engine falls back to defaults rather than refusing to run.
    pub fn config(&self, cwd: Option<&str>) -> Config {
        match config::load(&self.paths, cwd.map(std::path::Path::new)) {
            Ok(loaded) => loaded.config,
            Err(e) => {
                tracing::error!("{e}");
                Config::default()
            }
        }
    }

    pub(crate) fn waiters(&self) -> &Mutex<HashMap<String, oneshot::Sender<Resolution>>> {
        &self.waiters
    }

    /// Appends a session's events and tells status listeners; every other client learns from the event log.
    pub fn append_events(&self, session_id: &str, events: Vec<NewEvent>) -> Result<(), Error> {
        let appended = self.store.append(session_id, events)?;
        for e in appended.iter().filter(|e| e.kind == EventKind::SessionStatus) {
            if let EventBody::SessionStatus(data) = e.body()? {
                let _ =
                    self.notices.send(Notice::StatusChanged { session_id: session_id.to_owned(), status: data.status });
            }
        }
        Ok(())
    }

    /// The directory of a session's saved tool outputs.
    pub fn output_dir(&self, session_id: &str) -> std::path::PathBuf {
        self.paths.data_dir.join("tool-output").join(session_id)
    }
}
