//! Running one prompt until its activity closes: admit it, follow the session from just before the admission, and
//! hand the frontend, in order, the session's events, our activity's streamed fragments and the approvals it asks
//! for, until the activity closes. The one implementation behind `keel run`, ACP's `session/prompt` and the
//! in-process test harness; each frontend only decides what to show and how to answer.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use keel_protocol::catalogue::EventBody;
use keel_protocol::turn::CloseReason;
use tokio::sync::broadcast;

use super::follow::Follower;
use super::inbox::Receipt;
use super::{Delta, Error, Notice, Services};
use crate::store::Event;
use crate::store::approvals::{self, ApprovalRow};

/// Events read from the store per page.
const PAGE: usize = 256;

/// One thing that happened while the prompt ran.
#[derive(Debug)]
pub enum Step {
    /// An event of the session, in log order, decoded. `ours`: the prompt's activity had opened by this event.
    Event { event: Event, body: EventBody, ours: bool },
    /// A streamed fragment of a turn of the prompt's activity.
    Delta(Arc<Delta>),
    /// A tool call in this session waits for an answer (also re-sent for every pending one after missed notices).
    Approval(ApprovalRow),
    /// An approval (of any session) was answered: questions about it can be withdrawn. Comes before `Closed` for
    /// every approval of the session answered by then; may come twice.
    ApprovalResolved(String),
    /// The queue was paused (an interrupt) before the prompt's input opened an activity; the input stays queued.
    PausedBeforeStart,
    /// The prompt's activity closed; the last step.
    Closed(Outcome),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub reason: CloseReason,
    pub error: Option<String>,
}

pub struct PromptRun {
    services: Arc<Services>,
    session_id: String,
    receipt: Receipt,
    follower: Follower,
    deltas: broadcast::Receiver<Arc<Delta>>,
    notices: broadcast::Receiver<Notice>,
    activity: Option<String>,
    /// The assistant messages of the activity's turns: only their fragments are the prompt's.
    messages: HashSet<String>,
    pending: VecDeque<Step>,
    closed: bool,
}

impl PromptRun {
    /// Subscribes before the input is admitted (by `admit`), so that nothing the activity does can be missed.
    pub(crate) fn start(
        services: Arc<Services>,
        session_id: &str,
        admit: impl FnOnce() -> Result<Receipt, Error>,
    ) -> Result<Self, Error> {
        let follower = Follower::open(Arc::clone(&services.store), session_id, None)?;
        let deltas = services.deltas.subscribe();
        let notices = services.notices.subscribe();
        let receipt = admit()?;
        Ok(Self {
            services,
            session_id: session_id.to_owned(),
            receipt,
            follower,
            deltas,
            notices,
            activity: None,
            messages: HashSet::new(),
            pending: VecDeque::new(),
            closed: false,
        })
    }

    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The seq of the last event handed out.
    pub fn cursor(&self) -> u64 {
        self.follower.cursor()
    }

    /// The next step; after `Closed` there are none (an error).
    pub async fn next(&mut self) -> Result<Step, Error> {
        loop {
            if let Some(step) = self.pending.pop_front() {
                return Ok(step);
            }
            if self.closed {
                return Err(Error::Conflict("the prompt's activity has closed".into()));
            }
            if self.read_events()? {
                continue;
            }
            tokio::select! {
                changed = self.follower.changed() => if !changed {
                    return Err(Error::Unavailable("the session went away".into()));
                },
                delta = self.deltas.recv() => if let Ok(delta) = delta && delta.session_id == self.session_id {
                    // A fragment can overtake the event of its turn: catch up on the log before judging it.
                    if !self.messages.contains(&delta.message_id) {
                        self.read_events()?;
                    }
                    if self.messages.contains(&delta.message_id) {
                        self.pending.push_back(Step::Delta(delta));
                    }
                },
                notice = self.notices.recv() => match notice {
                    Ok(Notice::ApprovalRequested(row))
                        if super::service::lineage(&self.services.store, &row.session_id).contains(&self.session_id) =>
                    {
                        self.pending.push_back(Step::Approval(row));
                    }
                    Ok(Notice::ApprovalResolved { approval_id, .. }) => {
                        self.pending.push_back(Step::ApprovalResolved(approval_id));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let session_id = &self.session_id;
                        let pending = self.services.store.query(|c| approvals::pending(c, session_id))?;
                        self.pending.extend(pending.into_iter().map(Step::Approval));
                    }
                    _ => {}
                },
            }
        }
    }

    /// Reads one page of the log into steps; false when there was nothing new.
    fn read_events(&mut self) -> Result<bool, Error> {
        if self.closed {
            return Ok(false);
        }
        let events = self.follower.page(PAGE)?;
        let any = !events.is_empty();
        for event in events {
            let body = event.body()?;
            let mut paused = false;
            let mut closed = None;
            match &body {
                EventBody::InputPromoted(d)
                    if self.activity.is_none() && d.input_ids.contains(&self.receipt.input_id) =>
                {
                    self.activity = Some(d.activity_id.clone());
                }
                EventBody::QueuePaused(_) if self.activity.is_none() => paused = true,
                EventBody::TurnStarted(d) if self.activity.as_ref() == Some(&d.activity_id) => {
                    self.messages.insert(d.message_id.clone());
                }
                EventBody::ActivityClosed(d) if self.activity.as_ref() == Some(&d.activity_id) => {
                    closed = Some(Outcome { reason: d.reason, error: d.error.clone() });
                }
                _ => {}
            }
            // The log says an approval was answered before it says the activity closed; the engine-wide notice
            // of the same may come later, so questions are withdrawn on the event too.
            let resolved = match &body {
                EventBody::ApprovalResolved(d) => Some(d.approval_id.clone()),
                _ => None,
            };
            let ours = self.activity.is_some();
            self.pending.push_back(Step::Event { event, body, ours });
            if let Some(approval_id) = resolved {
                self.pending.push_back(Step::ApprovalResolved(approval_id));
            }
            if paused {
                self.pending.push_back(Step::PausedBeforeStart);
            }
            if let Some(outcome) = closed {
                self.pending.push_back(Step::Closed(outcome));
                self.closed = true;
                break;
            }
        }
        Ok(any)
    }
}
