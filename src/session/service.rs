//! Session lifecycle: create, list, get, update, fork, delete. Each change is one event appended to the store,
//! whose projection keeps the `sessions` read model current.

use keel_protocol::catalogue::EventBody;
use std::path::Path;
use std::sync::Arc;

use keel_protocol::event::{ForkOrigin, SessionCreatedData, SessionDeletedData, SessionUpdatedData};
use keel_protocol::session::ReasoningEffort;

use super::Error;
use crate::store::{NewEvent, SessionCursor, SessionFilter, SessionRow, Store};

pub const DEFAULT_AGENT: &str = "build";
pub const DEFAULT_TITLE: &str = "New session";
pub const MAX_PAGE: usize = 500;

/// The `provider/model` a session's turns use unless an input names one: the session's, its agent's, or the
/// configured default.
pub fn model_of(session: &SessionRow, agent: &str, config: &crate::config::Config) -> String {
    Some(session.model.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| config.agents.get(agent).and_then(|a| a.model.clone()))
        .unwrap_or_else(|| crate::provider::registry::Registry::default_model(config))
}

/// The reasoning effort the session's turns ask for: the session's, the agent's, the config's; `None` leaves it to
/// the provider.
pub fn effort_of(session: &SessionRow, agent: &str, config: &crate::config::Config) -> Option<ReasoningEffort> {
    [Some(session.reasoning_effort), config.agents.get(agent).and_then(|a| a.reasoning_effort), config.reasoning_effort]
        .into_iter()
        .flatten()
        .find(|e| !e.is_default())
}

/// The session and its ancestors, nearest first; a missing session ends the chain.
pub fn lineage(store: &Store, session_id: &str) -> Vec<String> {
    let mut chain = Vec::new();
    let mut next = Some(session_id.to_owned());
    while let Some(id) = next.take() {
        if chain.contains(&id) {
            break;
        }
        next = store.session(&id).ok().flatten().and_then(|s| s.parent_id);
        chain.push(id);
    }
    chain
}

pub struct Sessions {
    store: Arc<Store>,
}

pub struct NewSession {
    pub cwd: String,
    pub title: Option<String>,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub parent_id: Option<String>,
}

#[derive(Debug, Default)]
pub struct SessionChanges {
    pub title: Option<String>,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub reasoning_effort: Option<ReasoningEffort>,
}

pub struct SessionPage {
    pub sessions: Vec<SessionRow>,
    pub next: Option<SessionCursor>,
}

impl Sessions {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    pub fn create(&self, new: NewSession) -> Result<SessionRow, Error> {
        let cwd = Path::new(&new.cwd);
        if !cwd.is_absolute() {
            return Err(Error::InvalidParam { path: "cwd", reason: "must be an absolute path".into() });
        }
        if !cwd.is_dir() {
            return Err(Error::InvalidParam { path: "cwd", reason: format!("{} is not a directory", new.cwd) });
        }
        if let Some(parent) = &new.parent_id {
            self.get(parent)?;
        }
        let id = new_session_id();
        let created = SessionCreatedData {
            cwd: new.cwd,
            title: new.title.unwrap_or_else(|| DEFAULT_TITLE.to_owned()),
            agent: new.agent.unwrap_or_else(|| DEFAULT_AGENT.to_owned()),
            model: new.model.unwrap_or_default(),
            parent_id: new.parent_id,
            forked_from: None,
        };
        self.store.append(&id, vec![NewEvent::new(EventBody::SessionCreated(created))?])?;
        self.get(&id)
    }

    pub fn get(&self, id: &str) -> Result<SessionRow, Error> {
        self.store.session(id)?.ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    pub fn list(&self, filter: &SessionFilter<'_>, cursor: Option<&str>, limit: usize) -> Result<SessionPage, Error> {
        let cursor = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, MAX_PAGE);
        let mut sessions = self.store.sessions(filter, cursor.as_ref(), limit + 1)?;
        let next = if sessions.len() > limit {
            sessions.truncate(limit);
            sessions.last().map(|s| SessionCursor { updated_at: s.updated_at, id: s.id.clone() })
        } else {
            None
        };
        Ok(SessionPage { sessions, next })
    }

    /// Appends `session.updated` with the fields that differ; an update that changes nothing appends nothing.
    pub fn update(&self, id: &str, changes: SessionChanges) -> Result<SessionRow, Error> {
        let current = self.get(id)?;
        let differs = |new: Option<String>, old: &str| new.filter(|n| n != old);
        let data = SessionUpdatedData {
            title: differs(changes.title, &current.title),
            agent: differs(changes.agent, &current.agent),
            model: differs(changes.model, &current.model),
            reasoning_effort: changes.reasoning_effort.filter(|e| *e != current.reasoning_effort),
        };
        if data == SessionUpdatedData::default() {
            return Ok(current);
        }
        self.store.append(id, vec![NewEvent::new(EventBody::SessionUpdated(data))?])?;
        self.get(id)
    }

    pub fn fork(&self, id: &str, at_seq: Option<u64>) -> Result<SessionRow, Error> {
        let source = self.first_event(id)?;
        let head = self.get(id)?.head_seq;
        let created = SessionCreatedData {
            parent_id: Some(id.to_owned()),
            forked_from: Some(ForkOrigin { session_id: id.to_owned(), at_seq: at_seq.unwrap_or(head) }),
            ..source
        };
        let new_id = new_session_id();
        Ok(self.store.fork(id, at_seq, &new_id, NewEvent::new(EventBody::SessionCreated(created))?)?)
    }

    pub fn delete(&self, id: &str) -> Result<(), Error> {
        self.store.append(id, vec![NewEvent::new(EventBody::SessionDeleted(SessionDeletedData {}))?])?;
        Ok(())
    }

    fn first_event(&self, id: &str) -> Result<SessionCreatedData, Error> {
        let first = self.store.events_after(id, 0, 1)?;
        let event = first.first().ok_or_else(|| Error::NotFound(id.to_owned()))?;
        serde_json::from_str(event.data.get()).map_err(|e| Error::Store(e.into()))
    }
}

/// Time-ordered, so ids sort by creation.
fn new_session_id() -> String {
    format!("ses_{}", uuid::Uuid::now_v7().simple())
}

fn decode_cursor(cursor: &str) -> Result<SessionCursor, Error> {
    let invalid = || Error::InvalidParam { path: "cursor", reason: "not a cursor returned by session/list".into() };
    let (time, id) = cursor.split_once('.').ok_or_else(invalid)?;
    Ok(SessionCursor { updated_at: time.parse().map_err(|_| invalid())?, id: id.to_owned() })
}

pub fn encode_cursor(cursor: &SessionCursor) -> String {
    format!("{}.{}", cursor.updated_at, cursor.id)
}
