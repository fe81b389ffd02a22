//! Queries of the `parts` read model: the model-visible transcript.

use super::Result;
use super::db::{Db, Row, params};

#[derive(Debug, Clone, PartialEq)]
pub struct PartRow {
    pub seq: u64,
    /// The part's place among the parts of its event.
    pub idx: i64,
    pub message_id: String,
    pub role: String,
    pub kind: String,
    /// JSON shaped like the protocol's `Part`.
    pub data: String,
}

fn row(r: &mut Row) -> Result<PartRow> {
    Ok(PartRow {
        seq: r.get(0)?,
        message_id: r.get(1)?,
        role: r.get(2)?,
        kind: r.get(3)?,
        data: r.get(4)?,
        idx: r.get(5)?,
    })
}

/// Parts created by events after `after_seq`, in transcript order, at most `limit` of them.
pub fn parts_after(db: &dyn Db, session_id: &str, after_seq: u64, limit: usize) -> Result<Vec<PartRow>> {
    db.rows(
        "SELECT seq, message_id, role, kind, data, idx FROM parts WHERE session_id = ?1 AND seq > ?2 \
         ORDER BY seq, idx LIMIT ?3",
        params![session_id, after_seq, limit],
        row,
    )
}

/// The characters and the number of the parts created after `after_seq`: what a size estimate adds.
pub fn size_after(db: &dyn Db, session_id: &str, after_seq: u64) -> Result<(usize, u64)> {
    let (chars, count): (i64, i64) = db
        .row(
            "SELECT coalesce(sum(length(data)), 0), count(*) FROM parts WHERE session_id = ?1 AND seq > ?2",
            params![session_id, after_seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .unwrap_or_default();
    Ok((usize::try_from(chars).unwrap_or(usize::MAX), u64::try_from(count).unwrap_or(0)))
}

/// Parts after the position (`after_seq`, `after_idx`), in transcript order, at most `limit`: a keyset for reading
/// the transcript in pages without splitting the parts of one event.
pub fn parts_from(db: &dyn Db, session_id: &str, after_seq: u64, after_idx: i64, limit: usize) -> Result<Vec<PartRow>> {
    db.rows(
        "SELECT seq, message_id, role, kind, data, idx FROM parts WHERE session_id = ?1 \
         AND (seq > ?2 OR (seq = ?2 AND idx > ?3)) ORDER BY seq, idx LIMIT ?4",
        params![session_id, after_seq, after_idx, limit],
        row,
    )
}

/// Tool calls that were recorded but never settled, with their status (`pending`: never started, `running`: the
/// process running them died).
pub fn unsettled_tool_calls(db: &dyn Db, session_id: &str) -> Result<Vec<(String, String)>> {
    db.rows(
        "SELECT part_id, status FROM parts WHERE session_id = ?1 AND kind = 'tool' \
         AND status IN ('pending', 'running') ORDER BY seq",
        params![session_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The tool and input of a recorded call.
pub fn tool_call(db: &dyn Db, session_id: &str, call_id: &str) -> Result<Option<(String, serde_json::Value)>> {
    let data: Option<String> = db.value(
        "SELECT data FROM parts WHERE session_id = ?1 AND part_id = ?2 AND kind = 'tool'",
        params![session_id, call_id],
    )?;
    let Some(data) = data else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(&data)?;
    Ok(Some((value["tool"].as_str().unwrap_or_default().to_owned(), value["input"].clone())))
}
