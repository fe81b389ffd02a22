//! Queries of the `parts` read model: the model-visible transcript.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

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

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PartRow> {
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
pub fn parts_after(conn: &Connection, session_id: &str, after_seq: u64, limit: usize) -> Result<Vec<PartRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, message_id, role, kind, data, idx FROM parts WHERE session_id = ?1 AND seq > ?2 \
         ORDER BY seq, idx LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![session_id, after_seq, limit], row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The characters and the number of the parts created after `after_seq`: what a size estimate adds.
pub fn size_after(conn: &Connection, session_id: &str, after_seq: u64) -> Result<(usize, u64)> {
    let (chars, count): (i64, i64) = conn
        .prepare_cached(
            "SELECT coalesce(sum(length(data)), 0), count(*) FROM parts WHERE session_id = ?1 AND seq > ?2",
        )?
        .query_row(params![session_id, after_seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((usize::try_from(chars).unwrap_or(usize::MAX), u64::try_from(count).unwrap_or(0)))
}

/// Parts after the position (`after_seq`, `after_idx`), in transcript order, at most `limit`: a keyset for reading
/// the transcript in pages without splitting the parts of one event.
pub fn parts_from(
    conn: &Connection,
    session_id: &str,
    after_seq: u64,
    after_idx: i64,
    limit: usize,
) -> Result<Vec<PartRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, message_id, role, kind, data, idx FROM parts WHERE session_id = ?1 \
         AND (seq > ?2 OR (seq = ?2 AND idx > ?3)) ORDER BY seq, idx LIMIT ?4",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![session_id, after_seq, after_idx, limit], row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Tool calls that were recorded but never settled, with their status (`pending`: never started, `running`: the
/// process running them died).
pub fn unsettled_tool_calls(conn: &Connection, session_id: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT part_id, json_extract(data, '$.status') FROM parts WHERE session_id = ?1 AND kind = 'tool' \
         AND json_extract(data, '$.status') IN ('pending', 'running') ORDER BY seq",
    )?;
    let rows = stmt.query_map([session_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The tool and input of a recorded call.
pub fn tool_call(conn: &Connection, session_id: &str, call_id: &str) -> Result<Option<(String, serde_json::Value)>> {
    let data: Option<String> = conn
        .prepare_cached("SELECT data FROM parts WHERE session_id = ?1 AND part_id = ?2 AND kind = 'tool'")?
        .query_row(params![session_id, call_id], |r| r.get(0))
        .optional()?;
    let Some(data) = data else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(&data)?;
    Ok(Some((value["tool"].as_str().unwrap_or_default().to_owned(), value["input"].clone())))
}
