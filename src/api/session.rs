//! `session/create|list|get|update|fork|delete`, and the conversion of the session read model to the wire.

use std::sync::Arc;

use keel_protocol::Empty;
use keel_protocol::session::{
    Session, SessionCreateParams, SessionForkParams, SessionGetResult, SessionIdParams, SessionListParams,
    SessionListResult, SessionResult, SessionStatus, SessionUpdateParams, Usage,
};

use super::ApiError;
use crate::engine::Engine;
use crate::rpc::Call;
use crate::session::service::{NewSession, SessionChanges, encode_cursor};
use crate::store::SessionRow;

const DEFAULT_PAGE: usize = 50;

pub async fn create(engine: Arc<Engine>, p: SessionCreateParams, _: Call) -> Result<SessionResult, ApiError> {
    let new = NewSession { cwd: p.cwd, title: p.title, agent: p.agent, model: p.model, parent_id: p.parent_id };
    Ok(SessionResult { session: to_wire(engine.sessions.create(new)?) })
}

pub async fn list(engine: Arc<Engine>, p: Option<SessionListParams>, _: Call) -> Result<SessionListResult, ApiError> {
    let p = p.unwrap_or_default();
    let limit = p.limit.map_or(DEFAULT_PAGE, |l| l as usize);
    let page = engine.sessions.list(p.cwd.as_deref(), p.cursor.as_deref(), limit)?;
    Ok(SessionListResult {
        sessions: page.sessions.into_iter().map(to_wire).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    })
}

pub async fn get(engine: Arc<Engine>, p: SessionIdParams, _: Call) -> Result<SessionGetResult, ApiError> {
    let row = engine.sessions.get(&p.session_id)?;
    let head_seq = row.head_seq;
    let session = to_wire(row);
    Ok(SessionGetResult {
        status: session.status,
        session,
        head_seq,
        pending_inputs: Vec::new(),
        pending_approvals: Vec::new(),
    })
}

pub async fn update(engine: Arc<Engine>, p: SessionUpdateParams, _: Call) -> Result<SessionResult, ApiError> {
    let changes = SessionChanges { title: p.title, agent: p.agent, model: p.model };
    Ok(SessionResult { session: to_wire(engine.sessions.update(&p.session_id, changes)?) })
}

pub async fn fork(engine: Arc<Engine>, p: SessionForkParams, _: Call) -> Result<SessionResult, ApiError> {
    Ok(SessionResult { session: to_wire(engine.sessions.fork(&p.session_id, p.at_seq)?) })
}

pub async fn delete(engine: Arc<Engine>, p: SessionIdParams, _: Call) -> Result<Empty, ApiError> {
    engine.sessions.delete(&p.session_id)?;
    Ok(Empty {})
}

fn to_wire(row: SessionRow) -> Session {
    let status = match row.status.as_str() {
        "running" => SessionStatus::Running,
        "waiting_approval" => SessionStatus::WaitingApproval,
        "retrying" => SessionStatus::Retrying,
        "recovering" => SessionStatus::Recovering,
        "failed" => SessionStatus::Failed,
        _ => SessionStatus::Idle,
    };
    Session {
        id: row.id,
        cwd: row.cwd,
        title: row.title,
        agent: row.agent,
        model: row.model,
        parent_id: row.parent_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
        status,
        usage: Usage {
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            reasoning_tokens: row.reasoning_tokens,
            cache_read_tokens: row.cache_read_tokens,
            cache_write_tokens: row.cache_write_tokens,
            cost_usd: row.cost_usd,
        },
    }
}
