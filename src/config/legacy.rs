//! Converts an opencode config (`opencode.json`) into keel's shape: as a layer for projects that have no keel
//! file, and with a report for `keel config import`.

use serde_json::{Map, Value, json};

use super::import::Conversion;

pub fn convert(old: Value) -> Value {
    convert_reported(old).config
}

pub fn convert_reported(old: Value) -> Conversion {
    let mut c = Conversion::default();
    let mut out = Map::new();
    let Value::Object(top) = old else { return c };
    for (key, value) in &top {
        match key.as_str() {
            "model" | "instructions" => {
                out.insert(key.clone(), value.clone());
                c.map(key, key);
            }
            // opencode's `mcp` shape is one keel reads as it is.
            "mcp" => {
                out.insert("mcp".into(), value.clone());
                for name in value.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                    c.map(&format!("mcp.{name}"), &format!("mcp.{name}"));
                }
            }
            "small_model" => {
                out.insert("smallModel".into(), value.clone());
                c.map("smallModel", "small_model");
            }
            "provider" => {
                let converted = providers(&mut c, value);
                out.insert("providers".into(), converted);
            }
            "agent" | "mode" => {
                let converted = agents(&mut c, key, value);
                let agents = out.entry("agents").or_insert_with(|| Value::Object(Map::new()));
                if let (Some(agents), Value::Object(more)) = (agents.as_object_mut(), converted) {
                    agents.extend(more);
                }
            }
            "permission" => {
                out.insert("permissions".into(), Value::Array(permissions(value)));
                c.map("permissions", "permission");
            }
            "$schema" => {}
            "theme" | "keybinds" | "tui" | "layout" | "share" | "autoupdate" | "username" => {
                c.skip(key, "a terminal UI setting; keel is headless")
            }
            "tools" => c.skip(key, "use `permissions` rules with effect `deny` to turn tools off"),
            "disabled_providers" | "enabled_providers" => {
                c.skip(key, "keel lists every provider; leave it unconfigured")
            }
            _ => c.skip(key, "no keel equivalent"),
        }
    }
    c.config = Value::Object(out);
    c
}

fn providers(c: &mut Conversion, value: &Value) -> Value {
    let mut converted = Map::new();
    for (id, p) in value.as_object().into_iter().flatten() {
        let mut np = Map::new();
        let wire = match p.get("npm").and_then(Value::as_str) {
            Some("@ai-sdk/anthropic") => Some("anthropic"),
            Some("@ai-sdk/openai") => Some("openai-responses"),
            Some(_) => Some("openai-chat"),
            None => None,
        };
        if let Some(wire) = wire {
            np.insert("wire".into(), json!(wire));
        }
        if let Some(name) = p.get("name") {
            np.insert("name".into(), name.clone());
        }
        let options = &p["options"];
        if let Some(url) = options.get("baseURL").or_else(|| options.get("baseUrl")) {
            np.insert("baseUrl".into(), url.clone());
        }
        if let Some(key) = options.get("apiKey") {
            np.insert("apiKey".into(), key.clone());
        }
        if let Some(headers) = options.get("headers") {
            np.insert("headers".into(), headers.clone());
        }
        if let Some(timeout) = options.get("timeout").filter(|t| t.is_u64()) {
            np.insert("firstByteTimeoutMs".into(), timeout.clone());
        }
        if let Some(models) = p.get("models").and_then(Value::as_object) {
            let models: Map<String, Value> = models.iter().map(|(mid, m)| (mid.clone(), model(m))).collect();
            np.insert("models".into(), Value::Object(models));
        }
        c.map(&format!("providers.{id}"), &format!("provider.{id}"));
        for key in options.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if !["baseURL", "baseUrl", "apiKey", "headers", "timeout"].contains(&key.as_str()) {
                c.skip(&format!("provider.{id}.options.{key}"), "no keel equivalent");
            }
        }
        converted.insert(id.clone(), Value::Object(np));
    }
    Value::Object(converted)
}

/// A model entry: opencode's follow models.dev (`limit`, `cost` with snake_case, `tool_call`, `reasoning`,
/// `attachment`).
fn model(m: &Value) -> Value {
    let mut nm = Map::new();
    if let Some(name) = m.get("name") {
        nm.insert("name".into(), name.clone());
    }
    if let Some(context) = m["limit"].get("context") {
        nm.insert("contextWindow".into(), context.clone());
    }
    if let Some(output) = m["limit"].get("output") {
        nm.insert("maxOutputTokens".into(), output.clone());
    }
    if let Some(cost) = m.get("cost").and_then(Value::as_object) {
        let price = |k: &str| cost.get(k).and_then(Value::as_f64).unwrap_or_default();
        nm.insert(
            "cost".into(),
            json!({ "input": price("input"), "output": price("output"),
                    "cacheRead": price("cache_read"), "cacheWrite": price("cache_write") }),
        );
    }
    for (from, to) in [("tool_call", "tools"), ("reasoning", "reasoning"), ("attachment", "images")] {
        if let Some(flag) = m.get(from).filter(|v| v.is_boolean()) {
            nm.insert(to.into(), flag.clone());
        }
    }
    Value::Object(nm)
}

fn agents(c: &mut Conversion, section: &str, value: &Value) -> Value {
    let mut converted = Map::new();
    for (name, a) in value.as_object().into_iter().flatten() {
        let mut na = Map::new();
        for (from, to) in [("description", "description"), ("prompt", "system"), ("mode", "mode"), ("model", "model")] {
            if let Some(v) = a.get(from) {
                na.insert(to.into(), v.clone());
            }
        }
        if section == "mode" && !na.contains_key("mode") {
            na.insert("mode".into(), json!("primary"));
        }
        if let Some(steps) = a.get("steps").or_else(|| a.get("maxSteps")) {
            na.insert("steps".into(), steps.clone());
        }
        c.map(&format!("agents.{name}"), &format!("{section}.{name}"));
        for key in a.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            let known = ["description", "prompt", "mode", "model", "steps", "maxSteps"];
            if !known.contains(&key.as_str()) {
                let why = match key.as_str() {
                    "tools" | "permission" => "use `permissions` rules (they apply to every agent)",
                    _ => "no keel equivalent",
                };
                c.skip(&format!("{section}.{name}.{key}"), why);
            }
        }
        converted.insert(name.clone(), Value::Object(na));
    }
    Value::Object(converted)
}

fn permissions(value: &Value) -> Vec<Value> {
    let mut rules = Vec::new();
    for (action, setting) in value.as_object().into_iter().flatten() {
        match setting {
            Value::String(effect) => rules.push(json!({ "action": action, "pattern": "*", "effect": effect })),
            Value::Object(patterns) => {
                for (pattern, effect) in patterns {
                    rules.push(json!({ "action": action, "pattern": pattern, "effect": effect }));
                }
            }
            _ => {}
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_providers_agents_and_permissions() {
        let old = json!({
            "model": "local/qwen",
            "provider": { "local": { "npm": "@ai-sdk/openai-compatible",
                "options": { "baseURL": "http://127.0.0.1:11434/v1" },
                "models": { "qwen": { "limit": { "context": 32768, "output": 4096 } } } } },
            "agent": { "review": { "prompt": "Be strict", "maxSteps": 5 } },
            "permission": { "edit": "ask", "bash": { "git status": "allow" } }
        });
        let new = convert(old);
        assert_eq!(new["providers"]["local"]["wire"], "openai-chat");
        assert_eq!(new["providers"]["local"]["baseUrl"], "http://127.0.0.1:11434/v1");
        assert_eq!(new["providers"]["local"]["models"]["qwen"]["contextWindow"], 32768);
        assert_eq!(new["agents"]["review"], json!({ "system": "Be strict", "steps": 5 }));
        assert_eq!(new["permissions"][1], json!({ "action": "edit", "pattern": "*", "effect": "ask" }));
        let parsed: super::super::Config = serde_json::from_value(new).unwrap();
        assert_eq!(parsed.model.as_deref(), Some("local/qwen"));
    }

    #[test]
    fn reports_mcp_models_and_what_has_no_equivalent() {
        let old = json!({
            "$schema": "https://opencode.ai/config.json",
            "theme": "tokyonight",
            "small_model": "local/tiny",
            "mcp": { "fs": { "type": "local", "command": ["mcp-fs", "."], "environment": { "A": "b" } } },
            "provider": { "local": { "options": { "baseURL": "http://x/v1", "fetch": 1 },
                "models": { "m": { "cost": { "input": 1, "cache_read": 0.1 }, "tool_call": true, "attachment": false } } } },
            "agent": { "plan": { "tools": { "write": false }, "temperature": 0.1 } },
            "mode": { "fast": { "model": "local/m" } }
        });
        let c = convert_reported(old);
        assert_eq!(c.config["mcp"]["fs"]["command"], json!(["mcp-fs", "."]));
        assert_eq!(c.config["smallModel"], "local/tiny");
        assert_eq!(c.config["providers"]["local"]["models"]["m"]["cost"]["cacheRead"], 0.1);
        assert_eq!(c.config["providers"]["local"]["models"]["m"]["tools"], true);
        assert_eq!(c.config["agents"]["fast"]["mode"], "primary");
        let unmapped = c.unmapped.join("\n");
        for expected in ["theme:", "agent.plan.tools:", "agent.plan.temperature:", "provider.local.options.fetch:"] {
            assert!(unmapped.contains(expected), "{expected} in {unmapped}");
        }
        assert!(c.mapped.iter().any(|m| m == "mcp.fs ← mcp.fs"), "{:?}", c.mapped);
        let _: super::super::Config = serde_json::from_value(c.config).unwrap();
    }
}
