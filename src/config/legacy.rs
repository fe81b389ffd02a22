//! Converts an opencode config (`opencode.json`) into keel's shape, for projects that have no keel file.

use serde_json::{Map, Value, json};

pub fn convert(old: Value) -> Value {
    let mut out = Map::new();
    if let Some(model) = old.get("model").cloned() {
        out.insert("model".into(), model);
    }
    if let Some(instructions) = old.get("instructions").cloned() {
        out.insert("instructions".into(), instructions);
    }
    if let Some(providers) = old.get("provider").and_then(Value::as_object) {
        let mut converted = Map::new();
        for (id, p) in providers {
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
            if let Some(models) = p.get("models").and_then(Value::as_object) {
                let models: Map<String, Value> = models
                    .iter()
                    .map(|(mid, m)| {
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
                        (mid.clone(), Value::Object(nm))
                    })
                    .collect();
                np.insert("models".into(), Value::Object(models));
            }
            converted.insert(id.clone(), Value::Object(np));
        }
        out.insert("providers".into(), Value::Object(converted));
    }
    if let Some(agents) = old.get("agent").and_then(Value::as_object) {
        let converted: Map<String, Value> = agents
            .iter()
            .map(|(name, a)| {
                let mut na = Map::new();
                for (from, to) in
                    [("description", "description"), ("prompt", "system"), ("mode", "mode"), ("model", "model")]
                {
                    if let Some(v) = a.get(from) {
                        na.insert(to.into(), v.clone());
                    }
                }
                if let Some(steps) = a.get("steps").or_else(|| a.get("maxSteps")) {
                    na.insert("steps".into(), steps.clone());
                }
                (name.clone(), Value::Object(na))
            })
            .collect();
        out.insert("agents".into(), Value::Object(converted));
    }
    if let Some(permission) = old.get("permission").and_then(Value::as_object) {
        let mut rules = Vec::new();
        for (action, setting) in permission {
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
        out.insert("permissions".into(), Value::Array(rules));
    }
    Value::Object(out)
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
}
