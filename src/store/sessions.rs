//! Queries of the `sessions` read model.

use keel_protocol::session::{ReasoningEffort, SessionStatus};

use super::Result;
use super::db::{Db, Row, params};

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub cwd: String,
    pub title: String,
    pub agent: String,
    pub model: String,
    pub parent_id: Option<String>,
    pub status: SessionStatus,
    pub head_seq: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// An interrupt paused the queue; the next prompt or resume restarts it.
    pub queue_paused: bool,
    /// The activity that is open, if any.
    pub active_activity: Option<String>,
    pub reasoning_effort: ReasoningEffort,
}

/// Keyset position in the newest-first session list.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCursor {
    pub updated_at: i64,
    pub id: String,
}

const COLUMNS: &str = "id, cwd, title, agent, model, parent_id, status, head_seq, created_at, updated_at, \
     input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_write_tokens, cost_usd, queue_paused, \
     active_activity, reasoning_effort";

fn row(r: &mut Row) -> Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        cwd: r.get(1)?,
        title: r.get(2)?,
        agent: r.get(3)?,
        model: r.get(4)?,
        parent_id: r.get(5)?,
        status: r.parse(6)?,
        head_seq: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        input_tokens: r.get(10)?,
        output_tokens: r.get(11)?,
        reasoning_tokens: r.get(12)?,
        cache_read_tokens: r.get(13)?,
        cache_write_tokens: r.get(14)?,
        cost_usd: r.get(15)?,
        queue_paused: r.get(16)?,
        active_activity: r.get(17)?,
        reasoning_effort: r.parse(18)?,
    })
}

pub fn get(db: &dyn Db, id: &str) -> Result<Option<SessionRow>> {
    db.row(&format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"), params![id], row)
}

/// The session's title alone (read inside an append's transaction, where the whole row is not needed).
pub fn title(db: &dyn Db, id: &str) -> Result<Option<String>> {
    db.value("SELECT title FROM sessions WHERE id = ?1", params![id])
}

/// Which sessions a listing shows.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter<'a> {
    /// Only those whose workspace is exactly this directory.
    pub cwd: Option<&'a str>,
    /// Only the children of this session.
    pub parent_id: Option<&'a str>,
    /// Only sessions without a parent.
    pub roots: bool,
}

pub(super) fn list(
    db: &dyn Db,
    filter: &SessionFilter<'_>,
    cursor: Option<&SessionCursor>,
    limit: usize,
) -> Result<Vec<SessionRow>> {
    let (after_time, after_id) = match cursor {
        Some(c) => (c.updated_at, c.id.as_str()),
        None => (i64::MAX, ""),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions \
         WHERE (cwd = ?1 OR ?1 IS NULL) AND (updated_at < ?2 OR (updated_at = ?2 AND (?3 = '' OR id < ?3))) \
         AND (parent_id = ?5 OR ?5 IS NULL) AND (?6 = 0 OR parent_id IS NULL) \
         ORDER BY updated_at DESC, id DESC LIMIT ?4"
    );
    db.rows(&sql, params![filter.cwd, after_time, after_id, limit, filter.parent_id, filter.roots], row)
}
