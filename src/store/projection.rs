//! Read-model updates, applied inside the append transaction of the event that causes them.
//! Each arm reads the event's persisted payload; types without a read model project nothing.

use keel_protocol::approval::{ApprovalRequestedData, ApprovalResolvedData};
use keel_protocol::event::{SessionCreatedData, SessionUpdatedData};
use keel_protocol::input::ContentPart;
use keel_protocol::turn::{
    ActivityClosedData, ActivityOpenedData, InputAdmittedData, InputPromotedData, InputRemovedData, PartCompletedData,
    StatusData, ToolCalledData, ToolCompletedData, ToolFailedData, ToolStartedData, TurnCompletedData,
};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Event, Result};

pub(super) const SESSION_CREATED: &str = "session.created";

fn data<T: DeserializeOwned>(event: &Event) -> Result<T> {
    Ok(serde_json::from_str(event.data.get())?)
}

pub(super) fn apply(tx: &Transaction<'_>, event: &Event) -> Result<()> {
    let sid = &event.session_id;
    match event.kind.as_str() {
        SESSION_CREATED => {
            let d: SessionCreatedData = data(event)?;
            tx.prepare_cached(
                "INSERT INTO sessions (id, cwd, title, agent, model, parent_id, head_seq, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            )?
            .execute(params![sid, d.cwd, d.title, d.agent, d.model, d.parent_id, event.seq, event.at])?;
        }
        "session.updated" => {
            let d: SessionUpdatedData = data(event)?;
            tx.prepare_cached(
                "UPDATE sessions SET title = coalesce(?2, title), agent = coalesce(?3, agent), \
                 model = coalesce(?4, model) WHERE id = ?1",
            )?
            .execute(params![sid, d.title, d.agent, d.model])?;
        }
        "session.deleted" => {
            for table in ["DELETE FROM sessions WHERE id = ?1", "DELETE FROM events WHERE session_id = ?1"] {
                tx.prepare_cached(table)?.execute([sid])?;
            }
            for table in [
                "DELETE FROM inputs WHERE session_id = ?1",
                "DELETE FROM parts WHERE session_id = ?1",
                "DELETE FROM approvals WHERE session_id = ?1",
            ] {
                tx.prepare_cached(table)?.execute([sid])?;
            }
        }
        "session.status" => {
            let d: StatusData = data(event)?;
            let status = serde_json::to_value(d.status)?;
            tx.prepare_cached("UPDATE sessions SET status = ?2 WHERE id = ?1")?
                .execute(params![sid, status.as_str().unwrap_or("idle")])?;
        }
        "input.admitted" => {
            let d: InputAdmittedData = data(event)?;
            let delivery = serde_json::to_value(d.delivery)?;
            let disposition = serde_json::to_value(d.disposition)?;
            tx.prepare_cached(
                "INSERT INTO inputs (session_id, input_id, admitted_seq, delivery, disposition, content, agent, model, \
                 fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                sid,
                d.input_id,
                event.seq,
                delivery.as_str().unwrap_or("queue"),
                disposition.as_str().unwrap_or("queued"),
                serde_json::to_string(&d.input)?,
                d.agent,
                d.model,
                d.fingerprint(),
            ])?;
            // A prompt restarts a queue that an interrupt paused.
            tx.prepare_cached("UPDATE sessions SET queue_paused = 0 WHERE id = ?1")?.execute([sid])?;
        }
        "input.removed" => {
            let d: InputRemovedData = data(event)?;
            tx.prepare_cached("UPDATE inputs SET state = 'removed' WHERE session_id = ?1 AND input_id = ?2")?
                .execute(params![sid, d.input_id])?;
        }
        "input.promoted" => {
            let d: InputPromotedData = data(event)?;
            let mut idx = 0;
            for input_id in &d.input_ids {
                let content: Option<String> = tx
                    .prepare_cached("SELECT content FROM inputs WHERE session_id = ?1 AND input_id = ?2")?
                    .query_row(params![sid, input_id], |r| r.get(0))
                    .optional()?;
                tx.prepare_cached(
                    "UPDATE inputs SET state = 'promoted', promoted_seq = ?3 WHERE session_id = ?1 AND input_id = ?2",
                )?
                .execute(params![sid, input_id, event.seq])?;
                let parts: Vec<ContentPart> = serde_json::from_str(content.as_deref().unwrap_or("[]"))?;
                for part in parts {
                    let part_id = format!("{}.{idx}", d.message_id);
                    let (kind, value) = match part {
                        ContentPart::Text { text } => ("text", json!({ "type": "text", "id": part_id, "text": text })),
                        ContentPart::File { path, range } => {
                            ("file", json!({ "type": "file", "id": part_id, "path": path, "range": range }))
                        }
                        ContentPart::Image { mime, data_base64 } => (
                            "image",
                            json!({ "type": "image", "id": part_id, "mime": mime, "dataBase64": data_base64 }),
                        ),
                    };
                    insert_part(tx, event, idx, &d.message_id, "user", &part_id, kind, &value)?;
                    idx += 1;
                }
            }
        }
        "activity.opened" => {
            let d: ActivityOpenedData = data(event)?;
            tx.prepare_cached("UPDATE sessions SET active_activity = ?2 WHERE id = ?1")?
                .execute(params![sid, d.activity_id])?;
        }
        "activity.closed" => {
            // The pause of an interrupt is its own event (`queue.paused`), recorded when the interrupt happens.
            let _: ActivityClosedData = data(event)?;
            tx.prepare_cached("UPDATE sessions SET active_activity = NULL WHERE id = ?1")?.execute([sid])?;
        }
        "queue.paused" => {
            tx.prepare_cached("UPDATE sessions SET queue_paused = 1 WHERE id = ?1")?.execute([sid])?;
        }
        "queue.resumed" => {
            tx.prepare_cached("UPDATE sessions SET queue_paused = 0 WHERE id = ?1")?.execute([sid])?;
        }
        kind @ ("text.completed" | "reasoning.completed") => {
            let d: PartCompletedData = data(event)?;
            let kind = if kind == "text.completed" { "text" } else { "reasoning" };
            let value = json!({ "type": kind, "id": d.part_id, "text": d.text });
            insert_part(tx, event, 0, &d.message_id, "assistant", &d.part_id, kind, &value)?;
        }
        "tool.called" => {
            let d: ToolCalledData = data(event)?;
            let value =
                json!({ "type": "tool", "callId": d.call_id, "tool": d.tool, "input": d.input, "status": "pending" });
            insert_part(tx, event, 0, &d.message_id, "assistant", &d.call_id, "tool", &value)?;
        }
        "tool.started" => {
            let d: ToolStartedData = data(event)?;
            update_tool(tx, sid, &d.call_id, "running", None, None)?;
        }
        "tool.completed" => {
            let d: ToolCompletedData = data(event)?;
            update_tool(tx, sid, &d.call_id, "completed", Some(&d.output), None)?;
        }
        "tool.failed" => {
            let d: ToolFailedData = data(event)?;
            update_tool(tx, sid, &d.call_id, "failed", None, Some(&d.error))?;
        }
        "turn.completed" => {
            let d: TurnCompletedData = data(event)?;
            let u = &d.usage;
            tx.prepare_cached(
                "UPDATE sessions SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3, \
                 reasoning_tokens = reasoning_tokens + ?4, cache_read_tokens = cache_read_tokens + ?5, \
                 cache_write_tokens = cache_write_tokens + ?6, cost_usd = cost_usd + ?7 WHERE id = ?1",
            )?
            .execute(params![
                sid,
                u.input_tokens,
                u.output_tokens,
                u.reasoning_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                d.cost_usd
            ])?;
        }
        "approval.requested" => {
            let d: ApprovalRequestedData = data(event)?;
            tx.prepare_cached(
                "INSERT INTO approvals (session_id, approval_id, call_id, tool, action, resources, title, requested_seq) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                sid,
                d.approval_id,
                d.call_id,
                d.tool,
                d.action,
                serde_json::to_string(&d.resources)?,
                d.title,
                event.seq
            ])?;
        }
        "approval.resolved" => {
            let d: ApprovalResolvedData = data(event)?;
            tx.prepare_cached(
                "UPDATE approvals SET state = 'resolved', decision = ?3, message = ?4 \
                 WHERE session_id = ?1 AND approval_id = ?2",
            )?
            .execute(params![sid, d.approval_id, d.decision, d.message])?;
            if d.decision == "always" {
                // The project is the session's workspace; its rules outlive the session.
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO project_rules (project, action, pattern, created_at) \
                     SELECT s.cwd, a.action, \
                            replace(replace(replace(r.value, '\\', '\\\\'), '*', '\\*'), '?', '\\?'), ?3 \
                     FROM approvals a, json_each(a.resources) r, sessions s \
                     WHERE a.session_id = ?1 AND a.approval_id = ?2 AND s.id = ?1",
                )?
                .execute(params![sid, d.approval_id, event.at])?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_part(
    tx: &Transaction<'_>,
    event: &Event,
    idx: u32,
    message_id: &str,
    role: &str,
    part_id: &str,
    kind: &str,
    value: &serde_json::Value,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO parts (session_id, seq, idx, message_id, role, part_id, kind, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![event.session_id, event.seq, idx, message_id, role, part_id, kind, value.to_string()])?;
    Ok(())
}

fn update_tool(
    tx: &Transaction<'_>,
    session_id: &str,
    call_id: &str,
    status: &str,
    output: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE parts SET data = json_set(data, '$.status', ?3, '$.output', ?4, '$.error', ?5) \
         WHERE session_id = ?1 AND part_id = ?2 AND kind = 'tool'",
    )?
    .execute(params![session_id, call_id, status, output, error])?;
    Ok(())
}
