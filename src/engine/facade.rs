//! The session facade: the engine work every frontend needs, implemented once. `api`, `acp` and `cli` are adapters
//! over these calls; none of them reads the store or the services directly.

use std::sync::Arc;

use keel_protocol::recovery::RecoveryDecision;
use keel_protocol::session::SessionStatus;
use keel_protocol::turn::{Message, Part, Role};

use super::Engine;
use crate::provider::ProviderError;
use crate::session::Error;
use crate::session::follow::Follower;
use crate::session::inbox::{self, NewInput, Receipt};
use crate::session::prompt::PromptRun;
use crate::session::runner::Mode;
use crate::store::approvals::{self, ApprovalRow};
use crate::store::inputs::{self, InputRow};
use crate::store::{Event, Feed, transcript};

/// Transcript parts read from the store per page while assembling messages.
const PARTS_PAGE: usize = 256;

/// One page of the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagePage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// The cursor of the next page, if there is one.
    pub next: Option<u64>,
}

impl Engine {
    /// Runs a user's command in the session's workspace (`session/shell`).
    pub async fn shell(
        &self,
        session_id: &str,
        command: String,
        timeout_ms: Option<u64>,
    ) -> Result<crate::session::shell::ShellRun, Error> {
        crate::session::shell::run(&self.services, session_id, command, timeout_ms).await
    }

    /// Follows the session's log after `after` (`None`: from its head).
    pub fn follow(&self, session_id: &str, after: Option<u64>) -> Result<Follower, Error> {
        Follower::open(Arc::clone(&self.services.store), session_id, after)
    }

    /// Up to `limit` stored events after `after`, in seq order.
    pub fn events(&self, session_id: &str, after: u64, limit: usize) -> Result<Vec<Event>, Error> {
        Ok(self.services.store.events_after(session_id, after, limit)?)
    }

    /// The seq of the session's newest event, or `None` when the session does not exist.
    pub fn head(&self, session_id: &str) -> Result<Option<u64>, Error> {
        Ok(self.services.store.head(session_id)?)
    }

    /// The session's feed, for subscribers that pace their own reads.
    pub fn feed(&self, session_id: &str) -> Result<Arc<Feed>, Error> {
        Ok(self.services.store.feed(session_id)?)
    }

    /// Admits input (queue or steer) durably and wakes the session's drain.
    pub fn admit(&self, session_id: &str, new: NewInput) -> Result<Receipt, Error> {
        let receipt = inbox::admit(&self.services.store, session_id, new)?;
        self.wake(session_id, Mode::Wake);
        Ok(receipt)
    }

    /// Removes a queued input; false when it is no longer pending.
    pub fn remove_input(&self, session_id: &str, input_id: &str) -> Result<bool, Error> {
        inbox::remove(&self.services.store, session_id, input_id)
    }

    /// Admitted inputs not yet promoted, in admission order.
    pub fn pending_inputs(&self, session_id: &str) -> Result<Vec<InputRow>, Error> {
        Ok(self.services.store.query(|c| inputs::pending(c, session_id))?)
    }

    /// Admits a prompt and follows it until its activity closes (see `PromptRun`). The drivers that use this (ACP,
    /// `keel run`) have no way to answer `recovery/decide`: a prompt to a session that waits for a decision
    /// abandons the activity a crash cut, because the person has moved on.
    pub fn prompt(&self, session_id: &str, new: NewInput) -> Result<PromptRun, Error> {
        let waits = self.services.store.session(session_id)?.is_some_and(|s| s.status == SessionStatus::Recovering);
        if waits {
            match self.decide_recovery(session_id, RecoveryDecision::Abandon) {
                Ok(()) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let store = Arc::clone(&self.services.store);
        let run = PromptRun::start(Arc::clone(&self.services), session_id, || inbox::admit(&store, session_id, new))?;
        self.wake(session_id, Mode::Wake);
        Ok(run)
    }

    /// The session's approvals still waiting for an answer, oldest first.
    pub fn pending_approvals(&self, session_id: &str) -> Result<Vec<ApprovalRow>, Error> {
        Ok(self.services.store.query(|c| approvals::pending(c, session_id))?)
    }

    /// The tool and input of a recorded call.
    pub fn tool_call(&self, session_id: &str, call_id: &str) -> Result<Option<(String, serde_json::Value)>, Error> {
        Ok(self.services.store.query(|c| transcript::tool_call(c, session_id, call_id))?)
    }

    /// A model must name a provider the engine knows; its availability is checked when a turn runs.
    /// The config in force for `cwd`, or why it cannot be read (a syntax error, a wrong type: file and field).
    pub fn load_config(&self, cwd: Option<&str>) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::load(&self.services.paths, cwd.map(std::path::Path::new)).map(|loaded| loaded.config)
    }

    pub fn check_model(&self, cwd: Option<&str>, model: &str) -> Result<(), ProviderError> {
        self.services.providers.check_model(&self.config(cwd), model)
    }

    /// Up to `limit` messages of the transcript whose parts come after the cursor `after`, read from the store in
    /// pages; a message is never split across pages.
    pub fn messages(&self, session_id: &str, after: u64, limit: usize) -> Result<MessagePage, Error> {
        let mut messages: Vec<Message> = Vec::new();
        let mut last_seq = after;
        // The keyset of the next read: parts after (seq, idx); the first read takes every part after `after`.
        let (mut seq, mut idx) = (after, i64::MAX);
        loop {
            let rows = self.services.store.query(|c| transcript::parts_from(c, session_id, seq, idx, PARTS_PAGE))?;
            let last_page = rows.len() < PARTS_PAGE;
            for row in rows {
                (seq, idx) = (row.seq, row.idx);
                let new_message = messages.last().is_none_or(|m| m.id != row.message_id);
                if new_message && messages.len() == limit {
                    return Ok(MessagePage { messages, next: Some(last_seq) });
                }
                let Ok(part) = serde_json::from_str::<Part>(&row.data) else { continue };
                if new_message {
                    let role = if row.role == "user" { Role::User } else { Role::Assistant };
                    messages.push(Message { id: row.message_id.clone(), role, seq: row.seq, parts: Vec::new() });
                }
                if let Some(message) = messages.last_mut() {
                    message.parts.push(part);
                }
                last_seq = row.seq;
            }
            if last_page {
                return Ok(MessagePage { messages, next: None });
            }
        }
    }
}
