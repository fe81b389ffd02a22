//! `todowrite`: the model keeps a visible plan. The list lives in the call's input, so the event log is its history.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolContext, ToolError, ToolOutput, TypedTool};
use crate::provider::BoxFuture;

pub struct TodoWrite;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The whole list, replacing the previous one.
    todos: Vec<Todo>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Todo {
    content: String,
    status: Status,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Status {
    Pending,
    InProgress,
    Completed,
}

impl TypedTool for TodoWrite {
    fn idempotent(&self) -> bool {
        true
    }

    type Input = Input;

    fn name(&self) -> &'static str {
        "todowrite"
    }

    fn description(&self) -> &'static str {
        "Write the task list for the current work: the whole list each time, with each item pending, in_progress or \
         completed. Use it to plan multi-step work and show progress."
    }

    fn execute<'a>(&'a self, input: Self::Input, _: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let done = input.todos.iter().filter(|t| matches!(t.status, Status::Completed)).count();
            let mut output = format!("{done}/{} done\n", input.todos.len());
            for todo in &input.todos {
                let mark = match todo.status {
                    Status::Pending => "[ ]",
                    Status::InProgress => "[~]",
                    Status::Completed => "[x]",
                };
                output.push_str(&format!("{mark} {}\n", todo.content));
            }
            Ok(ToolOutput { output, truncated: false })
        })
    }
}
