//! The engine: the store and the services over it, shared by every connection, and the coordinator that gives
//! each session at most one drain at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::catalogue::{EventBody, EventKind};
use parking_lot::Mutex;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, Paths};
use crate::provider::auth::AuthStore;
use crate::provider::registry::Registry;
use crate::session::approval::Resolution;
use crate::session::runner::{self, Mode};
use crate::session::{Delta, Notice, Sessions};
use crate::store::{self, Store};
use crate::tool;

pub struct Engine {
    pub store: Arc<Store>,
    pub sessions: Sessions,
    pub providers: Registry,
    pub tools: tool::Registry,
    pub paths: Paths,
    pub settings: Settings,
    /// Streamed fragments for subscribers that asked for them.
    pub deltas: broadcast::Sender<Arc<Delta>>,
    pub notices: broadcast::Sender<Notice>,
    drains: Mutex<HashMap<String, Drain>>,
    /// Tool calls in this process waiting for an approval, by approval id.
    waiters: Mutex<HashMap<String, oneshot::Sender<Resolution>>>,
}

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            subscriber_stall: Duration::from_secs(10),
            poll_other_writers: Duration::from_millis(100),
            retry_base: Duration::from_secs(1),
            max_retries: 4,
            max_tool_calls_per_turn: 32,
        }
    }
}

/// Removes a drain's entry when its task ends abnormally (a panic); the normal exit removes it under the lock.
struct DrainGuard {
    engine: Arc<Engine>,
    session_id: String,
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.engine.drains.lock().remove(&self.session_id);
        }
    }
}

/// The one drain of a session: its interrupt switch and the run requested while it was busy.
struct Drain {
    cancel: CancellationToken,
    /// What the drain is doing now: an explicit run that another explicit run can join, or a wake.
    mode: Mode,
    rerun: Option<Mode>,
}

impl Engine {
    pub fn open(paths: Paths, settings: Settings) -> Result<Arc<Self>, store::Error> {
        let store = Arc::new(Store::open(&paths.data_dir.join("keel.db"))?);
        let (deltas, _) = broadcast::channel(1024);
        let (notices, _) = broadcast::channel(256);
        Ok(Arc::new(Self {
            sessions: Sessions::new(Arc::clone(&store)),
            providers: Registry::new(AuthStore::new(&paths.data_dir)),
            tools: tool::Registry::builtin(),
            store,
            paths,
            settings,
            deltas,
            notices,
            drains: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
        }))
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

    /// Makes sure the session's drain runs. Returns false when one was already running (the call joined it).
    pub fn wake(self: &Arc<Self>, session_id: &str, mode: Mode) -> bool {
        let cancel = {
            let mut drains = self.drains.lock();
            if let Some(drain) = drains.get_mut(session_id) {
                // An explicit run joins a running one, unless that one is being interrupted.
                if mode == Mode::Run && drain.mode == Mode::Run && !drain.cancel.is_cancelled() {
                    return false;
                }
                drain.rerun = Some(match (drain.rerun, mode) {
                    (Some(Mode::Run), _) | (_, Mode::Run) => Mode::Run,
                    _ => Mode::Wake,
                });
                return false;
            }
            let cancel = CancellationToken::new();
            drains.insert(session_id.to_owned(), Drain { cancel: cancel.clone(), mode, rerun: None });
            cancel
        };
        let engine = Arc::clone(self);
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            // If the drain panics, its entry must still go, or the session could never run again.
            let _guard = DrainGuard { engine: Arc::clone(&engine), session_id: session_id.clone() };
            let mut mode = mode;
            let mut cancel = cancel;
            loop {
                if let Err(e) = runner::drain(&engine, &session_id, mode, &cancel).await {
                    tracing::error!(session = %session_id, "the session's run failed: {e}");
                }
                let mut drains = engine.drains.lock();
                let Some(drain) = drains.get_mut(&session_id) else { return };
                match drain.rerun.take() {
                    Some(next) => {
                        mode = next;
                        drain.mode = next;
                        if cancel.is_cancelled() {
                            cancel = CancellationToken::new();
                            drain.cancel = cancel.clone();
                        }
                    }
                    None => {
                        drains.remove(&session_id);
                        return;
                    }
                }
            }
        });
        true
    }

    /// Interrupts the session: its drain stops (stream aborted, tools killed, approvals cancelled) and its queue
    /// pauses until the next prompt or resume. Without a drain in this process (after a restart), an activity left
    /// open is closed here and its pending approvals are cancelled. False when there was nothing to interrupt.
    pub fn interrupt(self: &Arc<Self>, session_id: &str) -> bool {
        let cancel = {
            let drains = self.drains.lock();
            drains.get(session_id).filter(|d| !d.cancel.is_cancelled()).map(|d| d.cancel.clone())
        };
        // Paused now, in log order: input admitted after this call restarts the queue, whenever the activity closes.
        let pause = || store::NewEvent::new(EventBody::QueuePaused(keel_protocol::turn::QueueData {}));
        if let Some(cancel) = cancel {
            if let Ok(event) = pause() {
                let _ = self.append_events(session_id, vec![event]);
            }
            cancel.cancel();
            return true;
        }
        match self.close_orphaned_activity(session_id) {
            Ok(closed) => closed,
            Err(e) => {
                tracing::error!(session = %session_id, "interrupting failed: {e}");
                false
            }
        }
    }

    fn close_orphaned_activity(self: &Arc<Self>, session_id: &str) -> Result<bool, crate::session::Error> {
        use keel_protocol::turn::{ActivityClosedData, CloseReason, QueueData, StatusData, ToolFailedData};
        let Some(session) = self.store.session(session_id)? else { return Ok(false) };
        let Some(activity_id) = session.active_activity else { return Ok(false) };
        for approval in self.store.query(|c| store::approvals::pending(c, session_id))? {
            let _ = crate::session::approval::resolve(
                self,
                &approval.approval_id,
                keel_protocol::approval::Resolved::Cancelled,
                None,
                "interrupt",
            );
        }
        let mut events = Vec::new();
        for (call_id, _) in self.store.query(|c| store::transcript::unsettled_tool_calls(c, session_id))? {
            events.push(store::NewEvent::new(EventBody::ToolFailed(ToolFailedData {
                call_id,
                error: "interrupted".into(),
            }))?);
        }
        events.push(store::NewEvent::new(EventBody::ActivityClosed(ActivityClosedData {
            activity_id,
            reason: CloseReason::Interrupted,
            error: None,
        }))?);
        events.push(store::NewEvent::new(EventBody::SessionStatus(StatusData {
            status: keel_protocol::session::SessionStatus::Idle,
        }))?);
        events.push(store::NewEvent::new(EventBody::QueuePaused(QueueData {}))?);
        self.append_events(session_id, events)?;
        Ok(true)
    }

    pub(crate) fn waiters(&self) -> &Mutex<HashMap<String, oneshot::Sender<Resolution>>> {
        &self.waiters
    }

    /// Appends a session's events and tells status listeners; every other client learns from the event log.
    pub fn append_events(&self, session_id: &str, events: Vec<store::NewEvent>) -> Result<(), crate::session::Error> {
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
