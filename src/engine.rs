//! The engine: the services shared by every connection (store, providers, tools), the session service, and the
//! coordinator that gives each session at most one drain at a time.

use std::sync::Arc;

use keel_protocol::approval::Resolved;
use keel_protocol::recovery::RecoveryDecision;
use tokio::sync::broadcast;

use crate::config::{self, Config, Paths};
use crate::provider::auth::AuthStore;
use crate::provider::registry::Registry;
use crate::session::approval::ApprovalError;
use crate::session::coordinator::Coordinator;
use crate::session::runner::Mode;
use crate::session::usage::ContextFigures;
use crate::session::{Delta, Error as SessionError, Notice, Services, Sessions};
use crate::store::{self, SessionRow, Store};
use crate::{mcp, tool};

pub use crate::session::Settings;
pub use facade::MessagePage;

mod facade;
pub mod jobs;
mod reload;
mod subagents;

fn tool_failed(message: impl Into<String>) -> tool::ToolError {
    tool::ToolError::Failed(message.into())
}

pub struct Engine {
    pub sessions: Sessions,
    services: Arc<Services>,
    coordinator: Arc<Coordinator>,
    mcp: Arc<mcp::Manager>,
    subagents: Arc<dyn tool::task::Delegate>,
    jobs: Arc<jobs::Jobs>,
    reloader: Arc<reload::Reloader>,
}

impl Engine {
    pub fn open(paths: Paths, settings: Settings) -> Result<Arc<Self>, store::Error> {
        paths.private_data_dir().map_err(|source| store::Error::Io { path: paths.data_dir.clone(), source })?;
        let store = Arc::new(match &settings.store {
            Some(location) => Store::at(location)?,
            None => Store::open(&paths.data_dir.join("keel.db"))?,
        });
        let providers = Registry::new(AuthStore::new(&paths.data_dir), &paths.data_dir);
        let mut services = Services::new(Arc::clone(&store), providers, paths, settings);
        let mcp = Arc::new(mcp::Manager::default());
        services.tools.add_source(Arc::clone(&mcp) as Arc<dyn tool::ToolSource>);
        let services = Arc::new(services);
        let root = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
        let engine = Arc::new_cyclic(|engine| Self {
            sessions: Sessions::new(store),
            coordinator: Arc::new(Coordinator::new(Arc::clone(&services))),
            reloader: Arc::new(reload::Reloader::new(Arc::clone(&services), Arc::clone(&mcp), root)),
            services,
            mcp,
            subagents: Arc::new(subagents::Subagents::new(engine.clone())),
            jobs: Arc::new(jobs::Jobs::new(engine.clone())),
        });
        // The engine owns its delegate and job runner; the tools hold only weak references, so nothing cycles.
        let _ = engine.services.delegate.set(Arc::downgrade(&engine.subagents));
        let background: Arc<dyn tool::shell::Background> = engine.jobs.clone();
        let _ = engine.services.background.set(Arc::downgrade(&background));
        Ok(engine)
    }

    /// Appends one event for a tool's work done outside a turn (a subagent's link, a job's start and end); a
    /// failure is the tool's.
    fn record_for_tool(
        &self,
        session_id: &str,
        body: keel_protocol::catalogue::EventBody,
    ) -> Result<(), tool::ToolError> {
        let event = store::NewEvent::new(body).map_err(|e| tool_failed(e.to_string()))?;
        self.services.append_events(session_id, vec![event]).map_err(|e| tool_failed(e.to_string()))
    }

    /// The session and its ancestors, nearest first.
    pub fn lineage(&self, session_id: &str) -> Vec<String> {
        crate::session::service::lineage(&self.services.store, session_id)
    }

    /// Starts the background work of a serving engine: config's MCP servers (read for the process's directory;
    /// nothing waits for them), watching config files and the credential store, asking providers for their
    /// models, watching other engine processes' commits, and (unless settings say otherwise) taking over sessions
    /// that nobody runs, now and periodically. Nothing here delays serving. Needs a running tokio runtime.
    pub fn start(self: &Arc<Self>) {
        jobs::sweep(self);
        let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
        self.mcp.start_configured(&self.config(Some(&cwd.to_string_lossy())), &cwd);
        if self.services.settings.watch_config {
            self.reloader.start();
        }
        let store = Arc::clone(&self.services.store);
        let every = self.services.settings.poll_other_writers;
        tokio::spawn(async move {
            if let Err(e) = store.watch_other_writers(every).await {
                tracing::error!("watching for other engine processes stopped: {e}");
            }
        });
        if self.services.settings.discover {
            let coordinator = Arc::clone(&self.coordinator);
            let every = self.services.settings.lease_renew;
            tokio::spawn(async move {
                loop {
                    coordinator.discover();
                    tokio::time::sleep(every).await;
                }
            });
        }
    }

    /// Suspends every running activity at a safe point (within the shutdown grace) and gives the leases back; the
    /// next engine to start resumes them. No run starts after this is called.
    pub async fn shutdown(&self) {
        self.coordinator.shutdown(self.services.settings.shutdown_grace).await;
    }

    /// Records a decision about an activity whose last attempt had an unknown outcome (see `recovery/decide`).
    pub fn decide_recovery(&self, session_id: &str, decision: RecoveryDecision) -> Result<(), SessionError> {
        self.coordinator.decide(session_id, decision)
    }

    pub fn providers(&self) -> &Registry {
        &self.services.providers
    }

    pub fn tools(&self) -> &tool::Registry {
        &self.services.tools
    }

    pub fn paths(&self) -> &Paths {
        &self.services.paths
    }

    pub fn settings(&self) -> &Settings {
        &self.services.settings
    }

    /// Sets one value in a config file (comments kept, validated first) and tells clients at once.
    pub fn set_config(
        &self,
        scope: &config::write::Scope,
        keys: &[String],
        value: &serde_json::Value,
    ) -> Result<config::write::Written, config::write::WriteError> {
        let written = config::write::set(&self.services.paths, scope, keys, value)?;
        self.after_edit(scope, &written);
        Ok(written)
    }

    /// Removes one value from a config file (see `set_config`).
    pub fn unset_config(
        &self,
        scope: &config::write::Scope,
        keys: &[String],
    ) -> Result<config::write::Written, config::write::WriteError> {
        let written = config::write::unset(&self.services.paths, scope, keys)?;
        self.after_edit(scope, &written);
        Ok(written)
    }

    /// The watcher would notice the write too, a moment later; reloading now means the caller's next request
    /// already sees the new config and every client hears of it first.
    fn after_edit(&self, scope: &config::write::Scope, written: &config::write::Written) {
        if let config::write::Scope::Project(dir) = scope {
            self.reloader.watch_project(dir);
        }
        if written.changed {
            self.reloader.reload();
        }
    }

    /// The watched config files that do not load now, `(path, message)`: told to a client when it connects.
    pub fn config_problems(&self) -> Vec<(String, String)> {
        self.reloader.problems()
    }

    /// Follows the config of a session's directory from now on (`config/changed` for it).
    pub fn watch_project(&self, cwd: &std::path::Path) {
        self.reloader.watch_project(cwd);
    }

    /// Streamed fragments of every session.
    pub fn deltas(&self) -> &broadcast::Sender<Arc<Delta>> {
        &self.services.deltas
    }

    /// Engine-wide news: status changes, approvals asked and answered.
    pub fn notices(&self) -> &broadcast::Sender<Notice> {
        &self.services.notices
    }

    /// The effective config for a session in `cwd` (see `Services::config`).
    pub fn config(&self, cwd: Option<&str>) -> Config {
        self.services.config(cwd)
    }

    /// The agents visible from `cwd`, with where each comes from (see `agent::complete`).
    pub fn agents(&self, cwd: Option<&str>) -> (Config, crate::agent::Sources) {
        let mut config = crate::config::load(&self.services.paths, cwd.map(std::path::Path::new))
            .map(|l| l.config)
            .unwrap_or_default();
        let sources = crate::agent::complete(&mut config, &self.services.paths, cwd.map(std::path::Path::new));
        (config, sources)
    }

    /// Kills a running job of this process; false when it is not running here.
    pub fn cancel_job(&self, job_id: &str) -> bool {
        self.jobs.cancel(job_id)
    }

    /// The jobs, newest first.
    pub fn jobs(
        &self,
        session_id: Option<&str>,
        running_only: bool,
    ) -> Result<Vec<crate::store::jobs::JobRow>, store::Error> {
        self.services.store.query(|c| crate::store::jobs::list(c, session_id, running_only))
    }

    pub fn job(&self, job_id: &str) -> Result<Option<crate::store::jobs::JobRow>, store::Error> {
        self.services.store.query(|c| crate::store::jobs::get(c, job_id))
    }

    /// The slash commands for sessions in `cwd` (see `agent::commands`).
    /// The slash commands of a session in `cwd`: templates, skills, and the prompts of the MCP servers that
    /// `session_id` sees (config's alone without it).
    pub fn commands(&self, cwd: Option<&str>, session_id: Option<&str>) -> Vec<crate::agent::commands::Command> {
        let config = self.config(cwd);
        let mut commands =
            crate::agent::commands::discover(&config, &self.services.paths, cwd.map(std::path::Path::new));
        for prompt in self.mcp.prompts(session_id) {
            if commands.iter().any(|c| c.name == prompt.name) {
                continue;
            }
            commands.push(crate::agent::commands::Command {
                name: prompt.name,
                settings: crate::config::CommandSettings {
                    description: Some(prompt.description),
                    ..Default::default()
                },
                source: "mcp".into(),
                mcp_arguments: Some(prompt.arguments),
            });
        }
        commands
    }

    /// The text an MCP prompt command (`server:prompt`) sends with `arguments`.
    pub async fn mcp_prompt_text(
        &self,
        session_id: Option<&str>,
        name: &str,
        arguments: &str,
    ) -> Result<String, mcp::McpError> {
        self.mcp.prompt_text(session_id, name, arguments).await
    }

    /// How full a session's context is against its model's window.
    pub fn context_figures(&self, session: &SessionRow) -> Result<ContextFigures, store::Error> {
        let config = self.config(Some(&session.cwd));
        let model = crate::session::service::model_of(session, &session.agent, &config);
        let spec = self.services.providers.resolve(&config, &model).ok().map(|r| r.spec);
        let settings = crate::session::compaction::settings(&config);
        ContextFigures::measure(&self.services.store, &session.id, spec.as_ref(), &settings)
    }

    /// Makes sure the session's drain runs. Returns false when one was already running (the call joined it).
    pub fn wake(&self, session_id: &str, mode: Mode) -> bool {
        self.coordinator.wake(session_id, mode)
    }

    /// Interrupts the session (see `Coordinator::interrupt`). False when there was nothing to interrupt.
    pub fn interrupt(&self, session_id: &str) -> bool {
        self.coordinator.interrupt(session_id)
    }

    /// Records an answer to a pending approval; the first answer wins.
    pub fn answer_approval(
        &self,
        approval_id: &str,
        decision: Resolved,
        message: Option<String>,
        by: &str,
    ) -> Result<(), ApprovalError> {
        self.coordinator.answer(approval_id, decision, message, by)
    }

    /// The directory of a session's saved tool outputs.
    pub fn output_dir(&self, session_id: &str) -> std::path::PathBuf {
        self.services.output_dir(session_id)
    }

    /// Every MCP server and its state.
    /// Starts the plugins of the config for `cwd` (a serving engine's: its process's directory), whose connections
    /// `server` serves: plugins speak the engine's own protocol. Nothing waits for them.
    pub fn start_plugins(&self, server: &Arc<crate::rpc::Server>, cwd: &std::path::Path) {
        let config = self.config(Some(&cwd.to_string_lossy()));
        self.services.plugins.start(server, &self.services.store, &config, cwd);
    }

    pub fn stop_plugins(&self) {
        self.services.plugins.stop_all();
    }

    pub fn plugins(&self) -> Vec<keel_protocol::plugin::Plugin> {
        self.services.plugins.list()
    }

    /// `provider/register` from connection `peer_id`: the plugin's models join the model database, and every client
    /// hears of it.
    pub fn register_plugin_provider(
        &self,
        peer_id: u64,
        p: keel_protocol::plugin::ProviderRegisterParams,
    ) -> Result<(), crate::plugin::PluginError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
        let config = self.config(Some(&cwd.to_string_lossy()));
        self.services.plugins.register_provider(peer_id, p, &self.services.providers, &config)?;
        let _ = self.services.notices.send(crate::session::Notice::ProvidersChanged);
        let _ = self.services.notices.send(crate::session::Notice::ModelsChanged);
        Ok(())
    }

    /// `tool/register` from connection `peer_id`.
    pub fn register_plugin_tools(
        &self,
        peer_id: u64,
        tools: Vec<keel_protocol::plugin::ToolDeclaration>,
    ) -> Result<(), crate::plugin::PluginError> {
        self.services.plugins.register_tools(peer_id, tools, &self.services.tools)
    }

    /// `plugin/register` and `provider/delta`, from the connection `peer_id`.
    pub fn plugin_host(&self) -> &crate::plugin::Host {
        &self.services.plugins
    }

    pub fn mcp_servers(&self) -> Vec<mcp::ServerInfo> {
        self.mcp.list()
    }

    /// Restarts an MCP server: a session's own first, when `session_id` has one of that name, else config's as the
    /// config reads now.
    pub fn restart_mcp(&self, name: &str, session_id: Option<&str>) -> Result<mcp::ServerInfo, mcp::McpError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
        self.mcp.restart(name, session_id, &self.config(Some(&cwd.to_string_lossy())), &cwd)
    }

    /// Starts a session's own MCP servers (ACP `mcpServers`) in the background, in the session's directory and
    /// under its config's environment policy; they replace the ones the session had.
    pub fn start_session_mcp(&self, session_id: &str, cwd: &str, specs: Vec<mcp::ServerSpec>) -> mcp::SessionServers {
        let config = self.config(Some(cwd));
        self.mcp.start_for_session(session_id, specs, &config, std::path::Path::new(cwd))
    }

    /// Stops the MCP servers that `start_session_mcp` started.
    pub fn stop_session_mcp(&self, servers: &mcp::SessionServers) {
        self.mcp.release(servers);
    }

    /// Follows the state of a session's MCP servers (for reporting failures to the client that passed them).
    pub fn watch_mcp(&self) -> tokio::sync::broadcast::Receiver<mcp::ServerInfo> {
        self.mcp.watch()
    }
}
