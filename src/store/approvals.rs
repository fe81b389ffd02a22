//! Queries of the `approvals` and `project_rules` read models.

use rusqlite::{Connection, OptionalExtension, params};

use keel_protocol::approval::Resolved;
use serde::Deserialize;

use super::{Result, column};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Resolved,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRow {
    pub session_id: String,
    pub approval_id: String,
    pub call_id: String,
    pub tool: String,
    pub action: String,
    pub resources: Vec<String>,
    pub title: String,
    pub state: ApprovalState,
    pub decision: Option<Resolved>,
    pub message: Option<String>,
}

const COLUMNS: &str = "session_id, approval_id, call_id, tool, action, resources, title, state, decision, message";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    let resources: String = r.get(5)?;
    Ok(ApprovalRow {
        session_id: r.get(0)?,
        approval_id: r.get(1)?,
        call_id: r.get(2)?,
        tool: r.get(3)?,
        action: r.get(4)?,
        resources: serde_json::from_str(&resources).unwrap_or_default(),
        title: r.get(6)?,
        state: column::parse(r, 7)?,
        decision: column::parse_opt(r, 8)?,
        message: r.get(9)?,
    })
}

pub fn get(conn: &Connection, approval_id: &str) -> Result<Option<ApprovalRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE approval_id = ?1"))?
        .query_row([approval_id], row)
        .optional()?)
}

/// The latest approval asked for a tool call.
pub fn for_call(conn: &Connection, session_id: &str, call_id: &str) -> Result<Option<ApprovalRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE session_id = ?1 AND call_id = ?2 ORDER BY requested_seq DESC LIMIT 1"
        ))?
        .query_row(params![session_id, call_id], row)
        .optional()?)
}

pub fn pending(conn: &Connection, session_id: &str) -> Result<Vec<ApprovalRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE session_id = ?1 AND state = 'pending' ORDER BY requested_seq"
    ))?;
    let rows = stmt.query_map([session_id], row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Allow rules stored for a project by `always` answers: (action, pattern).
pub fn project_rules(conn: &Connection, project: &str) -> Result<Vec<(String, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT action, pattern FROM project_rules WHERE project = ?1 ORDER BY created_at")?;
    let rows = stmt.query_map([project], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
