//! Where the model's context starts (the latest compaction's checkpoint) and what its size is estimated from.

use super::Result;
use super::db::{Db, params};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextRow {
    /// The transcript after this seq is sent verbatim; 0 before any summary.
    pub checkpoint_seq: u64,
    /// What stands for the transcript up to `checkpoint_seq`.
    pub summary: Option<String>,
    /// A measured size of the context (the last request's reported prompt, or a compaction's result)…
    pub anchor_tokens: u64,
    /// …that covers the parts up to this seq; later parts are estimated.
    pub anchor_seq: u64,
}

pub fn get(db: &dyn Db, session_id: &str) -> Result<Option<ContextRow>> {
    db.row(
        "SELECT checkpoint_seq, summary, context_tokens, context_seq FROM sessions WHERE id = ?1",
        params![session_id],
        |r| {
            Ok(ContextRow {
                checkpoint_seq: r.get(0)?,
                summary: r.get(1)?,
                anchor_tokens: r.get(2)?,
                anchor_seq: r.get(3)?,
            })
        },
    )
}
