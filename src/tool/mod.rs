//! Tools the model can call. A `Tool` validates its own input and returns text for the model; the runner records
//! the call and its outcome as events and runs the calls of one turn concurrently.

mod file;
pub mod fs;
pub mod matching;
pub mod output;
pub mod patch;
pub mod search;
mod shell;
mod todo;
mod web;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::permission::Access;
use crate::provider::{BoxFuture, ToolSpec};

/// What a tool runs with.
#[derive(Clone)]
pub struct ToolContext {
    pub session_id: String,
    pub call_id: String,
    pub cwd: PathBuf,
    /// Where this session's saved outputs live (`output`).
    pub output_dir: PathBuf,
    /// Cancelled when the activity is interrupted; long tools must stop.
    pub cancel: CancellationToken,
    /// How processes the tool starts are confined.
    pub sandbox: std::sync::Arc<crate::sandbox::Policy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub output: String,
    pub truncated: bool,
}

/// A failure the model sees as the call's result; never a crash.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("invalid input for {tool}: {message}")]
    InvalidInput { tool: String, message: String },
    #[error("unknown tool {0:?}")]
    Unknown(String),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
}

pub trait Tool: Send + Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn input_schema(&self) -> Value;

    /// What a call touches, for the permission check; by default the tool's own name on everything.
    fn access(&self, input: &Value, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let _ = (input, ctx);
        Ok(vec![Access { action: self.name(), resources: vec!["*".into()] }])
    }

    /// True for tools that bound and page their own output (`read`): the output store leaves it alone.
    fn pages_itself(&self) -> bool {
        false
    }

    fn run<'a>(&'a self, input: Value, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

/// Parses a tool's input with its serde type, as a tool error the model can act on.
pub fn parse_input<T: serde::de::DeserializeOwned>(tool: &str, input: Value) -> Result<T, ToolError> {
    serde_json::from_value(input).map_err(|e| ToolError::InvalidInput { tool: tool.to_owned(), message: e.to_string() })
}

/// The JSON Schema of a tool's input type, inlined as providers expect.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    let mut schema = serde_json::to_value(settings.into_generator().into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    schema
}

#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<&'static str, Arc<dyn Tool>>,
}

impl Registry {
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.add(Arc::new(todo::TodoWrite));
        registry.add(Arc::new(file::Read));
        registry.add(Arc::new(file::Write));
        registry.add(Arc::new(file::Edit));
        registry.add(Arc::new(file::ApplyPatch));
        registry.add(Arc::new(shell::Bash));
        registry.add(Arc::new(web::WebFetch::new()));
        registry.add(Arc::new(search::Grep));
        registry.add(Arc::new(search::Glob));
        registry.add(Arc::new(search::List));
        registry
    }

    pub fn add(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.name(), tool);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .values()
            .map(|t| ToolSpec {
                name: t.name().into(),
                description: t.description().into(),
                input_schema: t.input_schema(),
            })
            .collect()
    }

    /// Runs a call: unknown tools and bad input become errors for the model. Tools watch `ctx.cancel` themselves,
    /// so that they clean up (kill a process group) before returning.
    pub async fn run(&self, name: &str, input: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError> {
        let tool = self.get(name).ok_or_else(|| ToolError::Unknown(name.to_owned()))?;
        tool.run(input, ctx).await
    }
}
