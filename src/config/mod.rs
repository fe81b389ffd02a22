//! Configuration: JSONC files merged in a fixed order, with `{env:VAR}` and `{file:path}` substitution.
//!
//! Layers, later wins: global `config.jsonc`/`config.json`; `KEEL_CONFIG`; project `keel.jsonc`/`keel.json` and
//! `.keel/config.jsonc` from the filesystem root down to the session's cwd (an `opencode.json(c)` is converted and
//! used where a directory has no keel file); `KEEL_CONFIG_CONTENT`. Config is read when a turn starts, so edits
//! reach running sessions at their next turn without a restart.

mod codex;
pub(crate) mod edit;
pub mod first_start;
pub mod import;
pub(crate) mod jsonc;
mod legacy;
pub mod paths;
pub mod watch;
pub mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use paths::Paths;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The default model, `provider/model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `provider/model` that writes session titles; without it a session is named after its first prompt's own
    /// words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_model: Option<String>,
    /// How hard reasoning models think (`minimal`, `low`, `medium`, `high`); unset, the provider decides. An
    /// agent's and a session's own setting come first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<keel_protocol::session::ReasoningEffort>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Ordered permission rules; the last match wins.
    #[serde(default)]
    pub permissions: Vec<PermissionRule>,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSettings>,
    /// Slash commands by name: `{"test": {"template": "Run the tests of $ARGUMENTS and fix what fails",
    /// "description": "…", "agent": "build", "model": "provider/model"}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, CommandSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<CompactionSettings>,
    /// Execution ownership and crash recovery; the environment's `KEEL_LEASE_MS`, `KEEL_LEASE_RENEW_MS` and
    /// `KEEL_SHUTDOWN_GRACE_MS` override the global config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySettings>,
    /// Where sessions are stored; read at start from the global config (`keel serve --store` and `KEEL_STORE`
    /// override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSettings>,
    /// MCP servers by name: `{"fs": {"type": "local", "command": ["npx", "..."], "environment": {}}, "web":
    /// {"type": "remote", "url": "https://...", "headers": {}}}` (opencode's shape; `command` with `args`, `env`,
    /// `"type": "http"`, and a `servers` wrapper are accepted too), each optionally `enabled`, `timeoutMs` and
    /// `startupTimeoutMs`. Read by `mcp::config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<Value>,
    /// Plugins by name (their hooks run in the order of their names): `{"guard": {"command": ["python3", "guard.py"], "env": {}, "timeoutMs":
    /// 5000}}`. Read from the global config and the project's root config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Instruction files (relative to the project) added to the system prompt.
    #[serde(default)]
    pub instructions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_output: Option<ToolOutputSettings>,
    /// How `bash` is confined (Linux, Landlock): `workspace-write` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::SandboxSettings>,
    /// The environment commands start with; credentials are always left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_environment: Option<crate::sandbox::EnvPolicy>,
}

/// A plugin: a process that speaks keel's protocol on its stdio (see `plugin`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSettings {
    /// The program and its arguments, run in the engine's directory.
    pub command: Vec<String>,
    /// Added to the environment it starts with (the one `bash` gets, credentials left out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Milliseconds a hook may take before the call goes on without it (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `false` leaves it configured but not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `openai-chat`, `openai-responses`, `anthropic` or `scripted`; built-in providers know theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<crate::provider::Wire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Prefer `{env:VAR}` or the auth store to a literal key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelSettings>,
    /// The scripted provider only: the script file it plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Merged into every request body sent to this provider (objects key by key, `null` removes a key): for a
    /// server that needs a field keel does not send, e.g. `{"tool_choice": "required", "top_k": 20}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Milliseconds the provider may take to send the first byte of a response (default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout_ms: Option<u64>,
    /// Milliseconds the provider may stay silent in the middle of a stream (default 90000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// After an engine stopped while a request to this provider was out, send it again without asking, when every
    /// tool the turn called is idempotent (default false: the session waits for `recovery/decide`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_unknown_outcome: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// USD per million tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<keel_protocol::model::ModelCost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRule {
    /// A tool or action name, e.g. `bash`, `edit`, `external_directory`; `*` globs.
    pub action: String,
    #[serde(default = "any")]
    pub pattern: String,
    pub effect: Effect,
}

fn any() -> String {
    "*".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Ask,
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Added to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `primary` or `subagent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Provider turns per activity before it closes with `turn_limit` (default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Overrides the top-level `reasoningEffort` for this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<keel_protocol::session::ReasoningEffort>,
    /// Overrides the top-level `sandbox` for this agent's commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::SandboxSettings>,
    /// Tools by name or glob (`mcp_*`): `false` hides a tool from this agent. Unlisted tools are offered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, bool>,
    /// Rules that apply after every other rule while this agent runs (`plan` denies edits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<PermissionRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandSettings {
    /// The prompt; `$ARGUMENTS` is replaced by the text after the command, `$1`, `$2`… by its words.
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreSettings {
    /// `postgres://user:password@host:port/database` for a database that several engines share; absent: the
    /// SQLite file `keel.db` under keel's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverySettings {
    /// How long a session's execution lease lasts unless renewed (default 30000); read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// How often a running session renews its lease and an engine looks for sessions nobody runs (default
    /// 10000); read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_renew_ms: Option<u64>,
    /// How long a shutdown lets running turns reach a safe point before it cuts them (default 10000); read at
    /// start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_ms: Option<u64>,
    /// Automatic retries of an attempt with an unknown outcome per activity, where a provider allows them
    /// (`retryUnknownOutcome`); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<u32>,
}

impl RecoverySettings {
    pub fn budget(&self) -> u32 {
        self.retry_budget.unwrap_or(1)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactionSettings {
    /// `false` turns off compaction before a turn and after a context overflow (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
    /// Tokens kept free of the window besides the output reserve (default a tenth of the window, at most 20,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<u64>,
    /// Tokens of recent transcript kept verbatim, their tool outputs never pruned (default a quarter of the usable
    /// window, at most 8,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_tokens: Option<u64>,
    /// `provider/model` that writes summaries (default the session's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolOutputSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("config {path}: {source}")]
    Read { path: String, source: std::io::Error },
}

/// Where a layer came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub source: &'static str,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    pub layers: Vec<Layer>,
}

/// The files that are config layers for a session in `cwd` (or the global layers only), in load order, with their
/// source: the first global file that exists, `KEEL_CONFIG` (listed whether or not it exists: its absence is an
/// error), then per project folder its keel files, or else its first opencode file (`legacy`).
pub fn layer_files(paths: &Paths, cwd: Option<&Path>) -> Vec<(&'static str, PathBuf)> {
    let mut files = Vec::new();
    if let Some(path) = ["config.jsonc", "config.json"].iter().map(|n| paths.config_dir.join(n)).find(|p| p.is_file()) {
        files.push(("global", path));
    }
    if let Some(path) = std::env::var_os("KEEL_CONFIG").map(PathBuf::from) {
        files.push(("env-file", path));
    }
    for dir in cwd.map(paths::project_chain).unwrap_or_default() {
        let keel: Vec<PathBuf> = ["keel.jsonc", "keel.json", ".keel/config.jsonc"]
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.is_file())
            .collect();
        if keel.is_empty() {
            let legacy = ["opencode.jsonc", "opencode.json"].iter().map(|n| dir.join(n)).find(|p| p.is_file());
            files.extend(legacy.map(|p| ("legacy", p)));
        } else {
            files.extend(keel.into_iter().map(|p| ("project", p)));
        }
    }
    files
}

/// Loads the effective config for a session in `cwd` (or the global layers only).
pub fn load(paths: &Paths, cwd: Option<&Path>) -> Result<Loaded, ConfigError> {
    let mut merged = Value::Object(Default::default());
    let mut layers = Vec::new();
    for (source, path) in layer_files(paths, cwd) {
        let value = match read_layer(&path)? {
            Some(value) => value,
            None if source == "env-file" => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "KEEL_CONFIG names a missing file"),
                });
            }
            // Gone since it was listed.
            None => continue,
        };
        merge(&mut merged, if source == "legacy" { legacy::convert(value) } else { value });
        layers.push(Layer { source, path: Some(path) });
    }
    if let Some(content) = std::env::var("KEEL_CONFIG_CONTENT").ok().filter(|c| !c.trim().is_empty()) {
        merge(&mut merged, parse("KEEL_CONFIG_CONTENT", &content, None)?);
        layers.push(Layer { source: "env-content", path: None });
    }
    let config = serde_json::from_value(merged).map_err(|e| ConfigError::Invalid {
        path: layers.last().and_then(|l| l.path.as_ref()).map_or("(merged)".into(), |p| p.display().to_string()),
        message: scrub(&e.to_string()),
    })?;
    Ok(Loaded { config, layers })
}

/// One layer checked on its own (`keel doctor`): `Err` names the file and, for a value of the wrong shape, the
/// config path in it (`providers.local.wire: unknown variant ...`).
pub fn check_layer(source: &str, path: &Path) -> Result<(), String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let value = parse(&name, &text, path.parent()).map_err(|e| e.to_string())?;
    let value = if source == "legacy" { legacy::convert(value) } else { value };
    serde_path_to_error::deserialize::<_, Config>(value).map(|_| ()).map_err(|e| {
        let at = e.path().to_string();
        format!("{name}: {at}: {}", scrub(&e.into_inner().to_string()))
    })
}

fn read_layer(path: &Path) -> Result<Option<Value>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&path.display().to_string(), &text, path.parent()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
        Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
    }
}

fn parse(name: &str, text: &str, dir: Option<&Path>) -> Result<Value, ConfigError> {
    let text = substitute(text, dir).map_err(|message| ConfigError::Invalid { path: name.into(), message })?;
    let value: Value = serde_json::from_str(&jsonc::to_json(&text))
        .map_err(|e| ConfigError::Invalid { path: name.into(), message: scrub(&e.to_string()) })?;
    if !value.is_object() {
        return Err(ConfigError::Invalid { path: name.into(), message: "the top level must be an object".into() });
    }
    Ok(value)
}

/// serde quotes the offending value in its messages, and a config value can be a substituted secret: quoted
/// strings are dropped from error messages.
fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Replaces `{env:VAR}` and `{file:path}` with JSON-escaped values, so they are safe inside strings.
fn substitute(text: &str, dir: Option<&Path>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (kind, body) = if let Some(b) = tail.strip_prefix("{env:") {
            ("env", b)
        } else if let Some(b) = tail.strip_prefix("{file:") {
            ("file", b)
        } else {
            out.push('{');
            rest = &tail[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push_str(tail);
            rest = "";
            break;
        };
        let name = &body[..end];
        let value = match kind {
            "env" => std::env::var(name).unwrap_or_default(),
            _ => {
                let path = expand_home(name);
                let path = match dir {
                    Some(dir) if path.is_relative() => dir.join(path),
                    _ => path,
                };
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("{{file:{name}}}: {}: {e}", path.display()))?
                    .trim_end()
                    .to_owned()
            }
        };
        let escaped = serde_json::to_string(&value).unwrap_or_default();
        out.push_str(&escaped[1..escaped.len() - 1]);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Objects merge key by key; `permissions` and `instructions` append; anything else is replaced.
fn merge(base: &mut Value, overlay: Value) {
    let (Value::Object(base), Value::Object(overlay)) = (base, overlay) else { return };
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Array(existing)), Value::Array(more)) if key == "permissions" || key == "instructions" => {
                existing.extend(more);
            }
            (Some(existing @ Value::Object(_)), value @ Value::Object(_)) => merge(existing, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Config {
    /// The config as `config/get` shows it: secrets replaced.
    pub fn redacted(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(providers) = value["providers"].as_object_mut() {
            for provider in providers.values_mut() {
                if provider.get("apiKey").is_some() {
                    provider["apiKey"] = Value::String("[redacted]".into());
                }
                if let Some(headers) = provider["headers"].as_object_mut() {
                    headers.values_mut().for_each(|v| *v = Value::String("[redacted]".into()));
                }
            }
        }
        if let Some(mcp) = value.get_mut("mcp") {
            redact_secrets(mcp);
        }
        value
    }

    /// The step limit of an agent.
    pub fn steps(&self, agent: &str) -> u32 {
        self.agents.get(agent).and_then(|a| a.steps).unwrap_or(DEFAULT_STEPS).max(1)
    }
}

pub const DEFAULT_STEPS: u32 = 25;

/// MCP server settings carry environment variables, headers and tokens: their values are not shown.
fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                if ["env", "environment", "headers"].contains(&lower.as_str()) {
                    if let Some(inner) = v.as_object_mut() {
                        inner.values_mut().for_each(|x| *x = Value::String("[redacted]".into()));
                    }
                } else if ["apikey", "token", "authorization", "secret", "password"].iter().any(|k| lower.contains(k)) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// The JSON Schema of config files.
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_escapes_values() {
        // SAFETY: single-threaded test setting a variable no other test reads.
        unsafe { std::env::set_var("KEEL_TEST_SUBST", "a\"b") };
        let text = substitute(r#"{"k": "{env:KEEL_TEST_SUBST}", "m": "{env:KEEL_TEST_UNSET_X}"}"#, None).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["k"], "a\"b");
        assert_eq!(v["m"], "");
    }

    #[test]
    fn errors_and_answers_do_not_show_values() {
        assert_eq!(
            scrub(r#"invalid type: string "sk-123", expected a map"#),
            r#"invalid type: string "…", expected a map"#
        );
        let config: Config = serde_json::from_value(serde_json::json!({
            "mcp": { "servers": { "gh": { "command": ["gh-mcp"], "env": { "GITHUB_TOKEN": "ghp_secret" }, "token": "t0k" } } }
        }))
        .unwrap();
        let shown = config.redacted().to_string();
        assert!(!shown.contains("ghp_secret") && !shown.contains("t0k") && shown.contains("gh-mcp"), "{shown}");
    }

    #[test]
    fn merge_appends_rules_and_replaces_scalars() {
        let mut base = serde_json::json!({ "model": "a/b", "permissions": [1], "providers": { "x": { "baseUrl": "u", "apiKey": "k" } } });
        merge(
            &mut base,
            serde_json::json!({ "model": "c/d", "permissions": [2], "providers": { "x": { "baseUrl": "v" } } }),
        );
        assert_eq!(
            base,
            serde_json::json!({ "model": "c/d", "permissions": [1, 2], "providers": { "x": { "baseUrl": "v", "apiKey": "k" } } })
        );
    }
}
