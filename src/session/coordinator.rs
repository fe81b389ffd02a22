//! The coordinator: at most one drain per session in this process, and at most one engine running a session at a
//! time (the session's execution lease). A wake while the drain runs asks for one more pass, an explicit run joins a
//! running explicit run, and an interrupt cancels the drain, also when another engine runs it. Approvals and
//! recovery decisions answered while nobody waits wake the session through here too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::approval::Resolved;
use keel_protocol::catalogue::{EventBody, EventKind};
use keel_protocol::input::Delivery;
use keel_protocol::recovery::{RecoveryDecision, RecoveryResolvedData};
use keel_protocol::session::SessionStatus;
use keel_protocol::turn::{ActivityClosedData, CloseReason, QueueData, StatusData, ToolFailedData};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::approval::{self, ApprovalError, Resolution};
use super::runner::{self, Mode};
use super::{Error, Services, event};
use crate::store::{Event, Fence, NewEvent, approvals, inputs, transcript};

pub struct Coordinator {
    services: Arc<Services>,
    drains: Mutex<HashMap<String, Drain>>,
}

/// The one drain of a session in this process: its interrupt switch and the run requested while it was busy.
struct Drain {
    cancel: CancellationToken,
    /// What the drain is doing now: an explicit run that another explicit run can join, or a wake.
    mode: Mode,
    rerun: Option<Mode>,
    /// The session's head when the current pass began: a pause recorded before it is not meant for this pass.
    since: u64,
}

/// Removes a drain's entry and its lease when its task ends abnormally (a panic); the normal exit does both under
/// the lock.
struct DrainGuard {
    coordinator: Arc<Coordinator>,
    session_id: String,
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.coordinator.drains.lock().remove(&self.session_id);
            self.coordinator.services.unhold(&self.session_id);
        }
    }
}

impl Coordinator {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services, drains: Mutex::new(HashMap::new()) }
    }

    /// Makes sure the session's drain runs. Returns false when one was already running here (the call joined it),
    /// when another engine holds the session's lease (it sees the recorded work), or when the engine is shutting
    /// down.
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
            if self.services.shutdown.is_cancelled() {
                return false;
            }
            let cancel = CancellationToken::new();
            drains.insert(session_id.to_owned(), Drain { cancel: cancel.clone(), mode, rerun: None, since: 0 });
            cancel
        };
        let services = &self.services;
        let fence = match services.store.acquire_lease(session_id, &services.instance, services.settings.lease_ttl) {
            Ok(Some(fence)) => fence,
            Ok(None) => {
                self.drains.lock().remove(session_id);
                return false;
            }
            Err(e) => {
                self.drains.lock().remove(session_id);
                if !matches!(e, crate::store::Error::SessionNotFound(_)) {
                    tracing::error!(session = %session_id, "taking the session's lease failed: {e}");
                }
                return false;
            }
        };
        services.hold(fence.clone(), cancel.clone());
        let coordinator = Arc::clone(self);
        tokio::spawn(async move {
            // If the drain panics, its entry must still go, or the session could never run again here.
            let _guard = DrainGuard { coordinator: Arc::clone(&coordinator), session_id: fence.session_id.clone() };
            let done = CancellationToken::new();
            let keeper = tokio::spawn(Arc::clone(&coordinator).keep(fence.clone(), done.clone()));
            coordinator.run_drain(&fence, mode, cancel).await;
            done.cancel();
            let _ = keeper.await;
        });
        true
    }

    /// Drain passes until one ends with nothing new recorded, then gives the lease back.
    async fn run_drain(self: &Arc<Self>, fence: &Fence, mut mode: Mode, mut cancel: CancellationToken) {
        let services = &self.services;
        let session_id = fence.session_id.as_str();
        loop {
            let since = services.store.head(session_id).ok().flatten().unwrap_or(0);
            let own_before = services.appended_under_lease(session_id);
            if let Some(drain) = self.drains.lock().get_mut(session_id) {
                drain.since = since;
            }
            if let Err(e) = runner::drain(services, session_id, mode, &cancel).await {
                tracing::error!(session = %session_id, "the session's run failed: {e}");
            }
            let mut drains = self.drains.lock();
            let Some(drain) = drains.get_mut(session_id) else { break };
            let next = match drain.rerun.take() {
                Some(next) => Some(next),
                None if services.shutdown.is_cancelled() => {
                    let _ = services.store.release_lease(fence, |_| Ok(false));
                    None
                }
                None => {
                    // Whatever anyone else recorded during the pass (input, answers, decisions) gets a pass of its
                    // own; the check and the release are one transaction, so nothing can fall in between.
                    let own = services.appended_under_lease(session_id) - own_before;
                    let released = services.store.release_lease(fence, |conn| {
                        let head = crate::store::head_seq(conn, session_id)?.unwrap_or(0);
                        Ok(head > since + own)
                    });
                    match released {
                        Ok(false) => Some(Mode::Wake),
                        Ok(true) => None,
                        Err(e) => {
                            tracing::error!(session = %session_id, "releasing the session's lease failed: {e}");
                            None
                        }
                    }
                }
            };
            let Some(next) = next else {
                drains.remove(session_id);
                services.unhold(session_id);
                break;
            };
            mode = next;
            drain.mode = next;
            if cancel.is_cancelled() {
                cancel = CancellationToken::new();
                drain.cancel = cancel.clone();
                services.rearm(session_id, cancel.clone());
            }
        }
    }

    /// While a drain holds the lease: renews it, and reacts to what other engines record for the session (an
    /// approval answered, an interrupt's pause, a deletion), which only the log tells this process.
    async fn keep(self: Arc<Self>, fence: Fence, done: CancellationToken) {
        let services = &self.services;
        let session_id = fence.session_id.as_str();
        let Ok(feed) = services.store.feed(session_id) else { return };
        let mut wake = feed.watch();
        let mut cursor = feed.head();
        let mut renew = tokio::time::interval(services.settings.lease_renew);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        loop {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = renew.tick() => match services.store.renew_lease(&fence, services.settings.lease_ttl) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(session = %session_id, "the session's lease was lost to another engine");
                        self.cancel_pass(session_id, 0);
                        return;
                    }
                    Err(e) => tracing::error!(session = %session_id, "renewing the session's lease failed: {e}"),
                },
                changed = wake.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    loop {
                        let events: Vec<Arc<Event>> = match feed.recent_after(cursor, 256) {
                            Some(events) => events,
                            None => match services.store.events_after(session_id, cursor, 256) {
                                Ok(events) => events.into_iter().map(Arc::new).collect(),
                                Err(e) => {
                                    tracing::error!(session = %session_id, "reading the session's log failed: {e}");
                                    break;
                                }
                            },
                        };
                        let Some(last) = events.last() else { break };
                        cursor = last.seq;
                        for event in &events {
                            self.observe(event);
                        }
                    }
                }
            }
        }
    }

    fn observe(&self, event: &Event) {
        match event.kind {
            EventKind::ApprovalResolved => {
                let Ok(EventBody::ApprovalResolved(d)) = event.body() else { return };
                let waiter = self.services.waiters().lock().remove(&d.approval_id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Resolution { decision: d.decision, message: d.message });
                }
            }
            EventKind::QueuePaused | EventKind::SessionDeleted => self.cancel_pass(&event.session_id, event.seq),
            _ => {}
        }
    }

    /// Cancels the session's current drain pass if it began before `seq`.
    fn cancel_pass(&self, session_id: &str, seq: u64) {
        let drains = self.drains.lock();
        if let Some(drain) = drains.get(session_id)
            && (seq == 0 || drain.since < seq)
        {
            drain.cancel.cancel();
        }
    }

    /// Interrupts the session: its drain stops (stream aborted, tools killed, approvals cancelled) and its queue
    /// pauses until the next prompt or resume. A drain in another engine learns it from the pause in the log.
    /// Without a drain anywhere (after a crash or a shutdown), an activity left open is closed here and its pending
    /// approvals are cancelled. False when there was nothing to interrupt.
    pub fn interrupt(self: &Arc<Self>, session_id: &str) -> bool {
        let local = {
            let drains = self.drains.lock();
            drains.get(session_id).filter(|d| !d.cancel.is_cancelled()).map(|d| (d.cancel.clone(), d.mode))
        };
        let store = &self.services.store;
        let elsewhere = || {
            store.lease_holder(session_id).ok().flatten().is_some_and(|(owner, _)| *owner != *self.services.instance)
        };
        if local.is_some() || elsewhere() {
            // Read before the pause: a drain also runs a short pass after an activity closes, to look at what others
            // recorded meanwhile, and interrupting that pass stops nothing.
            let stops_work = match local {
                Some((_, Mode::Run)) => true,
                Some(_) => self.has_work(session_id, true),
                None => self.has_work(session_id, false),
            };
            // Paused now, in log order: input admitted after this call restarts the queue, whenever the activity
            // closes.
            if let Ok(pause) = event(EventBody::QueuePaused(QueueData {})) {
                let _ = store.append(session_id, vec![pause]);
            }
            if let Some((cancel, _)) = local {
                cancel.cancel();
            }
            return stops_work;
        }
        match self.close_orphaned_activity(session_id) {
            Ok(closed) => closed,
            Err(e) => {
                tracing::error!(session = %session_id, "interrupting failed: {e}");
                false
            }
        }
    }

    /// Whether the session has an activity open or, with `inputs`, input that its drain is about to run.
    fn has_work(&self, session_id: &str, inputs: bool) -> bool {
        let store = &self.services.store;
        let Ok(Some(session)) = store.session(session_id) else { return false };
        if session.active_activity.is_some() {
            return true;
        }
        inputs
            && store
                .query(|c| inputs::pending(c, session_id))
                .is_ok_and(|pending| pending.iter().any(|i| i.delivery == Delivery::Steer || !session.queue_paused))
    }

    /// Records an answer to an approval (see `approval::resolve`); a call that nobody in this process waits for
    /// runs when the session wakes, here or in the engine that holds the session.
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

    /// Records a client's decision about an activity whose last attempt had an unknown outcome, and wakes the
    /// session so that its owner acts on it. Conflict when the session waits for no decision.
    pub fn decide(self: &Arc<Self>, session_id: &str, decision: RecoveryDecision) -> Result<(), Error> {
        let (_, decided) = self.services.store.append_with(session_id, |conn| {
            let session = crate::store::sessions::get(conn, session_id)?
                .ok_or_else(|| crate::store::Error::SessionNotFound(session_id.to_owned()))?;
            let Some(activity_id) = session.active_activity.filter(|_| session.status == SessionStatus::Recovering)
            else {
                return Ok((Vec::new(), false));
            };
            let resolved = RecoveryResolvedData { activity_id, decision, by: "client".into() };
            let events = vec![
                NewEvent::new(EventBody::RecoveryResolved(resolved))?,
                NewEvent::new(EventBody::SessionStatus(StatusData { status: SessionStatus::Running }))?,
            ];
            Ok((events, true))
        })?;
        if !decided {
            return Err(Error::Conflict(format!("session {session_id} is not waiting for a recovery decision")));
        }
        self.wake(session_id, Mode::Wake);
        Ok(())
    }

    /// Hands every session that has work and no live owner to a drain: at start (recovery of what stopped engines
    /// left) and then periodically (an engine that died while others run).
    pub fn discover(self: &Arc<Self>) {
        match self.services.store.unowned_work() {
            Ok(sessions) => {
                for unowned in sessions {
                    if unowned.open_activity {
                        tracing::info!(session = %unowned.session_id, "taking over an activity no engine runs");
                    }
                    self.wake(&unowned.session_id, Mode::Wake);
                }
            }
            Err(e) => tracing::error!("looking for sessions nobody runs failed: {e}"),
        }
    }

    /// Stops admitting runs and suspends every drain at its next safe point, cutting those still running after
    /// `grace`; each records its suspension and gives its lease back.
    pub async fn shutdown(self: &Arc<Self>, grace: Duration) {
        self.services.shutdown.cancel();
        if !self.wait_idle(grace).await {
            for drain in self.drains.lock().values() {
                drain.cancel.cancel();
            }
            // Cut streams and killed tools settle quickly; a drain still busy after this loses nothing durable.
            self.wait_idle(Duration::from_secs(5)).await;
        }
    }

    async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.drains.lock().is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Closes an activity that no engine runs, under the session's lease.
    fn close_orphaned_activity(self: &Arc<Self>, session_id: &str) -> Result<bool, Error> {
        let services = &self.services;
        let store = &services.store;
        let Some(session) = store.session(session_id)? else { return Ok(false) };
        let Some(activity_id) = session.active_activity else { return Ok(false) };
        let Some(fence) = store.acquire_lease(session_id, &services.instance, services.settings.lease_ttl)? else {
            return Ok(false);
        };
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
        services.hold(fence.clone(), CancellationToken::new());
        let closed = services.append_events(session_id, events);
        services.unhold(session_id);
        store.release_lease(&fence, |_| Ok(false))?;
        closed?;
        Ok(true)
    }
}
