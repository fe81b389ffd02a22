//! `session/create|list|get|update|fork|delete`, and the conversion of the session read model to the wire.

use std::sync::Arc;

use keel_protocol::Empty;
use keel_protocol::input::PendingInput;
use keel_protocol::session::{
    ContextUsage, Session, SessionCreateParams, SessionForkParams, SessionGetResult, SessionIdParams,
    SessionListParams, SessionListResult, SessionResult, SessionUpdateParams, Usage,
};
use keel_protocol::turn::{MessagesParams, MessagesResult};

use super::ApiError;
use crate::engine::Engine;
use crate::rpc::Call;
use crate::session::service::{NewSession, SessionChanges, encode_cursor};
use crate::session::usage::ContextFigures;
use crate::store::{SessionFilter, SessionRow};

const DEFAULT_PAGE: usize = 50;
const DEFAULT_MESSAGES: usize = 100;
const MAX_MESSAGES: usize = 500;

pub async fn create(engine: Arc<Engine>, p: SessionCreateParams, _: Call) -> Result<SessionResult, ApiError> {
    if let Some(model) = &p.model {
        check_model(&engine, Some(&p.cwd), model)?;
    }
    let new = NewSession { cwd: p.cwd, title: p.title, agent: p.agent, model: p.model, parent_id: p.parent_id };
    let session = engine.sessions.create(new)?;
    engine.watch_project(std::path::Path::new(&session.cwd));
    Ok(SessionResult { session: to_wire(session) })
}

pub async fn list(engine: Arc<Engine>, p: Option<SessionListParams>, _: Call) -> Result<SessionListResult, ApiError> {
    let p = p.unwrap_or_default();
    let limit = p.limit.map_or(DEFAULT_PAGE, |l| l as usize);
    let filter =
        SessionFilter { cwd: p.cwd.as_deref(), parent_id: p.parent_id.as_deref(), roots: p.roots.unwrap_or(false) };
    let page = engine.sessions.list(&filter, p.cursor.as_deref(), limit)?;
    Ok(SessionListResult {
        sessions: page.sessions.into_iter().map(to_wire).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    })
}

pub async fn get(engine: Arc<Engine>, p: SessionIdParams, _: Call) -> Result<SessionGetResult, ApiError> {
    let row = engine.sessions.get(&p.session_id)?;
    let context = context_usage(engine.context_figures(&row).map_err(crate::session::Error::from)?);
    let head_seq = row.head_seq;
    let queue_paused = row.queue_paused;
    let session = to_wire(row);
    let pending = engine.pending_inputs(&p.session_id)?;
    let pending_inputs = pending
        .into_iter()
        .map(|i| PendingInput {
            input: serde_json::from_str(&i.content).unwrap_or_default(),
            delivery: i.delivery,
            input_id: i.input_id,
            admitted_seq: i.admitted_seq,
        })
        .collect();
    Ok(SessionGetResult {
        status: session.status,
        session,
        head_seq,
        pending_inputs,
        queue_paused,
        pending_approvals: engine.pending_approvals(&p.session_id)?.into_iter().map(super::approval::to_wire).collect(),
        context,
        running_jobs: engine
            .jobs(Some(&p.session_id), true)
            .map_err(crate::session::Error::from)?
            .into_iter()
            .map(super::job::to_wire)
            .collect(),
    })
}

pub async fn messages(engine: Arc<Engine>, p: MessagesParams, _: Call) -> Result<MessagesResult, ApiError> {
    engine.sessions.get(&p.session_id)?;
    let limit = p.limit.map_or(DEFAULT_MESSAGES, |l| l as usize).clamp(1, MAX_MESSAGES);
    let after = match p.cursor.as_deref() {
        Some(c) => {
            c.parse::<u64>().map_err(|_| ApiError::invalid("cursor", "not a cursor returned by session/messages"))?
        }
        None => 0,
    };
    let page = engine.messages(&p.session_id, after, limit)?;
    Ok(MessagesResult { messages: page.messages, next_cursor: page.next.map(|seq| seq.to_string()) })
}

pub async fn update(engine: Arc<Engine>, p: SessionUpdateParams, _: Call) -> Result<SessionResult, ApiError> {
    if let Some(model) = &p.model {
        let cwd = engine.sessions.get(&p.session_id)?.cwd;
        check_model(&engine, Some(&cwd), model)?;
    }
    let changes =
        SessionChanges { title: p.title, agent: p.agent, model: p.model, reasoning_effort: p.reasoning_effort };
    Ok(SessionResult { session: to_wire(engine.sessions.update(&p.session_id, changes)?) })
}

pub async fn fork(engine: Arc<Engine>, p: SessionForkParams, _: Call) -> Result<SessionResult, ApiError> {
    Ok(SessionResult { session: to_wire(engine.sessions.fork(&p.session_id, p.at_seq)?) })
}

pub async fn delete(engine: Arc<Engine>, p: SessionIdParams, _: Call) -> Result<Empty, ApiError> {
    engine.interrupt(&p.session_id);
    engine.sessions.delete(&p.session_id)?;
    Ok(Empty {})
}

fn to_wire(row: SessionRow) -> Session {
    Session {
        usage: usage(&row),
        id: row.id,
        cwd: row.cwd,
        title: row.title,
        agent: row.agent,
        model: row.model,
        parent_id: row.parent_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
        status: row.status,
        reasoning_effort: row.reasoning_effort,
    }
}

/// The session's totals so far.
pub fn usage(row: &SessionRow) -> Usage {
    Usage {
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        reasoning_tokens: row.reasoning_tokens,
        cache_read_tokens: row.cache_read_tokens,
        cache_write_tokens: row.cache_write_tokens,
        cost_usd: row.cost_usd,
        estimated: false,
    }
}

pub fn context_usage(figures: ContextFigures) -> ContextUsage {
    ContextUsage {
        tokens: figures.tokens,
        window: figures.window,
        compact_at: figures.compact_at,
        share: figures.share(),
    }
}

/// A model must name a provider the engine knows; its availability is checked when a turn runs.
pub fn check_model(engine: &Engine, cwd: Option<&str>, model: &str) -> Result<(), ApiError> {
    engine.check_model(cwd, model).map_err(|e| ApiError::Unavailable(e.to_string()))
}
