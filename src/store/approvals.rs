//! Queries of the `approvals` and `project_rules` read models.

use keel_protocol::approval::Resolved;
use serde::Deserialize;

use super::Result;
use super::db::{Db, Row, params};

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

fn row(r: &mut Row) -> Result<ApprovalRow> {
    let resources: String = r.get(5)?;
    Ok(ApprovalRow {
        session_id: r.get(0)?,
        approval_id: r.get(1)?,
        call_id: r.get(2)?,
        tool: r.get(3)?,
        action: r.get(4)?,
        resources: serde_json::from_str(&resources).unwrap_or_default(),
        title: r.get(6)?,
        state: r.parse(7)?,
        decision: r.parse_opt(8)?,
        message: r.get(9)?,
    })
}

pub fn get(db: &dyn Db, approval_id: &str) -> Result<Option<ApprovalRow>> {
    db.row(&format!("SELECT {COLUMNS} FROM approvals WHERE approval_id = ?1"), params![approval_id], row)
}

/// The latest approval asked for a tool call.
pub fn for_call(db: &dyn Db, session_id: &str, call_id: &str) -> Result<Option<ApprovalRow>> {
    db.row(
        &format!(
            "SELECT {COLUMNS} FROM approvals WHERE session_id = ?1 AND call_id = ?2 ORDER BY requested_seq DESC LIMIT 1"
        ),
        params![session_id, call_id],
        row,
    )
}

pub fn pending(db: &dyn Db, session_id: &str) -> Result<Vec<ApprovalRow>> {
    db.rows(
        &format!("SELECT {COLUMNS} FROM approvals WHERE session_id = ?1 AND state = 'pending' ORDER BY requested_seq"),
        params![session_id],
        row,
    )
}

/// Allow rules stored for a project by `always` answers: (action, pattern).
pub fn project_rules(db: &dyn Db, project: &str) -> Result<Vec<(String, String)>> {
    db.rows(
        "SELECT action, pattern FROM project_rules WHERE project = ?1 ORDER BY created_at, action, pattern",
        params![project],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}
