//! The `jobs` read model: background jobs by session, and those a stopped process left running.

use keel_protocol::job::JobState;

use super::Result;
use super::db::{Db, Row, params};

#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub job_id: String,
    pub session_id: String,
    pub command: String,
    pub state: JobState,
    pub host: String,
    pub owner_pid: i64,
    pub pid: i64,
    pub exit_code: Option<i32>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

const COLUMNS: &str = "job_id, session_id, command, state, host, owner_pid, pid, exit_code, started_at, ended_at";

fn row(r: &mut Row) -> Result<JobRow> {
    Ok(JobRow {
        job_id: r.get(0)?,
        session_id: r.get(1)?,
        command: r.get(2)?,
        state: r.parse(3)?,
        host: r.get(4)?,
        owner_pid: r.get(5)?,
        pid: r.get(6)?,
        exit_code: r.get(7)?,
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
    })
}

/// Newest first.
pub fn list(db: &dyn Db, session_id: Option<&str>, running_only: bool) -> Result<Vec<JobRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE (session_id = ?1 OR ?1 IS NULL) AND (?2 = 0 OR state = 'running') \
         ORDER BY started_at DESC, job_id DESC LIMIT 500"
    );
    db.rows(&sql, params![session_id, running_only], row)
}

/// The job as the session that started it records it (a fork's copy is not the process's owner).
pub fn get(db: &dyn Db, job_id: &str) -> Result<Option<JobRow>> {
    db.row(&format!("SELECT {COLUMNS} FROM jobs WHERE job_id = ?1 ORDER BY started_at LIMIT 1"), params![job_id], row)
}

/// Running jobs whose engine process on this host is gone: nobody will record their end.
pub fn orphaned(db: &dyn Db) -> Result<Vec<JobRow>> {
    let here = super::lease::host();
    let rows =
        db.rows(&format!("SELECT {COLUMNS} FROM jobs WHERE state = 'running' AND host = ?1"), params![here], row)?;
    Ok(rows.into_iter().filter(|j| !super::lease::process_exists(j.owner_pid)).collect())
}

/// Running jobs of a session, for a fork to close.
pub fn running(db: &dyn Db, session_id: &str) -> Result<Vec<String>> {
    db.rows("SELECT job_id FROM jobs WHERE session_id = ?1 AND state = 'running'", params![session_id], |r| r.get(0))
}
