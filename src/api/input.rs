//! `session/prompt|resume|interrupt|queue/remove` and `recovery/decide`: record durably, then wake the session's
//! drain. `session/shell`: the user's own command, recorded for the model's next turn.

use std::sync::Arc;

use keel_protocol::Empty;
use keel_protocol::compaction::{CompactParams, CompactResult};
use keel_protocol::input::{
    Delivery, InputKind, InterruptResult, PromptParams, PromptResult, QueueRemoveParams, QueueRemoveResult,
    ResumeResult,
};
use keel_protocol::recovery::RecoveryDecideParams;
use keel_protocol::session::SessionIdParams;
use keel_protocol::shell::{ShellParams, ShellResult};

use super::ApiError;
use super::session::check_model;
use crate::engine::Engine;
use crate::rpc::Call;
use crate::session::inbox::NewInput;
use crate::session::runner::Mode;

pub async fn prompt(engine: Arc<Engine>, p: PromptParams, _: Call) -> Result<PromptResult, ApiError> {
    let session = engine.sessions.get(&p.session_id)?;
    if let Some(model) = &p.model {
        check_model(&engine, Some(&session.cwd), model)?;
    }
    let new = NewInput {
        input_id: p.input_id,
        delivery: p.delivery,
        input: p.input,
        agent: p.agent,
        model: p.model,
        kind: InputKind::Prompt,
    };
    Ok(prompt_result(engine.admit(&p.session_id, new)?))
}

/// An admission's receipt on the wire.
pub(super) fn prompt_result(receipt: crate::session::inbox::Receipt) -> PromptResult {
    PromptResult {
        input_id: receipt.input_id,
        delivery: receipt.delivery,
        disposition: receipt.disposition,
        admitted_seq: receipt.admitted_seq,
    }
}

/// A compaction is an inbox item like a prompt, so that it runs in order with the prompts around it.
pub async fn compact(engine: Arc<Engine>, p: CompactParams, _: Call) -> Result<CompactResult, ApiError> {
    engine.sessions.get(&p.session_id)?;
    let new = NewInput {
        input_id: None,
        delivery: Delivery::Queue,
        input: Vec::new(),
        agent: None,
        model: None,
        kind: InputKind::Compact,
    };
    let receipt = engine.admit(&p.session_id, new)?;
    Ok(CompactResult { input_id: receipt.input_id, admitted_seq: receipt.admitted_seq })
}

pub async fn resume(engine: Arc<Engine>, p: SessionIdParams, _: Call) -> Result<ResumeResult, ApiError> {
    engine.sessions.get(&p.session_id)?;
    Ok(ResumeResult { started: engine.wake(&p.session_id, Mode::Run) })
}

pub async fn interrupt(engine: Arc<Engine>, p: SessionIdParams, _: Call) -> Result<InterruptResult, ApiError> {
    engine.sessions.get(&p.session_id)?;
    Ok(InterruptResult { interrupted: engine.interrupt(&p.session_id) })
}

pub async fn queue_remove(engine: Arc<Engine>, p: QueueRemoveParams, _: Call) -> Result<QueueRemoveResult, ApiError> {
    Ok(QueueRemoveResult { removed: engine.remove_input(&p.session_id, &p.input_id)? })
}

pub async fn decide(engine: Arc<Engine>, p: RecoveryDecideParams, _: Call) -> Result<Empty, ApiError> {
    engine.decide_recovery(&p.session_id, p.decision)?;
    Ok(Empty {})
}

pub async fn shell(engine: Arc<Engine>, p: ShellParams, _: Call) -> Result<ShellResult, ApiError> {
    if p.command.trim().is_empty() {
        return Err(ApiError::invalid("command", "empty"));
    }
    let run = engine.shell(&p.session_id, p.command, p.timeout_ms).await?;
    Ok(ShellResult { shell_id: run.shell_id, output: run.output, exit_code: run.exit_code, seq: run.seq })
}
