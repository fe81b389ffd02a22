//! What the runner and the approval gate work with: the store, the providers and tools, the paths and settings, the
//! broadcast channels, and the approval waiters. Deliberately not the coordinator: the runner cannot start or stop
//! drains, so it cannot reach back into the code that runs it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::catalogue::{EventBody, EventKind};
use parking_lot::Mutex;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use super::approval::Resolution;
use super::{Delta, Error, Notice};
use crate::config::{self, Config, Paths};
use crate::provider::registry::Registry;
use crate::store::{Error as StoreError, Fence, NewEvent, Store};
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
    /// How long a session's execution lease lasts unless renewed; another engine takes over a session whose
    /// owner has not renewed it for this long.
    pub lease_ttl: Duration,
    /// How often a running drain renews its lease, and how often an engine looks for sessions nobody runs.
    pub lease_renew: Duration,
    /// How long a shutdown waits for running turns to reach a safe point before it cuts them.
    pub shutdown_grace: Duration,
    /// Whether this engine takes over sessions that nobody runs (false for `keel run`, which runs its own).
    pub discover: bool,
    /// Whether providers from config are asked for their models in the background (false for `keel run`: one
    /// prompt is not worth a model listing request every time it runs).
    pub list_models: bool,
    /// Watch config files and the credential store (off for `keel run`: a one-shot run reads config at each step
    /// anyway, and closing an inotify watch costs several milliseconds at exit).
    pub watch_config: bool,
    /// Whether a `shutdown` request suspends the engine's running activities before it is answered (an engine
    /// serving one client on stdio, whose `shutdown` announces the end of the process).
    pub suspend_on_shutdown_request: bool,
    /// The store's location (`Store::at`); `None`: `keel.db` in the data directory.
    pub store: Option<String>,
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
            lease_ttl: Duration::from_secs(30),
            lease_renew: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            discover: true,
            list_models: true,
            watch_config: true,
            suspend_on_shutdown_request: false,
            store: None,
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
    /// This engine process as a lease owner.
    pub instance: Arc<str>,
    /// The leases this process's drains hold, by session: every agent event they append carries its fence.
    held: Mutex<HashMap<String, Held>>,
    /// Cancelled when the engine begins to shut down: drains suspend at their next safe point, none start.
    pub shutdown: CancellationToken,
    /// Where the engine installs what runs `task` calls.
    pub delegate: tool::task::DelegateSlot,
    /// Where the engine installs what runs background jobs.
    pub background: tool::shell::BackgroundSlot,
    /// Plugins: their hooks run from here, their tools are a source of `tools`.
    pub plugins: Arc<crate::plugin::Host>,
    /// The last config that loaded, by directory (`None`: the global layers only).
    last_good: Mutex<HashMap<Option<String>, Config>>,
}

/// A lease held by a drain of this process.
struct Held {
    fence: Fence,
    /// The drain's interrupt switch, tripped when the lease turns out to be lost.
    cancel: CancellationToken,
    /// Events this process appended under the fence, so that the coordinator can tell whether anyone else wrote.
    appended: u64,
}

impl Services {
    pub fn new(store: Arc<Store>, providers: Registry, paths: Paths, settings: Settings) -> Self {
        let (deltas, _) = broadcast::channel(1024);
        let (notices, _) = broadcast::channel(256);
        let delegate = tool::task::DelegateSlot::default();
        let background = tool::shell::BackgroundSlot::default();
        let plugins = Arc::new(crate::plugin::Host::new(notices.clone()));
        let mut tools = tool::Registry::with_agents(&paths, Arc::clone(&delegate), Arc::clone(&background));
        tools.add_source(Arc::clone(&plugins) as Arc<dyn tool::ToolSource>);
        Self {
            store,
            providers,
            tools,
            plugins,
            delegate,
            background,
            paths,
            settings,
            deltas,
            notices,
            waiters: Mutex::new(HashMap::new()),
            instance: format!("eng_{}", uuid::Uuid::now_v7().simple()).into(),
            held: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            last_good: Mutex::new(HashMap::new()),
        }
    }

    /// The effective config for a session in `cwd`, read now. A broken config file is logged and the last config
    /// that loaded for `cwd` stays in effect (defaults when none ever did), so a half-made edit never stops a
    /// running session.
    pub fn config(&self, cwd: Option<&str>) -> Config {
        let mut config = match config::load(&self.paths, cwd.map(std::path::Path::new)) {
            Ok(loaded) => {
                self.remember_config(cwd, &loaded.config);
                loaded.config
            }
            Err(e) => {
                tracing::error!("{e}");
                self.last_good.lock().get(&cwd.map(str::to_owned)).cloned().unwrap_or_default()
            }
        };
        crate::agent::complete(&mut config, &self.paths, cwd.map(std::path::Path::new));
        config
    }

    /// Records `config` as the last that loaded for `cwd`.
    pub fn remember_config(&self, cwd: Option<&str>, config: &Config) {
        let mut last_good = self.last_good.lock();
        let key = cwd.map(str::to_owned);
        if last_good.get(&key) != Some(config) {
            last_good.insert(key, config.clone());
        }
    }

    pub(crate) fn waiters(&self) -> &Mutex<HashMap<String, oneshot::Sender<Resolution>>> {
        &self.waiters
    }

    /// Makes the drain of `fence`'s session append under it; `cancel` is tripped if the lease is found lost.
    pub(crate) fn hold(&self, fence: Fence, cancel: CancellationToken) {
        self.held.lock().insert(fence.session_id.clone(), Held { fence, cancel, appended: 0 });
    }

    pub(crate) fn unhold(&self, session_id: &str) {
        self.held.lock().remove(session_id);
    }

    /// Points the held lease's lost-lease switch at a new drain pass.
    pub(crate) fn rearm(&self, session_id: &str, cancel: CancellationToken) {
        if let Some(held) = self.held.lock().get_mut(session_id) {
            held.cancel = cancel;
        }
    }

    /// How many events this process appended under the session's lease so far.
    pub(crate) fn appended_under_lease(&self, session_id: &str) -> u64 {
        self.held.lock().get(session_id).map_or(0, |h| h.appended)
    }

    /// Appends a session's agent events and tells status listeners; every other client learns from the event log.
    /// Under a held lease the append is fenced: once another engine has taken the session over it is refused
    /// (`LeaseLost`) and the drain is stopped, so a stale owner never writes after the takeover.
    pub fn append_events(&self, session_id: &str, events: Vec<NewEvent>) -> Result<(), Error> {
        self.append_decided(session_id, |_| Ok(events))
    }

    /// `append_events` with the events chosen inside the append's transaction (see `Store::append_with`).
    pub fn append_decided(
        &self,
        session_id: &str,
        decide: impl FnOnce(&dyn crate::store::db::Db) -> crate::store::Result<Vec<NewEvent>>,
    ) -> Result<(), Error> {
        let fence = self.held.lock().get(session_id).map(|h| h.fence.clone());
        let appended = match &fence {
            Some(fence) => match self.store.append_fenced_with(fence, decide) {
                Ok(appended) => {
                    if let Some(held) = self.held.lock().get_mut(session_id) {
                        held.appended += appended.len() as u64;
                    }
                    appended
                }
                Err(e) => {
                    if let StoreError::LeaseLost(_) = e {
                        tracing::warn!(session = %session_id, "the session was taken over by another engine");
                        if let Some(held) = self.held.lock().get(session_id) {
                            held.cancel.cancel();
                        }
                    }
                    return Err(e.into());
                }
            },
            None => self.store.append_with(session_id, |tx| Ok((decide(tx)?, ())))?.0,
        };
        for e in appended.iter().filter(|e| e.kind == EventKind::SessionStatus) {
            if let EventBody::SessionStatus(data) = e.body()? {
                let _ =
                    self.notices.send(Notice::StatusChanged { session_id: session_id.to_owned(), status: data.status });
            }
        }
        Ok(())
    }

    /// Tells every client how full the session's context is now; its totals are read at the edge.
    pub(crate) fn report_usage(
        &self,
        session_id: &str,
        spec: &crate::provider::catalog::ModelSpec,
        settings: &crate::config::CompactionSettings,
    ) -> Result<(), Error> {
        let context = super::usage::ContextFigures::measure(&self.store, session_id, Some(spec), settings)?;
        let _ = self.notices.send(Notice::UsageChanged { session_id: session_id.to_owned(), context });
        Ok(())
    }

    /// The directory of a session's saved tool outputs.
    pub fn output_dir(&self, session_id: &str) -> std::path::PathBuf {
        self.paths.data_dir.join("tool-output").join(session_id)
    }
}
