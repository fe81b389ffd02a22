//! Subagents: a `task` call runs its job as a prompt of a child session (`parentId` set, the chosen agent), which
//! the coordinator drains like any other session. The parent's log links to it with `subagent.started` and
//! `subagent.completed`; an interrupt of the call interrupts the child.

use std::collections::HashMap;
use std::sync::Weak;

use keel_protocol::agent::{SubagentCompletedData, SubagentStartedData};
use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery, InputKind};
use keel_protocol::turn::CloseReason;
use parking_lot::Mutex;

use super::{Engine, tool_failed as failed};
use crate::provider::BoxFuture;
use crate::session::inbox::NewInput;
use crate::session::prompt::Step;
use crate::session::service::NewSession;
use crate::tool::task::{Delegate, Job};
use crate::tool::{ToolContext, ToolError, ToolOutput};

/// How deep subagents may nest: a session, its child, and the child's child.
pub const MAX_DEPTH: usize = 2;
/// Children of one session running at once.
pub const MAX_RUNNING: usize = 4;

pub struct Subagents {
    engine: Weak<Engine>,
    /// Running children per parent session.
    running: Mutex<HashMap<String, usize>>,
}

impl Subagents {
    pub fn new(engine: Weak<Engine>) -> Self {
        Self { engine, running: Mutex::default() }
    }
}

/// Gives the parent's slot back however the job ends.
struct Slot<'a> {
    running: &'a Mutex<HashMap<String, usize>>,
    parent: String,
}

impl Drop for Slot<'_> {
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
            let _slot = {
                let mut running = self.running.lock();
                let n = running.entry(parent.id.clone()).or_default();
                if *n >= MAX_RUNNING {
                    return Err(failed(format!("{MAX_RUNNING} subagents already run for this session; wait for one")));
                }
                *n += 1;
                Slot { running: &self.running, parent: parent.id.clone() }
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
                input: vec![ContentPart::Text { text: job.prompt }],
                agent: None,
                model: None,
                kind: InputKind::Prompt,
            };
            let mut run = engine.prompt(&child.id, input).map_err(|e| failed(e.to_string()))?;
            let mut answer = None;
            let mut interrupted = false;
            let outcome = loop {
                let step = tokio::select! {
                    step = run.next() => step.map_err(|e| failed(e.to_string()))?,
                    () = ctx.cancel.cancelled(), if !interrupted => {
                        interrupted = true;
                        engine.interrupt(&child.id);
                        continue;
                    }
                };
                match step {
                    Step::Event { body: EventBody::TextCompleted(d), ours: true, .. } => answer = Some(d.text),
                    Step::Closed(outcome) => break outcome,
                    // The child's approvals reach the parent's clients through their own notices.
                    _ => {}
                }
            };
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
