//! Read-model updates, applied inside the append transaction of the event that causes them.
//! Each arm reads the event's persisted payload; unknown types project nothing.

use keel_protocol::event::{SessionCreatedData, SessionUpdatedData};
use rusqlite::{Transaction, params};

use super::{Event, Result};

pub(super) const SESSION_CREATED: &str = "session.created";
pub(super) const SESSION_UPDATED: &str = "session.updated";
pub(super) const SESSION_DELETED: &str = "session.deleted";

pub(super) fn apply(tx: &Transaction<'_>, event: &Event) -> Result<()> {
    match event.kind.as_str() {
        SESSION_CREATED => {
            let d: SessionCreatedData = serde_json::from_str(event.data.get())?;
            tx.prepare_cached(
                "INSERT INTO sessions (id, cwd, title, agent, model, parent_id, head_seq, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            )?
            .execute(params![
                event.session_id,
                d.cwd,
                d.title,
                d.agent,
                d.model,
                d.parent_id,
                event.seq,
                event.at
            ])?;
        }
        SESSION_UPDATED => {
            let d: SessionUpdatedData = serde_json::from_str(event.data.get())?;
            tx.prepare_cached(
                "UPDATE sessions SET title = coalesce(?2, title), agent = coalesce(?3, agent), \
                 model = coalesce(?4, model) WHERE id = ?1",
            )?
            .execute(params![event.session_id, d.title, d.agent, d.model])?;
        }
        SESSION_DELETED => {
            tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([&event.session_id])?;
            tx.prepare_cached("DELETE FROM events WHERE session_id = ?1")?.execute([&event.session_id])?;
        }
        _ => {}
    }
    Ok(())
}
