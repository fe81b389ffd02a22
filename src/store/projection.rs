//! Read-model updates, applied inside the append transaction of the event that causes them.
//! One function per event kind; `apply` matches the catalogue exhaustively, so a new kind must say what it projects.

use keel_protocol::approval::{ApprovalRequestedData, ApprovalResolvedData, Resolved};
use keel_protocol::catalogue::EventBody;
use keel_protocol::compaction::CompactionCompletedData;
use keel_protocol::event::{SessionCreatedData, SessionUpdatedData};
use keel_protocol::input::ContentPart;
use keel_protocol::session::Usage;
use keel_protocol::turn::{InputAdmittedData, InputPromotedData, PartCompletedData, ToolCalledData, TurnCompletedData};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::json;

use super::{Event, Result, column};

/// Where an event lands: its session, seq and commit time.
struct At<'a> {
    sid: &'a str,
    seq: u64,
    time: i64,
}

pub(super) fn apply(tx: &Transaction<'_>, event: &Event, body: &EventBody) -> Result<()> {
    let at = At { sid: &event.session_id, seq: event.seq, time: event.at };
    match body {
        EventBody::SessionCreated(d) => session_created(tx, &at, d),
        EventBody::SessionUpdated(d) => session_updated(tx, &at, d),
        EventBody::SessionDeleted(_) => session_deleted(tx, &at),
        EventBody::SessionStatus(d) => set_session(tx, &at, "status", column::text(&d.status)?),
        EventBody::InputAdmitted(d) => input_admitted(tx, &at, d),
        EventBody::InputRemoved(d) => {
            tx.prepare_cached("UPDATE inputs SET state = 'removed' WHERE session_id = ?1 AND input_id = ?2")?
                .execute(params![at.sid, d.input_id])?;
            Ok(())
        }
        EventBody::InputPromoted(d) => input_promoted(tx, &at, d),
        EventBody::ActivityOpened(d) => set_session(tx, &at, "active_activity", Some(d.activity_id.as_str())),
        // The pause of an interrupt is its own event (`queue.paused`), recorded when the interrupt happens.
        EventBody::ActivityClosed(_) => set_session(tx, &at, "active_activity", None::<&str>),
        EventBody::QueuePaused(_) => set_session(tx, &at, "queue_paused", true),
        EventBody::QueueResumed(_) => set_session(tx, &at, "queue_paused", false),
        EventBody::TextCompleted(d) => part_completed(tx, &at, "text", d),
        EventBody::ReasoningCompleted(d) => part_completed(tx, &at, "reasoning", d),
        EventBody::ToolCalled(d) => tool_called(tx, &at, d),
        EventBody::ToolStarted(d) => update_tool(tx, &at, &d.call_id, "running", None, None),
        EventBody::ToolCompleted(d) => update_tool(tx, &at, &d.call_id, "completed", Some(&d.output), None),
        EventBody::ToolFailed(d) => update_tool(tx, &at, &d.call_id, "failed", None, Some(&d.error)),
        EventBody::TurnCompleted(d) => turn_completed(tx, &at, d),
        EventBody::TurnStarted(_) => set_session(tx, &at, "turn_seq", at.seq),
        EventBody::CompactionCompleted(d) => compaction_completed(tx, &at, d),
        EventBody::ApprovalRequested(d) => approval_requested(tx, &at, d),
        EventBody::ApprovalResolved(d) => approval_resolved(tx, &at, d),
        // Recorded for clients; no read model follows them.
        // Recovery reads the open activity's events from the log itself.
        EventBody::TurnFailed(_)
        | EventBody::RetryScheduled(_)
        | EventBody::TurnDispatched(_)
        | EventBody::TurnStreamed(_)
        | EventBody::ActivitySuspended(_)
        | EventBody::ActivityResumed(_)
        | EventBody::RecoveryRequired(_)
        | EventBody::RecoveryResolved(_)
        | EventBody::CompactionStarted(_)
        | EventBody::CompactionFailed(_) => Ok(()),
    }
}

fn session_created(tx: &Transaction<'_>, at: &At<'_>, d: &SessionCreatedData) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO sessions (id, cwd, title, agent, model, parent_id, head_seq, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![at.sid, d.cwd, d.title, d.agent, d.model, d.parent_id, at.seq, at.time])?;
    Ok(())
}

fn session_updated(tx: &Transaction<'_>, at: &At<'_>, d: &SessionUpdatedData) -> Result<()> {
    tx.prepare_cached(
        "UPDATE sessions SET title = coalesce(?2, title), agent = coalesce(?3, agent), \
         model = coalesce(?4, model) WHERE id = ?1",
    )?
    .execute(params![at.sid, d.title, d.agent, d.model])?;
    Ok(())
}

fn session_deleted(tx: &Transaction<'_>, at: &At<'_>) -> Result<()> {
    for table in [
        "DELETE FROM sessions WHERE id = ?1",
        "DELETE FROM events WHERE session_id = ?1",
        "DELETE FROM inputs WHERE session_id = ?1",
        "DELETE FROM parts WHERE session_id = ?1",
        "DELETE FROM approvals WHERE session_id = ?1",
        "DELETE FROM leases WHERE session_id = ?1",
    ] {
        tx.prepare_cached(table)?.execute([at.sid])?;
    }
    Ok(())
}

/// Sets one column of the session's row; `column` is always one of this module's literals.
fn set_session(tx: &Transaction<'_>, at: &At<'_>, column: &str, value: impl rusqlite::ToSql) -> Result<()> {
    tx.prepare_cached(&format!("UPDATE sessions SET {column} = ?2 WHERE id = ?1"))?.execute(params![at.sid, value])?;
    Ok(())
}

fn input_admitted(tx: &Transaction<'_>, at: &At<'_>, d: &InputAdmittedData) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO inputs (session_id, input_id, admitted_seq, delivery, disposition, content, agent, model, \
         fingerprint, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        at.sid,
        d.input_id,
        at.seq,
        column::text(&d.delivery)?,
        column::text(&d.disposition)?,
        serde_json::to_string(&d.input)?,
        d.agent,
        d.model,
        d.fingerprint(),
        column::text(&d.kind)?,
    ])?;
    // A prompt restarts a queue that an interrupt paused.
    set_session(tx, at, "queue_paused", false)
}

fn input_promoted(tx: &Transaction<'_>, at: &At<'_>, d: &InputPromotedData) -> Result<()> {
    let mut idx = 0;
    for input_id in &d.input_ids {
        let content: Option<String> = tx
            .prepare_cached("SELECT content FROM inputs WHERE session_id = ?1 AND input_id = ?2")?
            .query_row(params![at.sid, input_id], |r| r.get(0))
            .optional()?;
        tx.prepare_cached(
            "UPDATE inputs SET state = 'promoted', promoted_seq = ?3 WHERE session_id = ?1 AND input_id = ?2",
        )?
        .execute(params![at.sid, input_id, at.seq])?;
        let parts: Vec<ContentPart> = serde_json::from_str(content.as_deref().unwrap_or("[]"))?;
        for part in parts {
            let part_id = format!("{}.{idx}", d.message_id);
            let (kind, value) = match part {
                ContentPart::Text { text } => ("text", json!({ "type": "text", "id": part_id, "text": text })),
                ContentPart::File { path, range } => {
                    ("file", json!({ "type": "file", "id": part_id, "path": path, "range": range }))
                }
                ContentPart::Image { mime, data_base64 } => {
                    ("image", json!({ "type": "image", "id": part_id, "mime": mime, "dataBase64": data_base64 }))
                }
            };
            let part = Part { idx, message_id: &d.message_id, role: "user", part_id: &part_id, kind };
            insert_part(tx, at, &part, &value)?;
            idx += 1;
        }
    }
    Ok(())
}

fn part_completed(tx: &Transaction<'_>, at: &At<'_>, kind: &str, d: &PartCompletedData) -> Result<()> {
    let value = json!({ "type": kind, "id": d.part_id, "text": d.text });
    let part = Part { idx: 0, message_id: &d.message_id, role: "assistant", part_id: &d.part_id, kind };
    insert_part(tx, at, &part, &value)
}

fn tool_called(tx: &Transaction<'_>, at: &At<'_>, d: &ToolCalledData) -> Result<()> {
    let value = json!({ "type": "tool", "callId": d.call_id, "tool": d.tool, "input": d.input, "status": "pending" });
    let part = Part { idx: 0, message_id: &d.message_id, role: "assistant", part_id: &d.call_id, kind: "tool" };
    insert_part(tx, at, &part, &value)
}

fn turn_completed(tx: &Transaction<'_>, at: &At<'_>, d: &TurnCompletedData) -> Result<()> {
    add_usage(tx, at, &d.usage, d.cost_usd)?;
    let u = &d.usage;
    tx.prepare_cached(
        "UPDATE sessions SET \
         context_tokens = CASE WHEN ?2 + ?3 + ?4 > 0 THEN ?2 + ?3 + ?4 ELSE context_tokens END, \
         context_seq = CASE WHEN ?2 + ?3 + ?4 > 0 THEN turn_seq ELSE context_seq END WHERE id = ?1",
    )?
    .execute(params![at.sid, u.input_tokens, u.cache_read_tokens, u.cache_write_tokens])?;
    Ok(())
}

/// Adds a request's usage to the session's totals.
fn add_usage(tx: &Transaction<'_>, at: &At<'_>, u: &Usage, cost_usd: f64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE sessions SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3, \
         reasoning_tokens = reasoning_tokens + ?4, cache_read_tokens = cache_read_tokens + ?5, \
         cache_write_tokens = cache_write_tokens + ?6, cost_usd = cost_usd + ?7 WHERE id = ?1",
    )?
    .execute(params![
        at.sid,
        u.input_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        cost_usd
    ])?;
    Ok(())
}

/// A short stand-in for a pruned tool output in the model's context; the log keeps the output itself.
pub const PRUNED_OUTPUT: &str = "[old tool output removed to save context]";

fn compaction_completed(tx: &Transaction<'_>, at: &At<'_>, d: &CompactionCompletedData) -> Result<()> {
    // The new anchor: the compacted context's estimate stands for everything recorded up to here.
    tx.prepare_cached("UPDATE sessions SET context_tokens = ?2, context_seq = ?3 WHERE id = ?1")?.execute(params![
        at.sid,
        d.tokens_after,
        at.seq
    ])?;
    if let Some(usage) = &d.usage {
        add_usage(tx, at, usage, usage.cost_usd)?;
    }
    if let Some(summary) = &d.summary {
        tx.prepare_cached("UPDATE sessions SET checkpoint_seq = ?2, summary = ?3 WHERE id = ?1")?.execute(params![
            at.sid,
            d.checkpoint_seq,
            summary
        ])?;
    }
    for call_id in &d.pruned_calls {
        tx.prepare_cached(
            "UPDATE parts SET data = json_set(data, '$.output', ?3, '$.pruned', json('true')) \
             WHERE session_id = ?1 AND part_id = ?2 AND kind = 'tool'",
        )?
        .execute(params![at.sid, call_id, PRUNED_OUTPUT])?;
    }
    Ok(())
}

fn approval_requested(tx: &Transaction<'_>, at: &At<'_>, d: &ApprovalRequestedData) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO approvals (session_id, approval_id, call_id, tool, action, resources, title, requested_seq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        at.sid,
        d.approval_id,
        d.call_id,
        d.tool,
        d.action,
        serde_json::to_string(&d.resources)?,
        d.title,
        at.seq
    ])?;
    Ok(())
}

fn approval_resolved(tx: &Transaction<'_>, at: &At<'_>, d: &ApprovalResolvedData) -> Result<()> {
    tx.prepare_cached(
        "UPDATE approvals SET state = 'resolved', decision = ?3, message = ?4 \
         WHERE session_id = ?1 AND approval_id = ?2",
    )?
    .execute(params![at.sid, d.approval_id, column::text(&d.decision)?, d.message])?;
    if d.decision == Resolved::Always {
        // The project is the session's workspace; its rules outlive the session.
        tx.prepare_cached(
            "INSERT OR IGNORE INTO project_rules (project, action, pattern, created_at) \
             SELECT s.cwd, a.action, \
                    replace(replace(replace(r.value, '\\', '\\\\'), '*', '\\*'), '?', '\\?'), ?3 \
             FROM approvals a, json_each(a.resources) r, sessions s \
             WHERE a.session_id = ?1 AND a.approval_id = ?2 AND s.id = ?1",
        )?
        .execute(params![at.sid, d.approval_id, at.time])?;
    }
    Ok(())
}

/// Where a part goes in the transcript.
struct Part<'a> {
    idx: u32,
    message_id: &'a str,
    role: &'a str,
    part_id: &'a str,
    kind: &'a str,
}

fn insert_part(tx: &Transaction<'_>, at: &At<'_>, part: &Part<'_>, value: &serde_json::Value) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO parts (session_id, seq, idx, message_id, role, part_id, kind, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        at.sid,
        at.seq,
        part.idx,
        part.message_id,
        part.role,
        part.part_id,
        part.kind,
        value.to_string()
    ])?;
    Ok(())
}

fn update_tool(
    tx: &Transaction<'_>,
    at: &At<'_>,
    call_id: &str,
    status: &str,
    output: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE parts SET data = json_set(data, '$.status', ?3, '$.output', ?4, '$.error', ?5) \
         WHERE session_id = ?1 AND part_id = ?2 AND kind = 'tool'",
    )?
    .execute(params![at.sid, call_id, status, output, error])?;
    Ok(())
}
