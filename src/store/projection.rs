//! Read-model updates, applied inside the append transaction of the event that causes them.
//! One function per event kind; `apply` matches the catalogue exhaustively, so a new kind must say what it projects.

use keel_protocol::approval::{ApprovalRequestedData, ApprovalResolvedData, Resolved};
use keel_protocol::catalogue::EventBody;
use keel_protocol::compaction::CompactionCompletedData;
use keel_protocol::event::{SessionCreatedData, SessionUpdatedData};
use keel_protocol::input::ContentPart;
use keel_protocol::session::Usage;
use keel_protocol::shell::ShellCompletedData;
use keel_protocol::turn::{InputAdmittedData, InputPromotedData, PartCompletedData, ToolCalledData, TurnCompletedData};
use serde_json::json;

use super::db::{Db, ToParam, params};
use super::{Event, Result, column};

/// Where an event lands: its session, seq and commit time.
struct At<'a> {
    sid: &'a str,
    seq: u64,
    time: i64,
}

pub(super) fn apply(tx: &dyn Db, event: &Event, body: &EventBody) -> Result<()> {
    let at = At { sid: &event.session_id, seq: event.seq, time: event.at };
    match body {
        EventBody::SessionCreated(d) => session_created(tx, &at, d),
        EventBody::SessionUpdated(d) => session_updated(tx, &at, d),
        EventBody::SessionDeleted(_) => session_deleted(tx, &at),
        EventBody::SessionStatus(d) => set_session(tx, &at, "status", column::text(&d.status)?),
        EventBody::InputAdmitted(d) => input_admitted(tx, &at, d),
        EventBody::InputRemoved(d) => {
            tx.execute(
                "UPDATE inputs SET state = 'removed' WHERE session_id = ?1 AND input_id = ?2",
                params![at.sid, d.input_id],
            )?;
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
        EventBody::ShellCompleted(d) => shell_completed(tx, &at, d),
        EventBody::ToolCalled(d) => tool_called(tx, &at, d),
        EventBody::ToolStarted(d) => update_tool(tx, &at, &d.call_id, "running", None, None),
        EventBody::ToolCompleted(d) => update_tool(tx, &at, &d.call_id, "completed", Some(&d.output), None),
        EventBody::ToolFailed(d) => update_tool(tx, &at, &d.call_id, "failed", None, Some(&d.error)),
        EventBody::TurnCompleted(d) => turn_completed(tx, &at, d),
        EventBody::TurnStarted(_) => set_session(tx, &at, "turn_seq", at.seq),
        EventBody::CompactionCompleted(d) => compaction_completed(tx, &at, d),
        EventBody::ApprovalRequested(d) => approval_requested(tx, &at, d),
        EventBody::JobStarted(d) => {
            tx.execute(
                "INSERT INTO jobs (job_id, session_id, command, state, host, owner_pid, pid, started_at) \
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7)",
                params![d.job_id, at.sid, d.command, d.host, d.owner_pid, d.pid, at.time],
            )?;
            Ok(())
        }
        EventBody::JobCompleted(d) => job_ended(tx, &at, &d.job_id, "completed", d.exit_code),
        EventBody::JobFailed(d) => job_ended(tx, &at, &d.job_id, "failed", None),
        EventBody::JobCancelled(d) => job_ended(tx, &at, &d.job_id, "cancelled", None),
        EventBody::ApprovalResolved(d) => approval_resolved(tx, &at, d),
        // Recorded for clients; no read model follows them.
        // Recovery reads the open activity's events from the log itself.
        EventBody::TurnFailed(_)
        | EventBody::ShellStarted(_)
        | EventBody::SkillLoaded(_)
        | EventBody::PluginActed(_)
        | EventBody::PluginFailed(_)
        | EventBody::SubagentStarted(_)
        | EventBody::SubagentCompleted(_)
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

fn session_created(tx: &dyn Db, at: &At<'_>, d: &SessionCreatedData) -> Result<()> {
    tx.execute(
        "INSERT INTO sessions (id, cwd, title, agent, model, parent_id, head_seq, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![at.sid, d.cwd, d.title, d.agent, d.model, d.parent_id, at.seq, at.time],
    )?;
    Ok(())
}

fn session_updated(tx: &dyn Db, at: &At<'_>, d: &SessionUpdatedData) -> Result<()> {
    let effort = d.reasoning_effort.as_ref().map(column::text).transpose()?;
    tx.execute(
        "UPDATE sessions SET title = coalesce(?2, title), agent = coalesce(?3, agent), \
         model = coalesce(?4, model), reasoning_effort = coalesce(?5, reasoning_effort) WHERE id = ?1",
        params![at.sid, d.title, d.agent, d.model, effort],
    )?;
    Ok(())
}

fn session_deleted(tx: &dyn Db, at: &At<'_>) -> Result<()> {
    for table in [
        "DELETE FROM sessions WHERE id = ?1",
        "DELETE FROM events WHERE session_id = ?1",
        "DELETE FROM inputs WHERE session_id = ?1",
        "DELETE FROM parts WHERE session_id = ?1",
        "DELETE FROM approvals WHERE session_id = ?1",
        "DELETE FROM leases WHERE session_id = ?1",
        "DELETE FROM jobs WHERE session_id = ?1",
    ] {
        tx.execute(table, params![at.sid])?;
    }
    Ok(())
}

fn job_ended(tx: &dyn Db, at: &At<'_>, job_id: &str, state: &str, exit_code: Option<i32>) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET state = ?3, exit_code = ?4, ended_at = ?5 WHERE session_id = ?1 AND job_id = ?2",
        params![at.sid, job_id, state, exit_code, at.time],
    )?;
    Ok(())
}

/// Sets one column of the session's row; `column` is always one of this module's literals.
fn set_session(tx: &dyn Db, at: &At<'_>, column: &str, value: impl ToParam) -> Result<()> {
    tx.execute(&format!("UPDATE sessions SET {column} = ?2 WHERE id = ?1"), params![at.sid, value])?;
    Ok(())
}

fn input_admitted(tx: &dyn Db, at: &At<'_>, d: &InputAdmittedData) -> Result<()> {
    tx.execute(
        "INSERT INTO inputs (session_id, input_id, admitted_seq, delivery, disposition, content, agent, model, \
         fingerprint, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
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
        ],
    )?;
    // A prompt restarts a queue that an interrupt paused.
    set_session(tx, at, "queue_paused", false)
}

fn input_promoted(tx: &dyn Db, at: &At<'_>, d: &InputPromotedData) -> Result<()> {
    let mut idx = 0;
    for input_id in &d.input_ids {
        let content: Option<String> =
            tx.value("SELECT content FROM inputs WHERE session_id = ?1 AND input_id = ?2", params![at.sid, input_id])?;
        tx.execute(
            "UPDATE inputs SET state = 'promoted', promoted_seq = ?3 WHERE session_id = ?1 AND input_id = ?2",
            params![at.sid, input_id, at.seq],
        )?;
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

fn part_completed(tx: &dyn Db, at: &At<'_>, kind: &str, d: &PartCompletedData) -> Result<()> {
    let mut value = json!({ "type": kind, "id": d.part_id, "text": d.text });
    if let Some(signature) = &d.signature {
        value["signature"] = signature.as_str().into();
    }
    let part = Part { idx: 0, message_id: &d.message_id, role: "assistant", part_id: &d.part_id, kind };
    insert_part(tx, at, &part, &value)
}

/// A user's command is a message of the user's in the transcript, so the model reads it in its next turn.
fn shell_completed(tx: &dyn Db, at: &At<'_>, d: &ShellCompletedData) -> Result<()> {
    let mut text = format!("I ran this command in the workspace:\n$ {}\n{}", d.command, d.output);
    if let Some(error) = &d.error {
        text.push_str(&format!("\n[{error}]"));
    }
    let value = json!({ "type": "text", "id": d.shell_id, "text": text });
    let part = Part { idx: 0, message_id: &d.shell_id, role: "user", part_id: &d.shell_id, kind: "text" };
    insert_part(tx, at, &part, &value)
}

fn tool_called(tx: &dyn Db, at: &At<'_>, d: &ToolCalledData) -> Result<()> {
    let mut value =
        json!({ "type": "tool", "callId": d.call_id, "tool": d.tool, "input": d.input, "status": "pending" });
    if let Some(provider_call_id) = &d.provider_call_id {
        value["providerCallId"] = provider_call_id.as_str().into();
    }
    let part = Part { idx: 0, message_id: &d.message_id, role: "assistant", part_id: &d.call_id, kind: "tool" };
    insert_part(tx, at, &part, &value)
}

fn turn_completed(tx: &dyn Db, at: &At<'_>, d: &TurnCompletedData) -> Result<()> {
    add_usage(tx, at, &d.usage, d.cost_usd)?;
    let u = &d.usage;
    let prompt = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens;
    if prompt > 0 {
        tx.execute(
            "UPDATE sessions SET context_tokens = ?2, context_seq = turn_seq WHERE id = ?1",
            params![at.sid, prompt],
        )?;
    }
    Ok(())
}

/// Adds a request's usage to the session's totals.
fn add_usage(tx: &dyn Db, at: &At<'_>, u: &Usage, cost_usd: f64) -> Result<()> {
    tx.execute(
        "UPDATE sessions SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3, \
         reasoning_tokens = reasoning_tokens + ?4, cache_read_tokens = cache_read_tokens + ?5, \
         cache_write_tokens = cache_write_tokens + ?6, cost_usd = cost_usd + ?7 WHERE id = ?1",
        params![
            at.sid,
            u.input_tokens,
            u.output_tokens,
            u.reasoning_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            cost_usd
        ],
    )?;
    Ok(())
}

/// A short stand-in for a pruned tool output in the model's context; the log keeps the output itself.
pub const PRUNED_OUTPUT: &str = "[old tool output removed to save context]";

fn compaction_completed(tx: &dyn Db, at: &At<'_>, d: &CompactionCompletedData) -> Result<()> {
    // The new anchor: the compacted context's estimate stands for everything recorded up to here.
    tx.execute(
        "UPDATE sessions SET context_tokens = ?2, context_seq = ?3 WHERE id = ?1",
        params![at.sid, d.tokens_after, at.seq],
    )?;
    if let Some(usage) = &d.usage {
        add_usage(tx, at, usage, usage.cost_usd)?;
    }
    if let Some(summary) = &d.summary {
        tx.execute(
            "UPDATE sessions SET checkpoint_seq = ?2, summary = ?3 WHERE id = ?1",
            params![at.sid, d.checkpoint_seq, summary],
        )?;
    }
    for call_id in &d.pruned_calls {
        edit_tool_part(tx, at, call_id, |part| {
            part.insert("output".into(), PRUNED_OUTPUT.into());
            part.insert("pruned".into(), true.into());
        })?;
    }
    Ok(())
}

fn approval_requested(tx: &dyn Db, at: &At<'_>, d: &ApprovalRequestedData) -> Result<()> {
    tx.execute(
        "INSERT INTO approvals (session_id, approval_id, call_id, tool, action, resources, title, requested_seq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            at.sid,
            d.approval_id,
            d.call_id,
            d.tool,
            d.action,
            serde_json::to_string(&d.resources)?,
            d.title,
            at.seq
        ],
    )?;
    Ok(())
}

fn approval_resolved(tx: &dyn Db, at: &At<'_>, d: &ApprovalResolvedData) -> Result<()> {
    tx.execute(
        "UPDATE approvals SET state = 'resolved', decision = ?3, message = ?4 \
         WHERE session_id = ?1 AND approval_id = ?2",
        params![at.sid, d.approval_id, column::text(&d.decision)?, d.message],
    )?;
    if d.decision == Resolved::Always {
        // The project is the session's workspace; its rules outlive the session.
        let asked = tx.row(
            "SELECT s.cwd, a.action, a.resources FROM approvals a JOIN sessions s ON s.id = a.session_id \
             WHERE a.session_id = ?1 AND a.approval_id = ?2",
            params![at.sid, d.approval_id],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<String>(2)?)),
        )?;
        let Some((project, action, resources)) = asked else { return Ok(()) };
        for resource in serde_json::from_str::<Vec<String>>(&resources)? {
            // A resource is allowed as itself: its glob characters are escaped.
            let pattern = resource.replace('\\', "\\\\").replace('*', "\\*").replace('?', "\\?");
            tx.execute(
                "INSERT INTO project_rules (project, action, pattern, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
                params![project, action, pattern, at.time],
            )?;
        }
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

fn insert_part(tx: &dyn Db, at: &At<'_>, part: &Part<'_>, value: &serde_json::Value) -> Result<()> {
    tx.execute(
        "INSERT INTO parts (session_id, seq, idx, message_id, role, part_id, kind, data, status) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            at.sid,
            at.seq,
            part.idx,
            part.message_id,
            part.role,
            part.part_id,
            part.kind,
            value.to_string(),
            value.get("status").and_then(serde_json::Value::as_str)
        ],
    )?;
    Ok(())
}

fn update_tool(
    tx: &dyn Db,
    at: &At<'_>,
    call_id: &str,
    status: &str,
    output: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    edit_tool_part(tx, at, call_id, |part| {
        part.insert("status".into(), status.into());
        part.insert("output".into(), output.into());
        part.insert("error".into(), error.into());
    })
}

/// Rewrites a tool part's data (and its status column) in place.
fn edit_tool_part(
    tx: &dyn Db,
    at: &At<'_>,
    call_id: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<()> {
    const WHERE: &str = "WHERE session_id = ?1 AND part_id = ?2 AND kind = 'tool'";
    let Some(data) = tx.value::<String>(&format!("SELECT data FROM parts {WHERE}"), params![at.sid, call_id])? else {
        return Ok(());
    };
    let mut part: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&data)?;
    edit(&mut part);
    let status = part.get("status").and_then(serde_json::Value::as_str).map(str::to_owned);
    let data = serde_json::Value::Object(part).to_string();
    tx.execute(&format!("UPDATE parts SET data = ?3, status = ?4 {WHERE}"), params![at.sid, call_id, data, status])?;
    Ok(())
}
