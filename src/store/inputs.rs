//! Queries of the `inputs` read model: the durable inbox.

use keel_protocol::input::{Delivery, Disposition, InputKind};
use serde::Deserialize;

use super::Result;
use super::db::{Db, Row, params};

/// Where an admitted input is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputState {
    Pending,
    Promoted,
    Removed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputRow {
    pub input_id: String,
    pub admitted_seq: u64,
    pub delivery: Delivery,
    pub disposition: Disposition,
    /// JSON `ContentPart[]`.
    pub content: String,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub fingerprint: String,
    pub state: InputState,
    pub kind: InputKind,
}

const COLUMNS: &str = "input_id, admitted_seq, delivery, disposition, content, agent, model, fingerprint, state, kind";

fn row(r: &mut Row) -> Result<InputRow> {
    Ok(InputRow {
        input_id: r.get(0)?,
        admitted_seq: r.get(1)?,
        delivery: r.parse(2)?,
        disposition: r.parse(3)?,
        content: r.get(4)?,
        agent: r.get(5)?,
        model: r.get(6)?,
        fingerprint: r.get(7)?,
        state: r.parse(8)?,
        kind: r.parse(9)?,
    })
}

pub fn get(db: &dyn Db, session_id: &str, input_id: &str) -> Result<Option<InputRow>> {
    db.row(
        &format!("SELECT {COLUMNS} FROM inputs WHERE session_id = ?1 AND input_id = ?2"),
        params![session_id, input_id],
        row,
    )
}

/// Admitted, not yet promoted or removed, in admission order.
pub fn pending(db: &dyn Db, session_id: &str) -> Result<Vec<InputRow>> {
    db.rows(
        &format!("SELECT {COLUMNS} FROM inputs WHERE session_id = ?1 AND state = 'pending' ORDER BY admitted_seq"),
        params![session_id],
        row,
    )
}
