//! Plugins: processes in any language that the engine starts from config and serves on their stdio with its own
//! protocol. A plugin is a client like any other (it may prompt a session, list models) that also registers hooks and
//! tools; the `Host` is the engine's table of them, the `ToolSource` of their tools, and the one place hooks run.
//!
//! A hook gets a draft and answers with changes; they apply only when the answer comes in time and reads right. A
//! hook that fails, is slow or whose plugin dies changes nothing and is recorded as `plugin.failed` in the session.

mod hooks;
mod process;
mod provider;
mod tool;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use keel_protocol::plugin::{
    Hook, Plugin as PluginInfo, PluginStatus, ProviderDeltaParams, ProviderRegisterParams, ToolDeclaration,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

pub use hooks::{ChatDraft, Records};
pub use tool::{ACTION, PluginTool};

use process::{Plugin, Spec};

use crate::config::{Config, PluginSettings};
use crate::rpc;
use crate::session::Notice;
use crate::tool::{Tool, ToolSource};

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5_000);

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("only a plugin's own connection can register hooks and tools")]
    NotAPlugin,
    #[error("{path}: {message}")]
    BadTool { path: String, message: String },
    #[error("provider {0:?} is built in or configured; a plugin's provider needs an id of its own")]
    ProviderTaken(String),
    #[error("no turn {0:?} is out with this plugin")]
    UnknownTurn(String),
}

pub struct Host {
    /// By name, which is the order hooks run in.
    plugins: RwLock<Vec<Arc<Plugin>>>,
    /// What serves plugin connections; set once the engine serves.
    server: Mutex<Weak<rpc::Server>>,
    notices: broadcast::Sender<Notice>,
    /// The forwarding of committed events to `event` hooks, started with the first plugin.
    forwarding: Mutex<bool>,
    /// Turns out with plugins' providers.
    streams: Arc<provider::Streams>,
}

impl Host {
    pub fn new(notices: broadcast::Sender<Notice>) -> Self {
        Self {
            plugins: RwLock::default(),
            server: Mutex::default(),
            notices,
            forwarding: Mutex::new(false),
            streams: Arc::default(),
        }
    }

    /// Starts config's plugins, served by `server`; later `configure` calls use the same server.
    pub fn start(
        self: &Arc<Self>,
        server: &Arc<rpc::Server>,
        store: &Arc<crate::store::Store>,
        config: &Config,
        cwd: &Path,
    ) {
        *self.server.lock() = Arc::downgrade(server);
        self.configure(store, config, cwd);
    }

    /// Makes the running plugins those of `config`: unchanged ones keep running, changed ones start again, removed
    /// ones stop. Before `start` it does nothing.
    pub fn configure(self: &Arc<Self>, store: &Arc<crate::store::Store>, config: &Config, cwd: &Path) {
        let server = self.server.lock().clone();
        if server.strong_count() == 0 {
            return;
        }
        let specs = specs(&config.plugins);
        let env = config.shell_environment.clone().unwrap_or_default();
        let mut plugins = self.plugins.write();
        let mut old: BTreeMap<String, Arc<Plugin>> = plugins.drain(..).map(|p| (p.spec.name.clone(), p)).collect();
        for spec in specs {
            match old.remove(&spec.name) {
                Some(same) if same.spec == spec => plugins.push(same),
                changed => {
                    if let Some(changed) = changed {
                        changed.stop();
                    }
                    for value in spec.env.values() {
                        crate::secret::remember(value);
                    }
                    let notices = self.notices.clone();
                    let on_change = Arc::new(move || {
                        let _ = notices.send(Notice::PluginListChanged);
                    });
                    plugins.push(Plugin::spawn(spec, server.clone(), env.clone(), cwd.to_owned(), on_change));
                }
            }
        }
        for removed in old.into_values() {
            removed.stop();
        }
        let any = !plugins.is_empty();
        drop(plugins);
        let _ = self.notices.send(Notice::PluginListChanged);
        let mut forwarding = self.forwarding.lock();
        if any && !*forwarding {
            *forwarding = true;
            hooks::forward_events(Arc::downgrade(self), store.committed());
        }
    }

    pub fn stop_all(&self) {
        for plugin in self.plugins.write().drain(..) {
            plugin.stop();
        }
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        self.plugins
            .read()
            .iter()
            .map(|p| {
                let now = p.snapshot();
                PluginInfo {
                    name: p.spec.name.clone(),
                    status: now.status,
                    error: now.error,
                    retrying: now.retrying,
                    hooks: now.hooks,
                    tools: now.tools.iter().map(|t| t.name().to_owned()).collect(),
                    pid: now.pid,
                    restarts: now.restarts,
                }
            })
            .collect()
    }

    /// `plugin/register` from connection `peer_id`.
    pub fn register_hooks(&self, peer_id: u64, hooks: Vec<Hook>) -> Result<(), PluginError> {
        let plugin = self.on(peer_id)?;
        plugin.set(|s| {
            s.hooks = hooks;
            s.status = PluginStatus::Ready;
        });
        Ok(())
    }

    /// `tool/register` from connection `peer_id`: replaces the plugin's tools; none may take a name of `builtin`'s.
    pub fn register_tools(
        &self,
        peer_id: u64,
        declared: Vec<ToolDeclaration>,
        builtin: &crate::tool::Registry,
    ) -> Result<(), PluginError> {
        let plugin = self.on(peer_id)?;
        let mut seen = std::collections::BTreeSet::new();
        for (index, tool) in declared.iter().enumerate() {
            let bad =
                |message: &str| PluginError::BadTool { path: format!("tools[{index}].name"), message: message.into() };
            let valid = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(bad("must match ^[a-zA-Z0-9_-]{1,64}$"));
            }
            if builtin.get(&tool.name).is_some() {
                return Err(bad("is a built-in tool's name"));
            }
            if !seen.insert(tool.name.clone()) {
                return Err(bad("is declared twice"));
            }
            if !tool.input_schema.is_object() {
                let path = format!("tools[{index}].inputSchema");
                return Err(PluginError::BadTool { path, message: "must be an object".into() });
            }
        }
        let name = plugin.spec.name.clone();
        let tools =
            declared.into_iter().map(|d| Arc::new(PluginTool::new(d, name.clone(), Arc::downgrade(&plugin)))).collect();
        plugin.set(|s| {
            s.tools = tools;
            s.status = PluginStatus::Ready;
        });
        Ok(())
    }

    /// `provider/register` from connection `peer_id`: its models join `providers`' model database.
    pub fn register_provider(
        &self,
        peer_id: u64,
        p: ProviderRegisterParams,
        providers: &crate::provider::registry::Registry,
        config: &Config,
    ) -> Result<(), PluginError> {
        let plugin = self.on(peer_id)?;
        let models = p
            .models
            .into_iter()
            .map(|m| {
                let id = format!("{}/{}", p.id, m.id);
                crate::provider::catalog::ModelSpec {
                    name: m.name.unwrap_or_else(|| id.clone()),
                    id,
                    context_window: m.context_window.unwrap_or(0),
                    max_output_tokens: m.max_output_tokens.unwrap_or(0),
                    tools: m.tools.unwrap_or(true),
                    reasoning: m.reasoning,
                    images: false,
                    cost: Default::default(),
                    source: "plugin",
                }
            })
            .collect();
        let served = Arc::new(provider::PluginProvider {
            plugin: Arc::downgrade(&plugin),
            streams: Arc::downgrade(&self.streams),
        });
        let name = p.name.unwrap_or_else(|| p.id.clone());
        if !providers.register_plugin_provider(config, &p.id, name, served, models) {
            return Err(PluginError::ProviderTaken(p.id));
        }
        plugin.set(|s| s.status = PluginStatus::Ready);
        Ok(())
    }

    /// `provider/delta` from connection `peer_id`.
    pub fn deliver(&self, peer_id: u64, p: ProviderDeltaParams) -> Result<(), PluginError> {
        if self.streams.deliver(peer_id, &p.request_id, p.deltas) {
            Ok(())
        } else {
            Err(PluginError::UnknownTurn(p.request_id))
        }
    }

    fn on(&self, peer_id: u64) -> Result<Arc<Plugin>, PluginError> {
        self.plugins.read().iter().find(|p| p.is_on(peer_id)).cloned().ok_or(PluginError::NotAPlugin)
    }

    /// True when a running plugin declared `hook`.
    pub fn has(&self, hook: Hook) -> bool {
        self.plugins.read().iter().any(|p| p.hooked(hook).is_some())
    }

    /// The plugins that declared `hook` and run now, in order, with their connection.
    fn hooked(&self, hook: Hook) -> Vec<(Arc<Plugin>, rpc::PeerRef)> {
        let plugins = self.plugins.read();
        if plugins.is_empty() {
            return Vec::new();
        }
        plugins.iter().filter_map(|p| p.hooked(hook).map(|peer| (Arc::clone(p), peer))).collect()
    }
}

impl ToolSource for Host {
    fn tools(&self, _session_id: Option<&str>) -> Vec<Arc<dyn Tool>> {
        let plugins = self.plugins.read();
        plugins.iter().flat_map(|p| p.snapshot().tools).map(|t| -> Arc<dyn Tool> { t }).collect()
    }

    fn settle<'a>(&'a self, _session_id: &'a str) -> crate::provider::BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

fn specs(configured: &BTreeMap<String, PluginSettings>) -> Vec<Spec> {
    configured
        .iter()
        .filter(|(_, s)| s.enabled != Some(false))
        .map(|(name, s)| Spec {
            name: name.clone(),
            command: s.command.clone(),
            env: s.env.clone(),
            timeout: s.timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        })
        .collect()
}
