//! MCP server settings as users write them: keel's and opencode's `mcp` shape, Claude Code's `mcpServers` entries,
//! and ACP's `mcpServers` list. All of them become one `ServerSpec`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// How long a call may run unless the server's config says otherwise (`timeoutMs`).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take from start to its tool list (`startupTimeoutMs`, opencode's `timeout`).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub name: String,
    pub transport: Transport,
    pub call_timeout: Duration,
    pub startup_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String>, cwd: Option<String> },
    /// Streamable HTTP.
    Http { url: String, headers: BTreeMap<String, String> },
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::Http { .. } => "http",
        }
    }
}

/// A server entry that cannot be used; `path` names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

fn bad(path: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError { path: path.into(), message: message.into() }
}

/// The servers of config's `mcp` by name: `{"name": {...}}` (opencode) or `{"servers": {"name": {...}}}`. Disabled
/// entries (`"enabled": false`) are left out; a bad entry is an error for that entry only, so the others still start.
pub fn from_config(mcp: Option<&Value>) -> Vec<(String, Result<ServerSpec, SpecError>)> {
    let Some(Value::Object(map)) = mcp else {
        return Vec::new();
    };
    let (entries, prefix) = match map.get("servers") {
        Some(Value::Object(servers)) if !is_server_entry(servers) => (servers, "mcp.servers"),
        _ => (map, "mcp"),
    };
    entries
        .iter()
        .filter(|(_, v)| v.get("enabled").and_then(Value::as_bool) != Some(false))
        .map(|(name, entry)| (name.clone(), entry_spec(name, entry, &format!("{prefix}.{name}"))))
        .collect()
}

/// A `servers` key that is itself a server (has a command or url) is a server named `servers`.
fn is_server_entry(map: &serde_json::Map<String, Value>) -> bool {
    ["command", "url", "type"].iter().any(|k| map.contains_key(*k))
}

fn entry_spec(name: &str, entry: &Value, path: &str) -> Result<ServerSpec, SpecError> {
    let Value::Object(obj) = entry else {
        return Err(bad(path, "a server is an object"));
    };
    check_name(name, path)?;
    let kind = obj.get("type").and_then(Value::as_str);
    let transport = match kind {
        Some("local" | "stdio") => stdio(obj, path)?,
        Some("remote" | "http" | "streamable-http" | "streamableHttp") => http(obj, path)?,
        Some("sse") => return Err(bad(format!("{path}.type"), "SSE servers are not supported; use streamable HTTP")),
        Some(other) => return Err(bad(format!("{path}.type"), format!("unknown server type {other:?}"))),
        None if obj.contains_key("command") => stdio(obj, path)?,
        None if obj.contains_key("url") => http(obj, path)?,
        None => return Err(bad(path, "a server needs a `command` or a `url`")),
    };
    let millis = |key: &str| obj.get(key).and_then(Value::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis);
    Ok(ServerSpec {
        name: name.to_owned(),
        transport,
        call_timeout: millis("timeoutMs").unwrap_or(DEFAULT_CALL_TIMEOUT),
        startup_timeout: millis("startupTimeoutMs").or_else(|| millis("timeout")).unwrap_or(DEFAULT_STARTUP_TIMEOUT),
    })
}

fn check_name(name: &str, path: &str) -> Result<(), SpecError> {
    if name.is_empty() || name.contains('/') {
        return Err(bad(path, "a server name is not empty and has no `/`"));
    }
    Ok(())
}

/// `command` is a string (with `args` beside it) or an array (opencode: the program and its arguments).
fn stdio(obj: &serde_json::Map<String, Value>, path: &str) -> Result<Transport, SpecError> {
    let mut words = match obj.get("command") {
        Some(Value::String(command)) => vec![command.clone()],
        Some(Value::Array(items)) => strings(items, &format!("{path}.command"))?,
        _ => return Err(bad(format!("{path}.command"), "a string or an array of strings")),
    };
    if let Some(args) = obj.get("args") {
        let Value::Array(items) = args else {
            return Err(bad(format!("{path}.args"), "an array of strings"));
        };
        words.extend(strings(items, &format!("{path}.args"))?);
    }
    if words.first().is_none_or(|c| c.is_empty()) {
        return Err(bad(format!("{path}.command"), "empty"));
    }
    let command = words.remove(0);
    let env = match obj.get("env").or_else(|| obj.get("environment")) {
        None => BTreeMap::new(),
        Some(v) => string_map(v, &format!("{path}.env"))?,
    };
    let cwd = obj.get("cwd").and_then(Value::as_str).map(str::to_owned);
    Ok(Transport::Stdio { command, args: words, env, cwd })
}

fn http(obj: &serde_json::Map<String, Value>, path: &str) -> Result<Transport, SpecError> {
    let url = obj.get("url").and_then(Value::as_str).ok_or_else(|| bad(format!("{path}.url"), "a string"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(format!("{path}.url"), "an http:// or https:// URL"));
    }
    let headers = match obj.get("headers") {
        None => BTreeMap::new(),
        Some(v) => string_map(v, &format!("{path}.headers"))?,
    };
    Ok(Transport::Http { url: url.to_owned(), headers })
}

fn strings(items: &[Value], path: &str) -> Result<Vec<String>, SpecError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| v.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{path}[{i}]"), "a string")))
        .collect()
}

/// `{"K": "v"}`, or ACP's `[{"name": "K", "value": "v"}]`.
fn string_map(value: &Value, path: &str) -> Result<BTreeMap<String, String>, SpecError> {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(bad(format!("{path}.{k}"), "a string")),
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = item.get("name").and_then(Value::as_str);
                let value = item.get("value").and_then(Value::as_str);
                match (name, value) {
                    (Some(n), Some(v)) => Ok((n.to_owned(), v.to_owned())),
                    _ => Err(bad(format!("{path}[{i}]"), "an object with string `name` and `value`")),
                }
            })
            .collect(),
        _ => Err(bad(path, "an object of strings")),
    }
}

impl ServerSpec {
    /// A server with the default timeouts, as a client passes it (ACP's `mcpServers` carry none); `path` names
    /// the entry in errors.
    pub fn new(name: &str, transport: Transport, path: &str) -> Result<Self, SpecError> {
        check_name(name, &format!("{path}.name"))?;
        match &transport {
            Transport::Stdio { command, .. } if command.is_empty() => {
                return Err(bad(format!("{path}.command"), "empty"));
            }
            Transport::Http { url, .. } if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(bad(format!("{path}.url"), "an http:// or https:// URL"));
            }
            _ => {}
        }
        Ok(Self {
            name: name.to_owned(),
            transport,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        })
    }
}

/// Whether `command` names a program that exists: a path (relative to `cwd`), or a name found on `PATH`. A
/// client is told at once about a server that cannot even start.
pub fn program_exists(command: &str, cwd: &std::path::Path) -> bool {
    if command.contains('/') {
        return cwd.join(command).is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn specs(mcp: Value) -> Vec<Result<ServerSpec, SpecError>> {
        from_config(Some(&mcp)).into_iter().map(|(_, spec)| spec).collect()
    }

    #[test]
    fn opencode_shapes() {
        let all = specs(json!({
            "fs": { "type": "local", "command": ["npx", "-y", "srv", "/tmp"], "environment": { "A": "1" } },
            "web": { "type": "remote", "url": "https://example.test/mcp", "headers": { "Authorization": "x" } },
            "off": { "type": "local", "command": ["x"], "enabled": false },
        }));
        assert_eq!(all.len(), 2);
        let fs = all[0].as_ref().unwrap();
        assert_eq!(
            fs.transport,
            Transport::Stdio {
                command: "npx".into(),
                args: vec!["-y".into(), "srv".into(), "/tmp".into()],
                env: [("A".to_owned(), "1".to_owned())].into(),
                cwd: None
            }
        );
        assert!(matches!(&all[1].as_ref().unwrap().transport, Transport::Http { url, .. } if url.ends_with("/mcp")));
    }

    #[test]
    fn keel_and_claude_shapes() {
        let all = specs(json!({ "servers": {
            "a": { "command": "srv", "args": ["--x"], "env": { "T": "v" }, "timeoutMs": 5 },
            "b": { "type": "http", "url": "http://127.0.0.1:1/mcp" },
        }}));
        let a = all[0].as_ref().unwrap();
        assert_eq!(a.call_timeout, Duration::from_millis(5));
        assert!(matches!(&a.transport, Transport::Stdio { command, args, .. } if command == "srv" && args == &["--x"]));
        assert_eq!(all[1].as_ref().unwrap().transport.kind(), "http");
        // A server that happens to be named `servers`.
        let named = specs(json!({ "servers": { "command": "x" } }));
        assert_eq!(named[0].as_ref().unwrap().name, "servers");
    }

    #[test]
    fn bad_entries_name_their_field() {
        let all = specs(json!({ "a": { "type": "sse", "url": "http://x" }, "b": { "command": [1] }, "c": {} }));
        let paths: Vec<String> = all.into_iter().map(|r| r.unwrap_err().path).collect();
        assert_eq!(paths, ["mcp.a.type", "mcp.b.command[0]", "mcp.c"]);
    }

    #[test]
    fn client_entries() {
        let stdio = Transport::Stdio { command: "srv".into(), args: vec![], env: BTreeMap::new(), cwd: None };
        assert_eq!(ServerSpec::new("fs", stdio.clone(), "mcpServers[0]").unwrap().call_timeout, DEFAULT_CALL_TIMEOUT);
        assert_eq!(ServerSpec::new("a/b", stdio, "mcpServers[0]").unwrap_err().path, "mcpServers[0].name");
        let ftp = Transport::Http { url: "ftp://x".into(), headers: BTreeMap::new() };
        assert_eq!(ServerSpec::new("h", ftp, "mcpServers[1]").unwrap_err().path, "mcpServers[1].url");
        assert!(program_exists("sh", std::path::Path::new("/")));
        assert!(!program_exists("/nonexistent/srv", std::path::Path::new("/")));
    }
}
