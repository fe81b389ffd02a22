//! Config files: precedence, JSONC, substitution, legacy conversion, as `config/get` reports them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Engine, Framing, Home};
use serde_json::json;

#[tokio::test]
async fn layers_merge_nearest_last_with_substitution_and_legacy_conversion() {
    let home = Home::new();
    let root = home.path().join("proj");
    let sub = root.join("pkg");
    let legacy = home.path().join("legacy");
    std::fs::create_dir_all(sub.join(".keel")).unwrap();
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(home.path().join("config.jsonc"), r#"{ "model": "openai/gpt-5", "instructions": ["GLOBAL.md"], }"#)
        .unwrap();
    std::fs::write(root.join("token.txt"), "file-secret\n").unwrap();
    std::fs::write(
        root.join("keel.jsonc"),
        r#"{
            // project defaults
            "model": "local/qwen",
            "providers": { "local": { "wire": "openai-chat", "baseUrl": "http://127.0.0.1:9/v1",
                                      "apiKey": "{file:token.txt}", "headers": { "x-team": "{env:KEEL_TEST_TEAM}" } } },
            "permissions": [ { "action": "bash", "pattern": "git status *", "effect": "allow" } ],
        }"#,
    )
    .unwrap();
    std::fs::write(
        sub.join(".keel/config.jsonc"),
        r#"{ "agents": { "build": { "steps": 7 } }, "permissions": [ { "action": "edit", "effect": "ask" } ] }"#,
    )
    .unwrap();
    std::fs::write(
        legacy.join("opencode.json"),
        r#"{ "model": "old/m", "provider": { "old": { "npm": "@ai-sdk/anthropic", "options": { "baseURL": "http://127.0.0.1:8/v1" } } } }"#,
    )
    .unwrap();

    let engine = Engine::start_with(home.path(), Framing::Ndjson, &[("KEEL_TEST_TEAM", "core \"team\"")]).await;
    let c = &engine.client;
    c.initialize().await;

    let got = c.ok("config/get", json!({ "cwd": sub })).await;
    let config = &got["config"];
    assert_eq!(config["model"], "local/qwen");
    assert_eq!(config["agents"]["build"]["steps"], 7);
    assert_eq!(config["providers"]["local"]["apiKey"], "[redacted]");
    assert_eq!(config["providers"]["local"]["headers"]["x-team"], "[redacted]");
    assert_eq!(config["instructions"], json!(["GLOBAL.md"]));
    let actions: Vec<_> = config["permissions"].as_array().unwrap().iter().map(|r| r["action"].clone()).collect();
    assert_eq!(actions, [json!("bash"), json!("edit")], "rules from every layer, nearest last");
    let sources: Vec<_> =
        got["layers"].as_array().unwrap().iter().map(|l| l["source"].as_str().unwrap().to_owned()).collect();
    assert_eq!(sources, ["global", "project", "project"]);

    let providers = c.ok("provider/list", json!({})).await;
    assert!(providers.to_string().contains("openai"));

    let old = c.ok("config/get", json!({ "cwd": legacy })).await;
    assert_eq!(old["config"]["model"], "old/m");
    assert_eq!(old["config"]["providers"]["old"]["wire"], "anthropic");
    assert_eq!(old["layers"][1]["source"], "legacy");

    // A session in the project picks the project's model and the substituted header reaches the provider.
    let session = c.ok("session/create", json!({ "cwd": sub })).await;
    assert_eq!(session["session"]["model"], "");
}

#[tokio::test]
async fn inline_config_wins_and_broken_files_are_reported() {
    let home = Home::new();
    let ws = home.workspace();
    std::fs::write(std::path::Path::new(&ws).join("keel.json"), r#"{ "model": "a/b", "#).unwrap();
    let engine =
        Engine::start_with(home.path(), Framing::Ndjson, &[("KEEL_CONFIG_CONTENT", r#"{"model":"inline/m"}"#)]).await;
    let c = &engine.client;
    c.initialize().await;
    let e = c.err("config/get", json!({ "cwd": ws })).await;
    assert_eq!(e.code, -32602);
    assert!(e.message.contains("keel.json"), "{}", e.message);
    let global = c.ok("config/get", json!({})).await;
    assert_eq!(global["config"]["model"], "inline/m");
    assert_eq!(global["layers"], json!([{ "source": "env-content" }]));
}
