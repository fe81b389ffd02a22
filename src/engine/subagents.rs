//! Subagents: a `task` call runs its job as a prompt of a child session (`parentId` set, the chosen agent), which
//! the coordinator drains like any other session. The parent's log links to it with `subagent.started` and
//! `subagent.completed`; an interrupt of the call interrupts the child.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use keel_protocol::agent::{SubagentCompletedData, SubagentStartedData};
use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery, InputKind};
use keel_protocol::job::{JobCancelledData, JobCompletedData, JobFailedData, JobStartedData};
use keel_protocol::turn::CloseReason;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Engine, tool_failed as failed};
use crate::provider::BoxFuture;
use crate::session::inbox::NewInput;
use crate::session::prompt::{Outcome, PromptRun, Step};
use crate::session::service::NewSession;
use crate::tool::task::{Delegate, Job};
use crate::tool::{ToolContext, ToolError, ToolOutput};

/// How deep subagents may nest: a session, its child, and the child's child.
pub const MAX_DEPTH: usize = 2;
/// Children of one session running at once.
pub const MAX_RUNNING: usize = 4;

pub struct Subagents {
    engine: Weak<Engine>,
    /// Running children per parent session, shared with the slots of children running in the background.
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl Subagents {
    pub fn new(engine: Weak<Engine>) -> Self {
        Self { engine, running: Arc::default() }
    }
}

/// Gives the parent's slot back however the job ends, also when it ends in the background.
struct Slot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    parent: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock();
        if let Some(n) = running.get_mut(&self.parent) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.parent);
            }
        }
    }
}

impl Delegate for Subagents {
    fn delegate<'a>(&'a self, ctx: &'a ToolContext, job: Job) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let engine = self.engine.upgrade().ok_or_else(|| failed("the engine is stopping"))?;
            let parent = engine.sessions.get(&ctx.session_id).map_err(|e| failed(e.to_string()))?;
            let config = engine.config(Some(&parent.cwd));
            let Some(agent) = config.agents.get(&job.agent).filter(|a| crate::agent::is_subagent(a)) else {
                let names: Vec<&str> = config
                    .agents
                    .iter()
                    .filter(|(_, a)| crate::agent::is_subagent(a))
                    .map(|(n, _)| n.as_str())
                    .collect();
                return Err(ToolError::InvalidInput {
                    tool: "task".into(),
                    message: format!("no subagent named {:?}; the subagents are: {}", job.agent, names.join(", ")),
                });
            };
            if engine.lineage(&parent.id).len() > MAX_DEPTH {
                return Err(failed(format!("subagents nest at most {MAX_DEPTH} deep; do this job yourself")));
            }
            let slot = {
                let mut running = self.running.lock();
                let n = running.entry(parent.id.clone()).or_default();
                if *n >= MAX_RUNNING {
                    return Err(failed(format!("{MAX_RUNNING} subagents already run for this session; wait for one")));
                }
                *n += 1;
                Slot { running: Arc::clone(&self.running), parent: parent.id.clone() }
            };
            let model = agent.model.clone().or_else(|| Some(parent.model.clone()).filter(|m| !m.is_empty()));
            let child = engine
                .sessions
                .create(NewSession {
                    cwd: parent.cwd.clone(),
                    title: Some(job.description.clone()),
                    agent: Some(job.agent.clone()),
                    model,
                    parent_id: Some(parent.id.clone()),
                })
                .map_err(|e| failed(e.to_string()))?;
            let started = SubagentStartedData {
                call_id: ctx.call_id.clone(),
                child_session_id: child.id.clone(),
                agent: job.agent.clone(),
                description: job.description.clone(),
            };
            engine.record_for_tool(&parent.id, EventBody::SubagentStarted(started))?;
            let input = NewInput {
                input_id: None,
                delivery: Delivery::Queue,
                input: vec![ContentPart::Text { text: job.prompt.clone() }],
                agent: None,
                model: None,
                kind: InputKind::Prompt,
            };
            let run = engine.prompt(&child.id, input).map_err(|e| failed(e.to_string()))?;
            if job.background {
                return background(engine, ctx, job, child.id, run, slot);
            }
            let (outcome, answer) = follow(&engine, &child.id, run, &ctx.cancel).await?;
            drop(slot);
            let completed = SubagentCompletedData {
                call_id: ctx.call_id.clone(),
                child_session_id: child.id.clone(),
                reason: outcome.reason,
                answer: answer.clone(),
            };
            engine.record_for_tool(&parent.id, EventBody::SubagentCompleted(completed))?;
            match outcome.reason {
                CloseReason::Completed => Ok(ToolOutput {
                    output: format!(
                        "<task_result session=\"{}\">\n{}\n</task_result>",
                        child.id,
                        answer.unwrap_or_default()
                    ),
                    truncated: false,
                }),
                CloseReason::Interrupted => Err(ToolError::Interrupted),
                CloseReason::TurnLimit => Err(failed(format!(
                    "the subagent stopped at its step limit (session {}); its last answer: {}",
                    child.id,
                    answer.unwrap_or_default()
                ))),
                CloseReason::Failed => Err(failed(format!(
                    "the subagent failed (session {}): {}",
                    child.id,
                    outcome.error.unwrap_or_default()
                ))),
            }
        })
    }
}

/// Follows the child's run to its end (interrupting it when `cancel` fires): how it closed and its last answer.
async fn follow(
    engine: &Engine,
    child_id: &str,
    mut run: PromptRun,
    cancel: &CancellationToken,
) -> Result<(Outcome, Option<String>), ToolError> {
    let mut answer = None;
    let mut interrupted = false;
    loop {
        let step = tokio::select! {
            step = run.next() => step.map_err(|e| failed(e.to_string()))?,
            () = cancel.cancelled(), if !interrupted => {
                interrupted = true;
                engine.interrupt(child_id);
                continue;
            }
        };
        match step {
            Step::Event { body: EventBody::TextCompleted(d), ours: true, .. } => answer = Some(d.text),
            Step::Closed(outcome) => return Ok((outcome, answer)),
            // The child's approvals reach the parent's clients through their own notices.
            _ => {}
        }
    }
}

/// A `task {background: true}`: the child runs as a job of the parent's, which `job/cancel` interrupts; its end is
/// recorded (`subagent.completed`, then the job's end) and delivered into the parent as a message that wakes it.
fn background(
    engine: Arc<Engine>,
    ctx: &ToolContext,
    job: Job,
    child_id: String,
    run: PromptRun,
    slot: Slot,
) -> Result<ToolOutput, ToolError> {
    let job_id = super::jobs::job_id();
    let started = JobStartedData {
        job_id: job_id.clone(),
        call_id: ctx.call_id.clone(),
        command: format!("task {}: {}", job.agent, job.description),
        description: Some(job.description.clone()),
        host: crate::store::lease::host(),
        owner_pid: i64::from(std::process::id()),
        // No process of its own: the child session runs in this engine.
        pid: 0,
    };
    let cancel = engine.jobs.begin(&engine, &ctx.session_id, started)?;
    let (parent_id, call_id, id) = (ctx.session_id.clone(), ctx.call_id.clone(), job_id.clone());
    let child = child_id.clone();
    let agent = job.agent.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let followed = follow(&engine, &child, run, &cancel).await;
        let (reason, answer, error) = match followed {
            Ok((outcome, answer)) => (outcome.reason, answer, outcome.error),
            Err(e) => (CloseReason::Failed, None, Some(e.to_string())),
        };
        let completed =
            SubagentCompletedData { call_id, child_session_id: child.clone(), reason, answer: answer.clone() };
        if let Err(e) = engine.record_for_tool(&parent_id, EventBody::SubagentCompleted(completed)) {
            tracing::error!(session = %parent_id, "recording the end of subagent {child} failed: {e}");
        }
        let what = format!("Background subagent {agent} ({}, session {child})", job.description);
        let (body, text) = match reason {
            CloseReason::Completed => (
                EventBody::JobCompleted(JobCompletedData {
                    job_id: id.clone(),
                    exit_code: Some(0),
                    output: answer.clone().unwrap_or_default(),
                    truncated: false,
                }),
                format!("{what} finished. Its answer:\n{}", answer.unwrap_or_default()),
            ),
            CloseReason::Interrupted if cancel.is_cancelled() => {
                (EventBody::JobCancelled(JobCancelledData { job_id: id.clone() }), format!("{what} was cancelled."))
            }
            other => {
                let why = error.unwrap_or_else(|| keel_protocol::wire_name(&other));
                (
                    EventBody::JobFailed(JobFailedData { job_id: id.clone(), error: why.clone() }),
                    format!("{what} did not finish ({why}). Its last answer:\n{}", answer.unwrap_or_default()),
                )
            }
        };
        engine.jobs.end(&engine, &parent_id, &id, body, text);
    });
    Ok(ToolOutput {
        output: format!(
            "started subagent {} in the background as job {job_id} (session {child_id}); its answer will arrive as \
             a message when it finishes",
            job.agent
        ),
        truncated: false,
    })
}
