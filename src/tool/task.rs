//! `task`: the model hands a self-contained job to a subagent, which runs it in a child session (its own log,
//! linked from the parent by `subagent.started` and `subagent.completed`); the child's last answer is the result.
//! The session layer does the work through `Delegate`, which the engine installs once it exists.

use std::sync::{Arc, OnceLock, Weak};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolContext, ToolError, ToolOutput, TypedTool};
use crate::permission::Access;
use crate::provider::BoxFuture;

/// One delegated job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub agent: String,
    pub description: String,
    pub prompt: String,
    /// Run as a background job: the call answers at once, and the subagent's answer arrives as a message.
    pub background: bool,
}

/// Runs a job in a child session of `ctx.session_id` and answers with the child's last answer. Interrupting the
/// call (`ctx.cancel`) interrupts the child.
pub trait Delegate: Send + Sync {
    fn delegate<'a>(&'a self, ctx: &'a ToolContext, job: Job) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

/// Where the engine puts its `Delegate` once it is built (the tools are built before it).
pub type DelegateSlot = Arc<OnceLock<Weak<dyn Delegate>>>;

pub struct Task {
    delegate: DelegateSlot,
}

impl Task {
    pub fn new(delegate: DelegateSlot) -> Self {
        Self { delegate }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    /// A few words on the job, shown to the user.
    description: String,
    /// The whole job: the subagent sees nothing of this conversation but this text.
    prompt: String,
    /// The subagent to run it (`general` or `explore`, or one the project declares).
    #[serde(alias = "subagent_type")]
    agent: String,
    /// Run it in the background: the call answers at once with a job id, this conversation goes on, and the
    /// subagent's answer arrives as a message when it finishes (`job/cancel` stops it).
    #[serde(default)]
    background: bool,
}

impl TypedTool for Task {
    type Input = Input;

    fn name(&self) -> &'static str {
        "task"
    }

    fn description(&self) -> &'static str {
        "Start a subagent on a self-contained job in a session of its own and wait for its answer. Use it for \
         research across many files or for independent work that would crowd this conversation; give the job in \
         full, as the subagent sees nothing else. Several task calls in one turn run at the same time; with \
         background: true the call answers at once and the answer arrives later as a message."
    }

    fn access(&self, input: Result<&Input, &ToolError>, _: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        Ok(vec![Access { action: "task", resources: vec![input.agent.clone()] }])
    }

    fn execute<'a>(&'a self, input: Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let Some(delegate) = self.delegate.get().and_then(Weak::upgrade) else {
                return Err(ToolError::Failed("subagents are not available in this engine".into()));
            };
            let job = Job {
                agent: input.agent,
                description: input.description,
                prompt: input.prompt,
                background: input.background,
            };
            delegate.delegate(&ctx, job).await
        })
    }
}
