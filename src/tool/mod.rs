//! Tools the model can call. A `Tool` validates its own input and returns text for the model; the runner records
//! the call and its outcome as events and runs the calls of one turn concurrently.

mod file;
pub mod fs;
pub mod matching;
pub mod output;
pub mod patch;
pub mod search;
pub mod shell;
mod skill;
pub mod task;
mod todo;
mod web;

use std::any::Any;
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

/// A tool as the registry and the runner see it. A call's input is decoded once (`decode`), then the same decoded
/// input is checked (`access`) and run (`start`).
pub trait Tool: Send + Sync {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    fn input_schema(&self) -> Value;

    /// True for tools that bound and page their own output (`read`): the output store leaves it alone.
    fn pages_itself(&self) -> bool;

    /// True for tools whose call can run twice with the same effect as once (reads, searches): recovery may send
    /// again a turn that called only these.
    fn idempotent(&self) -> bool;

    /// Decodes a call's input. A bad input is kept, not raised: `access` and `start` report it as the tool's own
    /// error, so the model sees the same result whichever step meets it.
    fn decode(&self, input: Value) -> Decoded;

    /// What a call touches, for the permission check.
    fn access(&self, input: &Decoded, ctx: &ToolContext) -> Result<Vec<Access>, ToolError>;

    fn start<'a>(&'a self, input: Decoded, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;

    /// Decodes and runs, for callers that hold the raw input.
    fn run<'a>(&'a self, input: Value, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        self.start(self.decode(input), ctx)
    }
}

/// A call's input as its tool decoded it; only that tool can read it.
pub struct Decoded(Box<dyn Any + Send + Sync>);

impl Decoded {
    /// For tools that are not `TypedTool`s (MCP's): they decode into their own type.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Box::new(value))
    }

    pub fn take<T: Any>(self) -> Option<T> {
        self.0.downcast::<T>().ok().map(|b| *b)
    }
}

/// A tool written against its own input type; every `TypedTool` is a `Tool`.
pub trait TypedTool: Send + Sync {
    type Input: serde::de::DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static;

    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;

    /// True for tools that bound and page their own output (`read`): the output store leaves it alone.
    fn pages_itself(&self) -> bool {
        false
    }

    /// See `Tool::idempotent`.
    fn idempotent(&self) -> bool {
        false
    }

    /// What a call touches; by default the tool's own name on everything, whatever the input. A tool that reads its
    /// input here reports a bad one as its error.
    fn access(&self, input: Result<&Self::Input, &ToolError>, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let _ = (input, ctx);
        Ok(vec![Access { action: self.name(), resources: vec!["*".into()] }])
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

type DecodedAs<T> = Result<<T as TypedTool>::Input, ToolError>;

/// Only this tool's `decode` makes its `Decoded`; another tool's is a bug, reported as a failed call.
fn foreign(tool: &str) -> ToolError {
    ToolError::Failed(format!("{tool} was handed input decoded by another tool"))
}

impl<T: TypedTool> Tool for T {
    fn name(&self) -> &str {
        TypedTool::name(self)
    }

    fn description(&self) -> &str {
        TypedTool::description(self)
    }

    fn input_schema(&self) -> Value {
        schema_of::<T::Input>()
    }

    fn pages_itself(&self) -> bool {
        TypedTool::pages_itself(self)
    }

    fn idempotent(&self) -> bool {
        TypedTool::idempotent(self)
    }

    fn decode(&self, input: Value) -> Decoded {
        Decoded(Box::new(parse_input::<T::Input>(TypedTool::name(self), input)))
    }

    fn access(&self, input: &Decoded, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let decoded = input.0.downcast_ref::<DecodedAs<T>>().ok_or_else(|| foreign(TypedTool::name(self)))?;
        TypedTool::access(self, decoded.as_ref(), ctx)
    }

    fn start<'a>(&'a self, input: Decoded, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        match input.0.downcast::<DecodedAs<T>>().map(|decoded| *decoded) {
            Ok(Ok(input)) => self.execute(input, ctx),
            Ok(Err(e)) => Box::pin(std::future::ready(Err(e))),
            Err(_) => Box::pin(std::future::ready(Err(foreign(TypedTool::name(self))))),
        }
    }
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

/// Tools that come and go while the engine runs (MCP servers), some of them for one session only.
pub trait ToolSource: Send + Sync {
    /// The tools this source offers to `session_id` now, or to every session when it is `None`.
    fn tools(&self, session_id: Option<&str>) -> Vec<Arc<dyn Tool>>;

    /// Resolves once the tools `session_id` is about to get are known: MCP servers still on their first start are
    /// waited for (each at most its start-up time), so a session's first turn sees the tools of its servers.
    fn settle<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, ()>;
}

#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    sources: Vec<Arc<dyn ToolSource>>,
}

impl Registry {
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.add(Arc::new(todo::TodoWrite));
        registry.add(Arc::new(file::Read));
        registry.add(Arc::new(file::Write));
        registry.add(Arc::new(file::Edit));
        registry.add(Arc::new(file::ApplyPatch));
        registry.add(Arc::new(shell::Bash::new(shell::BackgroundSlot::default())));
        registry.add(Arc::new(web::WebFetch::new()));
        registry.add(Arc::new(search::Grep));
        registry.add(Arc::new(search::Glob));
        registry.add(Arc::new(search::List));
        registry
    }

    /// The built-in tools and those that reach beyond a call's workspace: `skill` (the global skills folder),
    /// `task` (the engine, through `delegate`) and `bash` with its background jobs (through `background`).
    pub fn with_agents(
        paths: &crate::config::Paths,
        delegate: task::DelegateSlot,
        background: shell::BackgroundSlot,
    ) -> Self {
        let mut registry = Self::builtin();
        registry.add(Arc::new(skill::Skill::new(paths.clone())));
        registry.add(Arc::new(task::Task::new(delegate)));
        registry.add(Arc::new(shell::Bash::new(background)));
        registry
    }

    pub fn add(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.name().to_owned(), tool);
    }

    /// Adds tools that are looked up at every turn, after the fixed ones.
    pub fn add_source(&mut self, source: Arc<dyn ToolSource>) {
        self.sources.push(source);
    }

    /// A built-in tool by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    /// A tool as `session_id` sees it: a fixed one first (a source cannot shadow a built-in tool), then the sources'.
    pub fn get_for(&self, session_id: &str, name: &str) -> Option<Arc<dyn Tool>> {
        self.get(name)
            .or_else(|| self.sources.iter().flat_map(|s| s.tools(Some(session_id))).find(|t| t.name() == name))
    }

    /// Every tool `session_id` sees (every session's when `None`), with where it comes from.
    pub fn all_for(&self, session_id: Option<&str>) -> Vec<(Arc<dyn Tool>, Source)> {
        let mut out: Vec<(Arc<dyn Tool>, Source)> =
            self.tools.values().map(|t| (Arc::clone(t), Source::Builtin)).collect();
        let mut seen: std::collections::BTreeSet<String> = self.tools.keys().cloned().collect();
        for source in &self.sources {
            for tool in source.tools(session_id) {
                if seen.insert(tool.name().to_owned()) {
                    out.push((tool, Source::Mcp));
                }
            }
        }
        out
    }

    /// Waits until every source knows the tools `session_id` gets (see `ToolSource::settle`), or `cancel`.
    pub async fn settle(&self, session_id: &str, cancel: &CancellationToken) {
        for source in &self.sources {
            tokio::select! {
                () = source.settle(session_id) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// The built-in tools' specs.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| spec(&**t)).collect()
    }

    /// The specs of every tool `session_id` sees, built-in ones first.
    pub fn specs_for(&self, session_id: &str) -> Vec<ToolSpec> {
        self.all_for(Some(session_id)).into_iter().map(|(t, _)| spec(&*t)).collect()
    }

    /// Runs a call: unknown tools and bad input become errors for the model. Tools watch `ctx.cancel` themselves,
    /// so that they clean up (kill a process group) before returning.
    pub async fn run(&self, name: &str, input: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError> {
        // Recovery runs approved calls right after a restart, when the MCP servers may still be starting.
        if self.get(name).is_none() {
            self.settle(&ctx.session_id, &ctx.cancel).await;
        }
        let tool = self.get_for(&ctx.session_id, name).ok_or_else(|| ToolError::Unknown(name.to_owned()))?;
        tool.run(input, ctx).await
    }
}

/// Where a tool comes from, as `tool/list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Builtin,
    Mcp,
}

fn spec(tool: &dyn Tool) -> ToolSpec {
    ToolSpec { name: tool.name().into(), description: tool.description().into(), input_schema: tool.input_schema() }
}
