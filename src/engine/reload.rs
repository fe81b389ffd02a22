//! Hot reload: when a watched file changes, the config of every directory the engine serves is loaded again and
//! compared with what clients were last told; the differences become notices (`config/changed` with the changed
//! keys, `model/listChanged`, `provider/listChanged`, `auth/changed`, `config/invalid`), config's MCP servers that
//! changed restart, and providers that list their models are asked again. Nothing here is on a request's path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{self, Config, watch::Watcher};
use crate::mcp;
use crate::provider::discover;
use crate::session::{Notice, Services};

/// Events closer together than this are one change (an editor's save is several).
const SETTLE: Duration = Duration::from_millis(30);
/// A stream of events never postpones a reload longer than this.
const MAX_DELAY: Duration = Duration::from_millis(300);

pub(super) struct Reloader {
    services: Arc<Services>,
    mcp: Arc<mcp::Manager>,
    /// The engine's own directory: config's MCP servers run for it.
    root: PathBuf,
    state: Mutex<State>,
    watcher: Mutex<Option<Watcher>>,
}

#[derive(Default)]
struct State {
    /// What clients were last told, per directory (`None`: the global layers alone).
    configs: BTreeMap<Option<PathBuf>, Value>,
    /// The error last announced per directory, so that one broken file is reported once.
    invalid: BTreeMap<Option<PathBuf>, (String, String)>,
    /// A fingerprint of each stored credential.
    auth: BTreeMap<String, u64>,
}

impl Reloader {
    pub(super) fn new(services: Arc<Services>, mcp: Arc<mcp::Manager>, root: PathBuf) -> Self {
        Self { services, mcp, root, state: Mutex::new(State::default()), watcher: Mutex::new(None) }
    }

    /// Starts watching and takes the first snapshot before returning (a few inotify watches and a config read,
    /// so that a change made once the engine serves is never missed), then asks providers for their models in
    /// the background. Needs a running tokio runtime.
    pub(super) fn start(self: &Arc<Self>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let keel_config = std::env::var_os("KEEL_CONFIG").map(PathBuf::from);
        let mut extra: Vec<String> =
            keel_config.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        // A config directory made later (the XDG one, by hand) is seen being made in its parent.
        let config_dir = &self.services.paths.config_dir;
        if !config_dir.is_dir() {
            extra.extend(config_dir.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
        match Watcher::new(tx, extra) {
            Ok(watcher) => {
                if let Some(parent) = keel_config.as_deref().and_then(Path::parent) {
                    watcher.watch_dir(parent);
                }
                *self.watcher.lock() = Some(watcher);
                self.watch_all(std::slice::from_ref(&self.root));
                tokio::spawn(Arc::clone(self).follow(rx));
            }
            Err(e) => tracing::error!("config files are not watched: {e}"),
        }
        self.snapshot();
        self.discover_all();
    }

    /// Also follows the config of a session's directory.
    pub(super) fn watch_project(&self, cwd: &Path) {
        let key = Some(cwd.to_owned());
        if self.state.lock().configs.contains_key(&key) {
            return;
        }
        if let Some(watcher) = self.watcher.lock().as_ref() {
            watcher.watch_project(cwd);
        }
        match config::load(&self.services.paths, Some(cwd)) {
            Ok(loaded) => {
                self.services.remember_config(Some(&cwd.to_string_lossy()), &loaded.config);
                self.state.lock().configs.insert(key, as_value(&loaded.config));
            }
            Err(e) => {
                let mut state = self.state.lock();
                state.invalid.insert(key.clone(), problem(e));
                state.configs.insert(key, Value::Null);
            }
        }
    }

    /// Watches keel's own directories and these projects' (again: directories created since, such as a new
    /// `.keel/` or a config directory that `config/set` made, join; those already watched are skipped).
    fn watch_all(&self, projects: &[PathBuf]) {
        let watcher = self.watcher.lock();
        let Some(watcher) = watcher.as_ref() else { return };
        let config_dir = &self.services.paths.config_dir;
        match config_dir.parent() {
            Some(parent) if !config_dir.is_dir() => watcher.watch_dir(parent),
            _ => watcher.watch_dir(config_dir),
        }
        watcher.watch_dir(&self.services.paths.data_dir);
        for dir in projects {
            watcher.watch_project(dir);
        }
    }

    /// Debounces the watcher's signals into reloads.
    async fn follow(self: Arc<Self>, mut changed: mpsc::UnboundedReceiver<()>) {
        while changed.recv().await.is_some() {
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                match tokio::time::timeout(SETTLE, changed.recv()).await {
                    Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
                    Ok(None) => return,
                    _ => break,
                }
            }
            let this = Arc::clone(&self);
            if tokio::task::spawn_blocking(move || this.reload()).await.is_err() {
                return;
            }
        }
    }

    fn snapshot(&self) {
        let mut state = self.state.lock();
        for dir in [None, Some(self.root.clone())] {
            match config::load(&self.services.paths, dir.as_deref()) {
                Ok(loaded) => {
                    state.configs.insert(dir, as_value(&loaded.config));
                }
                Err(e) => {
                    state.invalid.insert(dir.clone(), problem(e));
                    // Followed all the same: the first valid version is announced as a change from nothing.
                    state.configs.insert(dir, Value::Null);
                }
            }
        }
        state.auth = self.services.providers.auth.fingerprints().unwrap_or_default();
    }

    /// Loads everything again and tells clients what changed. Also called right after `config/set`.
    pub(super) fn reload(self: &Arc<Self>) {
        let notices = &self.services.notices;
        let mut lists_changed = false;
        let mut mcp_changed = None;
        let mut plugins_changed = None;
        let mut told = BTreeSet::new();
        let projects: Vec<PathBuf> = self.state.lock().configs.keys().flatten().cloned().collect();
        self.watch_all(&projects);
        {
            let mut state = self.state.lock();
            let dirs: Vec<Option<PathBuf>> = state.configs.keys().cloned().collect();
            for dir in dirs {
                let shown = dir.as_ref().map(|d| d.display().to_string());
                match config::load(&self.services.paths, dir.as_deref()) {
                    Ok(loaded) => {
                        state.invalid.remove(&dir);
                        self.services.remember_config(shown.as_deref(), &loaded.config);
                        let new = as_value(&loaded.config);
                        let old = state.configs.insert(dir.clone(), new.clone()).unwrap_or(Value::Null);
                        let keys = changed_keys(&old, &new);
                        if keys.is_empty() {
                            continue;
                        }
                        lists_changed |= keys.iter().any(|k| k == "providers" || k == "model");
                        let at_root = dir.as_deref() == Some(self.root.as_path());
                        if at_root && keys.iter().any(|k| k == "plugins") {
                            plugins_changed = Some(loaded.config.clone());
                        }
                        if at_root && keys.iter().any(|k| k == "mcp") {
                            mcp_changed = Some((old.get("mcp").cloned(), loaded.config));
                        }
                        let _ = notices.send(Notice::ConfigChanged { cwd: shown, keys });
                    }
                    Err(e) => {
                        let problem = problem(e);
                        if state.invalid.get(&dir) == Some(&problem) {
                            continue;
                        }
                        state.invalid.insert(dir, problem.clone());
                        // A global file breaks every directory's config: one notice is enough.
                        if !told.insert(problem.clone()) {
                            continue;
                        }
                        let (path, message) = problem;
                        tracing::error!("config {path}: {message}; the last valid config stays in effect");
                        let _ = notices.send(Notice::ConfigInvalid { path, message });
                    }
                }
            }
            let auth = self.services.providers.auth.fingerprints().unwrap_or_default();
            let providers: BTreeSet<&String> = auth.keys().chain(state.auth.keys()).collect();
            for provider in providers {
                if auth.get(provider) != state.auth.get(provider) {
                    lists_changed = true;
                    let _ = notices.send(Notice::AuthChanged { provider: provider.clone() });
                }
            }
            state.auth = auth;
        }
        if self.services.providers.reload_catalog() {
            let _ = notices.send(Notice::ModelsChanged);
        }
        if lists_changed {
            let _ = notices.send(Notice::ProvidersChanged);
            let _ = notices.send(Notice::ModelsChanged);
            self.discover_all();
        }
        if let Some((old, config)) = mcp_changed {
            self.restart_mcp(old.as_ref(), &config);
        }
        if let Some(config) = plugins_changed {
            self.services.plugins.configure(&self.services.store, &config, &self.root);
        }
    }

    /// Restarts config's MCP servers whose entries changed, as they now read (a removed one stops).
    fn restart_mcp(&self, old: Option<&Value>, config: &Config) {
        let entries = |mcp: Option<&Value>| -> BTreeMap<String, String> {
            mcp::config::from_config(mcp).into_iter().map(|(name, spec)| (name, format!("{spec:?}"))).collect()
        };
        let (before, after) = (entries(old), entries(config.mcp.as_ref()));
        let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let mut any = false;
        for name in names {
            if before.get(name) != after.get(name) {
                any = true;
                // An unknown (removed) or invalid entry is stopped and shown as such by `restart` itself.
                let _ = self.mcp.restart(name, None, config, &self.root);
            }
        }
        if any {
            let _ = self.services.notices.send(Notice::McpListChanged);
        }
    }

    /// Asks every provider that lists its models, each in its own task; a change of models or of reachability is
    /// announced when it is known.
    pub(super) fn discover_all(self: &Arc<Self>) {
        if !self.services.settings.list_models {
            return;
        }
        let config = self.services.config(Some(&self.root.to_string_lossy()));
        for entry in discover::candidates(&self.services.providers, &config) {
            let services = Arc::clone(&self.services);
            tokio::spawn(async move {
                let before = services.providers.reach(&entry.id).map(|r| r.is_ok());
                let found = discover::discover(&services.providers, &entry).await;
                if services.providers.record_discovery(&entry.id, found) {
                    let _ = services.notices.send(Notice::ModelsChanged);
                    if services.providers.reach(&entry.id).map(|r| r.is_ok()) != before {
                        let _ = services.notices.send(Notice::ProvidersChanged);
                    }
                }
            });
        }
    }
}

/// The config files that do not load now, once each: `(path, message)`.
impl Reloader {
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let state = self.state.lock();
        let unique: BTreeSet<&(String, String)> = state.invalid.values().collect();
        unique.into_iter().cloned().collect()
    }
}

fn problem(e: config::ConfigError) -> (String, String) {
    match e {
        config::ConfigError::Invalid { path, message } => (path, message),
        config::ConfigError::Read { path, source } => (path, source.to_string()),
    }
}

fn as_value(config: &Config) -> Value {
    serde_json::to_value(config).unwrap_or_default()
}

/// The top-level keys whose values differ.
fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter().filter(|k| old.get(*k) != new.get(*k)).cloned().collect()
}
