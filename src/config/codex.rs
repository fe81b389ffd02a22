//! Converts codex's `~/.codex/config.toml` (as JSON): the model and its provider, `model_providers`,
//! `mcp_servers`, `approval_policy`, `sandbox_mode`.

use serde_json::{Map, Value, json};

use super::import::Conversion;

pub fn convert(doc: &Value) -> Conversion {
    let mut c = Conversion::default();
    let mut out = Map::new();
    let Some(top) = doc.as_object() else { return c };
    if let Some(model) = top.get("model").and_then(Value::as_str) {
        let provider = top.get("model_provider").and_then(Value::as_str).unwrap_or("openai");
        out.insert("model".into(), json!(format!("{provider}/{model}")));
        c.map("model", "model + model_provider");
    }
    if let Some(providers) = top.get("model_providers").and_then(Value::as_object) {
        let mut converted = Map::new();
        for (id, p) in providers {
            converted.insert(id.clone(), provider(&mut c, id, p));
        }
        out.insert("providers".into(), Value::Object(converted));
    }
    if let Some(servers) = top.get("mcp_servers").and_then(Value::as_object) {
        let mut converted = Map::new();
        for (name, s) in servers {
            converted.insert(name.clone(), mcp_server(&mut c, name, s));
        }
        out.insert("mcp".into(), Value::Object(converted));
    }
    if let Some(policy) = top.get("approval_policy").and_then(Value::as_str) {
        let rules = match policy {
            "never" => Some(json!([{ "action": "*", "pattern": "*", "effect": "allow" }])),
            "on-request" | "on-failure" => Some(json!([
                { "action": "bash", "pattern": "*", "effect": "allow" },
                { "action": "edit", "pattern": "*", "effect": "allow" }
            ])),
            _ => None,
        };
        match rules {
            Some(rules) => {
                out.insert("permissions".into(), rules);
                c.map("permissions", &format!("approval_policy = {policy:?} (commands confined by the sandbox)"));
            }
            None if policy == "untrusted" => {
                c.map("permissions", "approval_policy = \"untrusted\" (keel's defaults ask)")
            }
            None => c.skip("approval_policy", &format!("{policy:?} is not a codex policy keel knows")),
        }
    }
    let mut sandbox = Map::new();
    if let Some(mode) = top.get("sandbox_mode").and_then(Value::as_str) {
        let keel = match mode {
            "read-only" => Some("read-only"),
            "workspace-write" => Some("workspace-write"),
            "danger-full-access" => Some("off"),
            _ => None,
        };
        match keel {
            Some(keel) => {
                sandbox.insert("mode".into(), json!(keel));
                c.map("sandbox.mode", "sandbox_mode");
            }
            None => c.skip("sandbox_mode", &format!("{mode:?} is not a codex mode keel knows")),
        }
    }
    if let Some(network) = top.get("sandbox_workspace_write").and_then(|s| s.get("network_access")) {
        sandbox.insert("network".into(), network.clone());
        c.map("sandbox.network", "sandbox_workspace_write.network_access");
    }
    if !sandbox.is_empty() {
        out.insert("sandbox".into(), Value::Object(sandbox));
    }
    for key in top.keys() {
        let why = match key.as_str() {
            "model"
            | "model_provider"
            | "model_providers"
            | "mcp_servers"
            | "approval_policy"
            | "sandbox_mode"
            | "sandbox_workspace_write" => continue,
            "profiles" | "profile" => "keel has no profiles; use a project keel.jsonc per setup",
            "model_reasoning_effort" | "model_reasoning_summary" | "model_verbosity" => {
                "reasoning settings are not configurable in keel yet"
            }
            "shell_environment_policy" => "set `shellEnvironment` by hand (its shape differs)",
            "history" | "tui" | "notify" | "file_opener" | "hide_agent_reasoning" | "show_raw_agent_reasoning" => {
                "a terminal UI setting; keel is headless"
            }
            _ => "no keel equivalent",
        };
        c.skip(key, why);
    }
    c.config = Value::Object(out);
    c
}

fn provider(c: &mut Conversion, id: &str, p: &Value) -> Value {
    let mut np = Map::new();
    let wire = match p.get("wire_api").and_then(Value::as_str) {
        Some("responses") => "openai-responses",
        _ => "openai-chat",
    };
    np.insert("wire".into(), json!(wire));
    if let Some(name) = p.get("name") {
        np.insert("name".into(), name.clone());
    }
    if let Some(url) = p.get("base_url") {
        np.insert("baseUrl".into(), url.clone());
    }
    if let Some(var) = p.get("env_key").and_then(Value::as_str) {
        np.insert("apiKey".into(), json!(format!("{{env:{var}}}")));
    }
    let mut headers = Map::new();
    if let Some(fixed) = p.get("http_headers").and_then(Value::as_object) {
        headers.extend(fixed.clone());
    }
    if let Some(from_env) = p.get("env_http_headers").and_then(Value::as_object) {
        for (name, var) in from_env {
            headers.insert(name.clone(), json!(format!("{{env:{}}}", var.as_str().unwrap_or_default())));
        }
    }
    if !headers.is_empty() {
        np.insert("headers".into(), Value::Object(headers));
    }
    c.map(&format!("providers.{id}"), &format!("model_providers.{id}"));
    for key in p.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if !["name", "base_url", "env_key", "wire_api", "http_headers", "env_http_headers"].contains(&key.as_str()) {
            c.skip(&format!("model_providers.{id}.{key}"), "no keel equivalent");
        }
    }
    Value::Object(np)
}

fn mcp_server(c: &mut Conversion, name: &str, s: &Value) -> Value {
    let mut ns = Map::new();
    if let Some(url) = s.get("url") {
        ns.insert("type".into(), json!("remote"));
        ns.insert("url".into(), url.clone());
        if let Some(var) = s.get("bearer_token_env_var").and_then(Value::as_str) {
            ns.insert("headers".into(), json!({ "Authorization": format!("Bearer {{env:{var}}}") }));
        }
    } else {
        let mut command = vec![s.get("command").cloned().unwrap_or(Value::Null)];
        command.extend(s.get("args").and_then(Value::as_array).cloned().unwrap_or_default());
        ns.insert("type".into(), json!("local"));
        ns.insert("command".into(), Value::Array(command));
        if let Some(env) = s.get("env") {
            ns.insert("environment".into(), env.clone());
        }
        if let Some(cwd) = s.get("cwd") {
            ns.insert("cwd".into(), cwd.clone());
        }
    }
    let seconds = |key: &str| s.get(key).and_then(Value::as_f64).map(|v| json!((v * 1000.0) as u64));
    if let Some(ms) = seconds("startup_timeout_sec") {
        ns.insert("startupTimeoutMs".into(), ms);
    }
    if let Some(ms) = seconds("tool_timeout_sec") {
        ns.insert("timeoutMs".into(), ms);
    }
    if let Some(enabled) = s.get("enabled") {
        ns.insert("enabled".into(), enabled.clone());
    }
    c.map(&format!("mcp.{name}"), &format!("mcp_servers.{name}"));
    for key in ["enabled_tools", "disabled_tools"] {
        if s.get(key).is_some() {
            c.skip(&format!("mcp_servers.{name}.{key}"), "use `permissions` rules with action `mcp`");
        }
    }
    Value::Object(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_model_providers_servers_and_policy() {
        let doc: toml::Table = toml::from_str(
            r#"
model = "qwen3"
model_provider = "ollama"
approval_policy = "on-request"
sandbox_mode = "workspace-write"
model_reasoning_effort = "high"

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"
env_key = "OLLAMA_KEY"
query_params = { a = "b" }

[mcp_servers.fs]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-filesystem", "."]
env = { TOKEN = "x" }
startup_timeout_sec = 20

[mcp_servers.web]
url = "https://example.invalid/mcp"
bearer_token_env_var = "WEB_TOKEN"

[profiles.fast]
model = "o4-mini"
"#,
        )
        .unwrap();
        let c = convert(&serde_json::to_value(doc).unwrap());
        let k = &c.config;
        assert_eq!(k["model"], "ollama/qwen3");
        assert_eq!(k["providers"]["ollama"]["wire"], "openai-chat");
        assert_eq!(k["providers"]["ollama"]["apiKey"], "{env:OLLAMA_KEY}");
        assert_eq!(k["mcp"]["fs"]["command"], json!(["npx", "-y", "@modelcontextprotocol/server-filesystem", "."]));
        assert_eq!(k["mcp"]["fs"]["startupTimeoutMs"], 20000);
        assert_eq!(k["mcp"]["web"]["headers"]["Authorization"], "Bearer {env:WEB_TOKEN}");
        assert_eq!(k["permissions"][0]["action"], "bash");
        assert_eq!(k["sandbox"]["mode"], "workspace-write");
        let unmapped = c.unmapped.join("\n");
        assert!(unmapped.contains("profiles") && unmapped.contains("model_reasoning_effort"), "{unmapped}");
        assert!(unmapped.contains("model_providers.ollama.query_params"), "{unmapped}");
        let config: super::super::Config = serde_json::from_value(c.config.clone()).unwrap();
        assert_eq!(crate::mcp::config::from_config(config.mcp.as_ref()).iter().filter(|(_, s)| s.is_ok()).count(), 2);
    }
}
