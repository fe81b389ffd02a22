//! `keel doctor`: what keel finds on this machine, as a table a user can paste into a bug report. Config files,
//! providers and their keys (where a key comes from, never the key), reachability of the providers that list their
//! models, the default model, config's MCP servers, the database and config's plugins. Each check is the engine's own code path
//! (config loading, the registry, discovery, the MCP manager, `Engine::open`), so what it says is what a serving
//! engine would meet.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::plugin::PluginStatus;

use crate::config::{self, Config, Paths};
use crate::engine::{Engine, Settings};
use crate::mcp;
use crate::provider::auth::AuthStore;
use crate::provider::discover;
use crate::provider::registry::{Discovery, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Worth knowing, not wrong.
    Note,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Note => "note",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub area: &'static str,
    pub item: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, area: &'static str, item: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.rows.push(Row { area, item: item.into(), status, detail: detail.into() });
    }

    pub fn problems(&self) -> usize {
        self.rows.iter().filter(|r| r.status == Status::Fail).count()
    }

    /// Aligned columns; the detail column runs to the end of the line.
    pub fn render(&self) -> String {
        let header = Row { area: "AREA", item: "ITEM".into(), status: Status::Ok, detail: "DETAIL".into() };
        let width = |f: fn(&Row) -> usize| self.rows.iter().chain([&header]).map(f).max().unwrap_or(0);
        let (area_w, item_w) = (width(|r| r.area.len()), width(|r| r.item.len()));
        let mut out = String::new();
        let mut line = |area: &str, item: &str, status: &str, detail: &str| {
            let _ = writeln!(out, "{area:<area_w$}  {item:<item_w$}  {status:<6}  {detail}");
        };
        line("AREA", "ITEM", "STATUS", "DETAIL");
        for r in &self.rows {
            line(r.area, &r.item, r.status.label(), &r.detail);
        }
        let problems = self.problems();
        let _ = match problems {
            0 => writeln!(out, "\nall well"),
            1 => writeln!(out, "\n1 problem"),
            n => writeln!(out, "\n{n} problems"),
        };
        out
    }
}

/// Runs every check for a session in `cwd`. `settings` are the engine's (its store location above all).
pub async fn doctor(paths: &Paths, settings: Settings, cwd: &Path) -> Report {
    let mut report = Report::default();
    report.add("keel", env!("CARGO_PKG_VERSION"), Status::Ok, format!("config in {}", paths.config_dir.display()));
    let loaded = check_config(&mut report, paths, cwd);
    let config = loaded.clone().unwrap_or_default();
    let registry = Registry::new(AuthStore::new(&paths.data_dir), &paths.data_dir);
    check_providers(&mut report, &registry, &config).await;
    match &loaded {
        Some(config) => check_default_model(&mut report, &registry, config),
        None => report.add("model", "default", Status::Fail, "not resolved: the config does not load (above)"),
    }
    check_mcp(&mut report, &config, cwd).await;
    if let Some(engine) = check_store(&mut report, paths, settings) {
        check_plugins(&mut report, &engine, cwd).await;
    }
    report
}

/// Each layer on its own, then the merged config (`None` when it does not load: the rest of the checks then use the
/// defaults, as an engine would start).
fn check_config(report: &mut Report, paths: &Paths, cwd: &Path) -> Option<Config> {
    let files = config::layer_files(paths, Some(cwd));
    if files.is_empty() {
        report.add("config", "(no config file)", Status::Note, "defaults only; the global file would be config.jsonc");
    }
    for (source, path) in &files {
        let item = format!("{source} {}", path.display());
        match config::check_layer(source, path) {
            Ok(()) => report.add("config", item, Status::Ok, "valid"),
            Err(message) => report.add("config", item, Status::Fail, message),
        }
    }
    if std::env::var("KEEL_CONFIG_CONTENT").is_ok_and(|c| !c.trim().is_empty()) {
        report.add("config", "env KEEL_CONFIG_CONTENT", Status::Note, "set, merged last");
    }
    match config::load(paths, Some(cwd)) {
        Ok(loaded) => Some(loaded.config),
        Err(e) => {
            // A layer that fails on its own is already reported; this one says the engine falls back.
            if report.problems() == 0 {
                report.add("config", "(merged)", Status::Fail, e.to_string());
            }
            report.add("config", "(in effect)", Status::Note, "defaults: the engine cannot load the config");
            None
        }
    }
}

/// Providers in config, built-in ones with a key, and the default model's: where the key comes from, and whether
/// those that list their models answer (asked all at once, each within discovery's timeout).
async fn check_providers(report: &mut Report, registry: &Registry, config: &Config) {
    let default_provider = config.model.as_deref().and_then(|m| m.split_once('/')).map(|(p, _)| p.to_owned());
    let candidates = discover::candidates(registry, config);
    let reached = futures_util::future::join_all(candidates.iter().map(|p| discover::discover(registry, p))).await;
    let mut shown = 0;
    for entry in registry.providers(config) {
        let declared = config.providers.contains_key(&entry.id);
        let source = registry.key_source(&entry);
        let is_default = default_provider.as_deref() == Some(entry.id.as_str());
        if !declared && source.is_none() && !is_default {
            continue;
        }
        shown += 1;
        let mut status = Status::Ok;
        let mut detail = vec![format!("{} {}", entry.wire.as_str(), entry.base_url).trim().to_owned()];
        match source {
            Some(source) => detail.push(format!("key set ({source})")),
            None if entry.needs_key => {
                status = Status::Fail;
                let env = crate::provider::auth::env_var(&entry.id).map(|v| format!(" or {v}")).unwrap_or_default();
                detail.push(format!("key missing (keel auth set {}{env})", entry.id));
            }
            None => detail.push("no key needed".into()),
        }
        if let Some(i) = candidates.iter().position(|c| c.id == entry.id) {
            let discovery = reached[i].clone();
            match &discovery {
                Discovery::Up(models) => detail.push(format!("models listed: {}", models.len())),
                Discovery::Down(reason) => {
                    status = Status::Fail;
                    detail.push(format!("unreachable: {reason}"));
                }
            }
            // What it listed joins the model database, as in a serving engine, for the default model's check.
            registry.record_discovery(&entry.id, discovery);
        }
        report.add("provider", entry.id, status, detail.join("; "));
    }
    if shown == 0 {
        report.add("provider", "(none)", Status::Note, "no provider configured and no key found");
    }
}

fn check_default_model(report: &mut Report, registry: &Registry, config: &Config) {
    let Some(model) = config.model.clone().filter(|m| !m.is_empty()) else {
        report.add(
            "model",
            "default",
            Status::Fail,
            "no model configured: set `model` (provider/model) in the config; only the offline scripted player runs",
        );
        return;
    };
    if let Err(reason) = registry.runnable(config, &model) {
        report.add("model", model, Status::Fail, reason);
        return;
    }
    match registry.models(config).into_iter().find(|m| m.id == model) {
        Some(spec) => {
            report.add("model", model, Status::Ok, format!("default; context {} tokens", spec.context_window))
        }
        None => report.add("model", model, Status::Note, "default; not in the model database (context unknown)"),
    }
}

/// Config's MCP servers started as a serving engine starts them, each given its start-up time, then stopped.
async fn check_mcp(report: &mut Report, config: &Config, cwd: &Path) {
    let manager = mcp::Manager::default();
    manager.start_configured(config, cwd);
    manager.settle_configured().await;
    let servers = manager.list();
    manager.stop_all();
    if servers.is_empty() {
        report.add("mcp", "(none)", Status::Ok, "no MCP server configured");
    }
    for server in servers {
        let (status, detail) = match server.status {
            mcp::Status::Ready => (Status::Ok, format!("{}: ready, {} tools", server.transport, server.tools.len())),
            mcp::Status::Failed { reason, .. } => (Status::Fail, format!("{}: {reason}", server.transport)),
            mcp::Status::Starting => {
                (Status::Fail, format!("{}: not ready within its start-up time", server.transport))
            }
            mcp::Status::Stopped => (Status::Note, format!("{}: stopped", server.transport)),
        };
        report.add("mcp", server.name, status, detail);
    }
}

/// Opens the store as the engine does and counts its sessions.
fn check_store(report: &mut Report, paths: &Paths, settings: Settings) -> Option<Arc<Engine>> {
    let item = match &settings.store {
        Some(location) if is_postgres(location) => format!("postgres {}", hide_password(location)),
        Some(location) => format!("sqlite {location}"),
        None => format!("sqlite {}", paths.data_dir.join("keel.db").display()),
    };
    let settings = Settings { discover: false, list_models: false, watch_config: false, ..settings };
    let engine = match Engine::open(paths.clone(), settings) {
        Ok(engine) => engine,
        Err(e) => {
            report.add("store", item, Status::Fail, crate::secret::scrub_owned(e.to_string()));
            return None;
        }
    };
    match count_sessions(&engine) {
        Ok(n) => report.add("store", item, Status::Ok, format!("{n} sessions")),
        Err(e) => report.add("store", item, Status::Fail, format!("cannot list sessions: {e}")),
    }
    Some(engine)
}

/// How long a plugin may take to start and register.
const PLUGIN_START: Duration = Duration::from_secs(10);

/// Config's plugins started as a serving engine starts them, each given `PLUGIN_START` to register, then stopped.
async fn check_plugins(report: &mut Report, engine: &Arc<Engine>, cwd: &Path) {
    let Ok(_server) = crate::api::start_plugins(engine, cwd) else { return };
    let deadline = tokio::time::Instant::now() + PLUGIN_START;
    while engine.plugins().iter().any(|p| p.status == PluginStatus::Starting) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let plugins = engine.plugins();
    engine.stop_plugins();
    if plugins.is_empty() {
        report.add("plugin", "(none)", Status::Ok, "no plugin configured");
    }
    for p in plugins {
        let (status, detail) = match p.status {
            PluginStatus::Ready => {
                let hooks: Vec<String> = p.hooks.iter().map(keel_protocol::wire_name).collect();
                (Status::Ok, format!("ready; hooks: {}; tools: {}", list(&hooks), list(&p.tools)))
            }
            PluginStatus::Failed => (Status::Fail, p.error.unwrap_or_default()),
            PluginStatus::Starting => (Status::Fail, format!("did not register within {} s", PLUGIN_START.as_secs())),
            PluginStatus::Stopped => (Status::Note, "stopped".into()),
        };
        report.add("plugin", p.name, status, detail);
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

fn count_sessions(engine: &Engine) -> Result<usize, crate::session::Error> {
    let filter = crate::store::SessionFilter::default();
    let (mut count, mut cursor) = (0, None);
    loop {
        let page = engine.sessions.list(&filter, cursor.as_deref(), 500)?;
        count += page.sessions.len();
        match page.next.as_ref() {
            Some(next) => cursor = Some(crate::session::service::encode_cursor(next)),
            None => return Ok(count),
        }
    }
}

fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// A database URL fit to show: the password in the user part and a `password=` parameter become `***`.
pub fn hide_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let (start, end) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
            out.replace_range(start..end, "***");
        }
    }
    if let Some(query) = out.find('?') {
        let (head, params) = out.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden() {
        for (url, shown) in [
            ("postgres://keel:s3cret@db:5432/keel", "postgres://keel:***@db:5432/keel"),
            ("postgresql://keel@db/keel", "postgresql://keel@db/keel"),
            ("postgres://db/keel?user=k&password=s3cret", "postgres://db/keel?user=k&password=***"),
            ("postgres://a:b@c@host/db", "postgres://a:***@host/db"),
        ] {
            assert_eq!(super::hide_password(url), shown);
        }
    }
}
