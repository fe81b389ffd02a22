//! Model Context Protocol servers as tool sources: config's `mcp` servers for every session, and the servers an ACP
//! client passes in `session/new` for that session only. Each server runs under its own supervisor
//! (`server::Server`) in the background; the `Manager` is the engine's table of them and the `ToolSource` the tool
//! registry asks at every turn.

pub mod config;
mod prompt;
mod server;
mod tool;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::broadcast;

pub use config::{ServerSpec, SpecError, Transport};
pub use prompt::PromptCommand;
pub use server::Status;
pub use tool::{ACTION, McpTool, tool_name};

use server::Server;

use crate::sandbox::EnvPolicy;
use crate::tool::{Tool, ToolSource};

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("no MCP server named {0:?}")]
    UnknownServer(String),
    #[error("bad MCP server: {0}")]
    InvalidSpec(#[from] SpecError),
    #[error("MCP prompt {0}")]
    Prompt(String),
}

/// A server as `mcp/list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    pub name: String,
    pub session_id: Option<String>,
    /// `stdio` or `http`.
    pub transport: &'static str,
    pub status: Status,
    pub tools: Vec<String>,
    pub pid: Option<u32>,
    pub restarts: u32,
}

/// The servers one `start_for_session` started.
pub struct SessionServers {
    servers: Vec<Arc<Server>>,
}

impl SessionServers {
    pub fn names(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.spec.name.clone()).collect()
    }
}

/// `(session, name)`: config's servers have no session.
type Key = (Option<String>, String);

pub struct Manager {
    servers: RwLock<BTreeMap<Key, Arc<Server>>>,
    /// Config entries that could not be read, by name: shown as failed, never started.
    invalid: RwLock<BTreeMap<String, String>>,
    /// Every change of a server's state.
    changes: broadcast::Sender<ServerInfo>,
}

impl Default for Manager {
    fn default() -> Self {
        Self { servers: RwLock::default(), invalid: RwLock::default(), changes: broadcast::channel(64).0 }
    }
}

impl Manager {
    /// Every later change of a server's state (a lagging receiver misses some; `list` has the current ones).
    pub fn watch(&self) -> broadcast::Receiver<ServerInfo> {
        self.changes.subscribe()
    }

    /// Starts the servers of `config` (for every session) in the background, replacing any started before.
    pub fn start_configured(&self, config: &crate::config::Config, cwd: &Path) {
        let env = env_policy(config);
        let mut invalid = BTreeMap::new();
        let mut started = Vec::new();
        for (name, spec) in config::from_config(config.mcp.as_ref()) {
            match spec {
                Ok(spec) => started.push(spec),
                Err(e) => {
                    tracing::warn!("MCP config: {e}");
                    invalid.insert(name, e.to_string());
                }
            }
        }
        let mut servers = self.servers.write();
        servers.retain(|(session, _), server| {
            let keep = session.is_some();
            if !keep {
                server.stop();
            }
            keep
        });
        for spec in started {
            remember_secrets(&spec);
            let name = spec.name.clone();
            servers.insert((None, name), Server::spawn(spec, None, env.clone(), cwd.to_owned(), self.changes.clone()));
        }
        *self.invalid.write() = invalid;
    }

    /// Starts a session's own servers (ACP `mcpServers`); each replaces the session's server of the same name. The
    /// handle says which ones these are, for `release`.
    pub fn start_for_session(
        &self,
        session_id: &str,
        specs: Vec<ServerSpec>,
        config: &crate::config::Config,
        cwd: &Path,
    ) -> SessionServers {
        let env = env_policy(config);
        let mut servers = self.servers.write();
        let started = specs
            .into_iter()
            .map(|spec| {
                remember_secrets(&spec);
                let name = spec.name.clone();
                let server =
                    Server::spawn(spec, Some(session_id.to_owned()), env.clone(), cwd.to_owned(), self.changes.clone());
                if let Some(old) = servers.insert((Some(session_id.to_owned()), name), Arc::clone(&server)) {
                    old.stop();
                }
                server
            })
            .collect();
        SessionServers { servers: started }
    }

    /// Stops and forgets the servers `start_for_session` started, unless others have replaced them since.
    pub fn release(&self, handle: &SessionServers) {
        self.servers.write().retain(|_, server| {
            let mine = handle.servers.iter().any(|s| Arc::ptr_eq(s, server));
            if mine {
                server.stop();
            }
            !mine
        });
    }

    pub fn list(&self) -> Vec<ServerInfo> {
        let mut out: Vec<ServerInfo> = self.servers.read().values().map(|server| server.info()).collect();
        out.extend(self.invalid.read().iter().map(|(name, reason)| ServerInfo {
            name: name.clone(),
            session_id: None,
            transport: "stdio",
            status: Status::Failed { reason: reason.clone(), retrying: false },
            tools: Vec::new(),
            pid: None,
            restarts: 0,
        }));
        out
    }

    /// The prompts of the servers `session_id` sees (every session's when `None`), as slash commands.
    pub fn prompts(&self, session_id: Option<&str>) -> Vec<PromptCommand> {
        self.visible(session_id).iter().flat_map(|s| prompt::commands(s)).collect()
    }

    /// The text that the prompt command `name` (`server:prompt`) sends with `arguments`.
    pub async fn prompt_text(&self, session_id: Option<&str>, name: &str, arguments: &str) -> Result<String, McpError> {
        let (server, prompt) = name.split_once(':').ok_or_else(|| McpError::UnknownServer(name.to_owned()))?;
        let found = self.visible(session_id).into_iter().find(|s| s.spec.name == server);
        let found = found.ok_or_else(|| McpError::UnknownServer(server.to_owned()))?;
        prompt::text(&found, prompt, arguments).await
    }

    /// Restarts a server now. A session's own when `session_id` has one of that name; else config's, read again from
    /// `config`, so that an edited entry starts as it now reads and a removed or disabled one stops.
    pub fn restart(
        &self,
        name: &str,
        session_id: Option<&str>,
        config: &crate::config::Config,
        cwd: &Path,
    ) -> Result<ServerInfo, McpError> {
        if let Some(session_id) = session_id {
            let own = self.servers.read().get(&(Some(session_id.to_owned()), name.to_owned())).cloned();
            if let Some(server) = own {
                server.restart();
                return Ok(starting(server.info()));
            }
        }
        let key = (None, name.to_owned());
        let entry = config::from_config(config.mcp.as_ref()).into_iter().find(|(n, _)| n == name);
        let spec = match entry {
            Some((_, Ok(spec))) => spec,
            gone_or_bad => {
                if let Some(old) = self.servers.write().remove(&key) {
                    old.stop();
                }
                return Err(match gone_or_bad {
                    Some((_, Err(e))) => {
                        self.invalid.write().insert(name.to_owned(), e.to_string());
                        McpError::InvalidSpec(e)
                    }
                    _ => {
                        self.invalid.write().remove(name);
                        McpError::UnknownServer(name.to_owned())
                    }
                });
            }
        };
        self.invalid.write().remove(name);
        let mut servers = self.servers.write();
        if let Some(server) = servers.get(&key).filter(|s| s.spec == spec) {
            server.restart();
            return Ok(starting(server.info()));
        }
        remember_secrets(&spec);
        let server = Server::spawn(spec, None, env_policy(config), cwd.to_owned(), self.changes.clone());
        if let Some(old) = servers.insert(key, Arc::clone(&server)) {
            old.stop();
        }
        Ok(starting(server.info()))
    }

    /// Resolves when every config server's first start has ended, each within its start-up timeout (`keel doctor`).
    pub async fn settle_configured(&self) {
        let configured: Vec<Arc<Server>> = self
            .servers
            .read()
            .iter()
            .filter(|((session, _), _)| session.is_none())
            .map(|(_, s)| Arc::clone(s))
            .collect();
        for server in configured {
            server.first_start().await;
        }
    }

    /// Stops every server (engine shutdown).
    pub fn stop_all(&self) {
        for server in std::mem::take(&mut *self.servers.write()).into_values() {
            server.stop();
        }
    }
}

impl Manager {
    /// The servers `session_id` sees: config's, and the session's own, which shadow config's of the same name
    /// (config's only when `None`).
    fn visible(&self, session_id: Option<&str>) -> Vec<Arc<Server>> {
        let servers = self.servers.read();
        let mut by_name: BTreeMap<&str, &Arc<Server>> = BTreeMap::new();
        for ((session, name), server) in servers.iter() {
            match (session.as_deref(), session_id) {
                (None, _) => {
                    by_name.entry(name).or_insert(server);
                }
                (Some(s), Some(wanted)) if s == wanted => {
                    by_name.insert(name, server);
                }
                _ => {}
            }
        }
        by_name.into_values().cloned().collect()
    }
}

impl ToolSource for Manager {
    fn tools(&self, session_id: Option<&str>) -> Vec<Arc<dyn Tool>> {
        self.visible(session_id)
            .into_iter()
            .flat_map(|server| server.snapshot().tools)
            .map(|t| -> Arc<dyn Tool> { t })
            .collect()
    }

    fn settle<'a>(&'a self, session_id: &'a str) -> crate::provider::BoxFuture<'a, ()> {
        Box::pin(async move {
            for server in self.visible(Some(session_id)) {
                server.first_start().await;
            }
        })
    }
}

/// The supervisor picks a restart up on its own time; the answer says it is under way.
fn starting(mut info: ServerInfo) -> ServerInfo {
    info.status = Status::Starting;
    info
}

/// MCP servers start with the environment `bash` gets (credentials left out), plus their own `env`.
fn env_policy(config: &crate::config::Config) -> EnvPolicy {
    config.shell_environment.clone().unwrap_or_default()
}

/// Values a server is given to authenticate are secrets: scrubbed from whatever keel records or answers.
fn remember_secrets(spec: &ServerSpec) {
    match &spec.transport {
        Transport::Stdio { env, .. } => {
            for (name, value) in env {
                if crate::secret::is_secret_name(name) {
                    crate::secret::remember(value);
                }
            }
        }
        Transport::Http { headers, .. } => {
            for value in headers.values() {
                crate::secret::remember(value);
                // `Authorization: Bearer X` leaks X alone just as well.
                if let Some((_, token)) = value.split_once(' ') {
                    crate::secret::remember(token);
                }
            }
        }
    }
}
