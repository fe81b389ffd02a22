//! The coordinator: at most one drain per session. A wake while the drain runs asks for one more pass, an explicit
//! run joins a running explicit run, and an interrupt cancels the drain. Approvals answered while no call waits for
//! them wake the session through here too.

use std::collections::HashMap;
use std::sync::Arc;

use keel_protocol::approval::Resolved;
use keel_protocol::catalogue::EventBody;
use keel_protocol::session::SessionStatus;
use keel_protocol::turn::{ActivityClosedData, CloseReason, QueueData, StatusData, ToolFailedData};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::approval::{self, ApprovalError};
use super::runner::{self, Mode};
use super::{Error, Services, event};
use crate::store::{approvals, transcript};

pub struct Coordinator {
    services: Arc<Services>,
    drains: Mutex<HashMap<String, Drain>>,
}

/// The one drain of a session: its interrupt switch and the run requested while it was busy.
struct Drain {
    cancel: CancellationToken,
    /// What the drain is doing now: an explicit run that another explicit run can join, or a wake.
    mode: Mode,
    rerun: Option<Mode>,
}

/// Removes a drain's entry when its task ends abnormally (a panic); the normal exit removes it under the lock.
struct DrainGuard {
    coordinator: Arc<Coordinator>,
    session_id: String,
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.coordinator.drains.lock().remove(&self.session_id);
        }
    }
}

impl Coordinator {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services, drains: Mutex::new(HashMap::new()) }
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
        let coordinator = Arc::clone(self);
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            // If the drain panics, its entry must still go, or the session could never run again.
            let _guard = DrainGuard { coordinator: Arc::clone(&coordinator), session_id: session_id.clone() };
            let mut mode = mode;
            let mut cancel = cancel;
            loop {
                if let Err(e) = runner::drain(&coordinator.services, &session_id, mode, &cancel).await {
                    tracing::error!(session = %session_id, "the session's run failed: {e}");
                }
                let mut drains = coordinator.drains.lock();
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
        if let Some(cancel) = cancel {
            // Paused now, in log order: input admitted after this call restarts the queue, whenever the activity
            // closes.
            if let Ok(pause) = event(EventBody::QueuePaused(QueueData {})) {
                let _ = self.services.append_events(session_id, vec![pause]);
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

    /// Records an answer to an approval (see `approval::resolve`); a call that nobody in this process waits for
    /// runs when the session wakes.
    pub fn answer(
        self: &Arc<Self>,
        approval_id: &str,
        decision: Resolved,
        message: Option<String>,
        by: &str,
    ) -> Result<(), ApprovalError> {
        approval::resolve(&self.services, approval_id, decision, message, by, &|session_id| {
            self.wake(session_id, Mode::Wake);
        })
    }

    fn close_orphaned_activity(self: &Arc<Self>, session_id: &str) -> Result<bool, Error> {
        let store = &self.services.store;
        let Some(session) = store.session(session_id)? else { return Ok(false) };
        let Some(activity_id) = session.active_activity else { return Ok(false) };
        for approval in store.query(|c| approvals::pending(c, session_id))? {
            let _ = self.answer(&approval.approval_id, Resolved::Cancelled, None, "interrupt");
        }
        let mut events = Vec::new();
        for (call_id, _) in store.query(|c| transcript::unsettled_tool_calls(c, session_id))? {
            events.push(event(EventBody::ToolFailed(ToolFailedData { call_id, error: "interrupted".into() }))?);
        }
        events.push(event(EventBody::ActivityClosed(ActivityClosedData {
            activity_id,
            reason: CloseReason::Interrupted,
            error: None,
        }))?);
        events.push(event(EventBody::SessionStatus(StatusData { status: SessionStatus::Idle }))?);
        events.push(event(EventBody::QueuePaused(QueueData {}))?);
        self.services.append_events(session_id, events)?;
        Ok(true)
    }
}
