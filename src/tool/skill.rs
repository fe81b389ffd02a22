//! `skill`: loads one skill's instructions (and the list of its files) into the conversation.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolContext, ToolError, ToolOutput, TypedTool};
use crate::agent::skills;
use crate::config::Paths;
use crate::permission::Access;
use crate::provider::BoxFuture;

pub struct Skill {
    paths: Paths,
}

impl Skill {
    pub fn new(paths: Paths) -> Self {
        Self { paths }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The skill's name, as listed in the system prompt.
    name: String,
}

impl TypedTool for Skill {
    type Input = Input;

    fn name(&self) -> &'static str {
        "skill"
    }

    fn description(&self) -> &'static str {
        "Load a skill: its instructions for a kind of task, and the files that come with it. The skills available \
         are listed in the system prompt; load one when the task matches its description."
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn access(&self, input: Result<&Input, &ToolError>, _: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        Ok(vec![Access { action: "skill", resources: vec![input.name.clone()] }])
    }

    fn execute<'a>(&'a self, input: Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let cwd: PathBuf = ctx.cwd.clone();
            let all = skills::discover(&self.paths, Some(&cwd));
            let Some(skill) = all.iter().find(|s| s.name == input.name) else {
                let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                return Err(ToolError::InvalidInput {
                    tool: "skill".into(),
                    message: format!("no skill named {:?}; the skills are: {}", input.name, names.join(", ")),
                });
            };
            let output = skills::load(skill).map_err(|e| ToolError::Failed(format!("cannot read the skill: {e}")))?;
            Ok(ToolOutput { output, truncated: false })
        })
    }
}
