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
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(&legacy).unwrap();
    // Above the project's root: not a layer of it.
    std::fs::write(home.path().join("keel.jsonc"), r#"{ "model": "stray/above-the-root" }"#).unwrap();
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

    // Outside a repository the project is the directory alone: its parent's files are not layers.
    let outside = home.path().join("plain/dir");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(home.path().join("plain/keel.jsonc"), r#"{ "model": "stray/parent" }"#).unwrap();
    let plain = c.ok("config/get", json!({ "cwd": outside })).await;
    assert_eq!(plain["config"]["model"], "openai/gpt-5");

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

async fn import(home: &Home, args: &[&str]) -> (bool, String) {
    let out = common::keel_command(home.path()).args(["config", "import"]).args(args).output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    (out.status.success(), text)
}

#[tokio::test]
async fn an_opencode_config_is_imported_with_its_report() {
    let home = Home::new();
    let file = home.path().join("opencode.jsonc");
    std::fs::write(
        &file,
        r#"{
          // opencode's own
          "$schema": "https://opencode.ai/config.json",
          "theme": "opencode",
          "model": "local/qwen",
          "small_model": "local/tiny",
          "provider": { "local": { "npm": "@ai-sdk/openai-compatible", "options": { "baseURL": "http://127.0.0.1:9/v1" },
                                    "models": { "qwen": { "limit": { "context": 32768, "output": 4096 } } } } },
          "agent": { "review": { "prompt": "Be strict", "temperature": 0.1 } },
          "permission": { "bash": { "git *": "allow" } },
          "mcp": { "fs": { "type": "local", "command": ["mcp-fs", "."] } },
          "instructions": ["AGENTS.md"],
        }"#,
    )
    .unwrap();
    let (ok, report) = import(&home, &[file.to_str().unwrap()]).await;
    assert!(ok, "{report}");
    for line in [
        "mapped      providers.local ← provider.local",
        "mapped      agents.review ← agent.review",
        "mapped      mcp.fs ← mcp.fs",
        "mapped      smallModel ← small_model",
        "not mapped  theme: a terminal UI setting",
        "not mapped  agent.review.temperature: no keel equivalent",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
    assert!(!home.path().join("config.jsonc").exists(), "nothing is written without --write");
}

#[tokio::test]
async fn a_codex_config_is_imported_written_and_used() {
    let home = Home::new();
    let file = home.path().join("config.toml");
    std::fs::write(
        &file,
        r#"
model = "qwen3"
model_provider = "ollama"
approval_policy = "never"
sandbox_mode = "workspace-write"
model_reasoning_effort = "high"

[model_providers.ollama]
name = "Ollama"
base_url = "http://127.0.0.1:9/v1"

[mcp_servers.fs]
command = "mcp-fs"
args = ["."]
tool_timeout_sec = 30

[profiles.fast]
model = "o4-mini"
"#,
    )
    .unwrap();
    std::fs::write(home.path().join("config.jsonc"), "{\n  // mine\n  \"instructions\": [\"NOTES.md\"]\n}\n").unwrap();
    let (ok, report) = import(&home, &[file.to_str().unwrap(), "--write"]).await;
    assert!(ok, "{report}");
    for line in [
        "mapped      model ← model + model_provider",
        "mapped      providers.ollama ← model_providers.ollama",
        "mapped      mcp.fs ← mcp_servers.fs",
        "mapped      permissions ← approval_policy = \"never\"",
        "mapped      sandbox.mode ← sandbox_mode",
        "not mapped  profiles: keel has no profiles",
        "not mapped  model_reasoning_effort:",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
    let written = std::fs::read_to_string(home.path().join("config.jsonc")).unwrap();
    assert!(written.contains("// mine"), "{written}");

    let engine = Engine::ready(home.path()).await;
    let got = engine.client.ok("config/get", json!({})).await;
    assert_eq!(got["config"]["model"], "ollama/qwen3");
    assert_eq!(got["config"]["providers"]["ollama"]["baseUrl"], "http://127.0.0.1:9/v1");
    assert_eq!(got["config"]["mcp"]["fs"]["timeoutMs"], 30000);
    assert_eq!(got["config"]["permissions"][0]["effect"], "allow");
    assert_eq!(got["config"]["instructions"], json!(["NOTES.md"]));

    let (ok, report) = import(&home, &["--from", "codex", home.path().join("missing.toml").to_str().unwrap()]).await;
    assert!(!ok && report.contains("missing.toml"), "{report}");
}

#[tokio::test]
async fn model_list_marks_the_models_that_can_run() {
    let home = Home::new();
    let config = json!({
        "model": "local/small",
        "providers": { "local": { "wire": "openai-chat", "baseUrl": "http://127.0.0.1:9/v1", "models": { "small": {} } } },
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = Engine::ready(home.path()).await;
    let list = engine.client.ok("model/list", json!({})).await;
    let models = list["models"].as_array().unwrap();
    let model = |id: &str| models.iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no {id} in {list}"));
    // (model, runnable, why not)
    let cases = [("local/small", true, None), ("scripted/default", false, Some("offline scripted playback"))];
    for (id, runnable, why) in cases {
        let m = model(id);
        assert_eq!(m["runnable"], runnable, "{m}");
        match why {
            None => assert!(m.get("notRunnable").is_none(), "{m}"),
            Some(why) => assert!(m["notRunnable"].as_str().unwrap().contains(why), "{m}"),
        }
    }
    let openai = models.iter().find(|m| m["provider"] == "openai").unwrap();
    assert_eq!(openai["runnable"], false, "{openai}");
    assert!(openai["notRunnable"].as_str().unwrap().contains("keel auth set openai"), "{openai}");
    let ollama = models.iter().find(|m| m["provider"] == "ollama");
    if let Some(ollama) = ollama {
        assert_eq!(ollama["runnable"], false, "a built-in provider nobody configured: {ollama}");
    }
}

#[tokio::test]
async fn the_first_start_of_a_home_imports_the_users_opencode_config_once() {
    let home = Home::new();
    let mock = common::mock::MockModel::start().await;
    mock.push(keel::provider::scripted::ScriptTurn {
        text: Some("from the imported model".into()),
        ..Default::default()
    });
    let xdg = home.path().join("xdg");
    std::fs::create_dir_all(xdg.join("opencode")).unwrap();
    let opencode = json!({
        "theme": "opencode",
        "model": "mock/m",
        "provider": { "mock": { "npm": "@ai-sdk/openai-compatible", "options": { "baseURL": mock.url() },
                                "models": { "m": {} } } }
    });
    std::fs::write(xdg.join("opencode/opencode.json"), opencode.to_string()).unwrap();
    let fresh = home.path().join("fresh");
    let run = || {
        let mut cmd = common::keel_command(&fresh);
        cmd.env("XDG_CONFIG_HOME", &xdg).env("CODEX_HOME", home.path().join("no-codex"));
        cmd.args(["run", "hello"]).current_dir(home.workspace());
        cmd
    };
    let out = run().output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("from the imported model"));
    assert!(stderr.contains("first start: imported") && stderr.contains("opencode.json"), "{stderr}");
    let written = std::fs::read_to_string(fresh.join("config.jsonc")).unwrap();
    assert!(written.starts_with("// Imported from"), "{written}");
    assert!(written.contains("mapped      providers.mock ← provider.mock"), "{written}");
    assert!(written.contains("not mapped  theme"), "{written}");

    mock.push(keel::provider::scripted::ScriptTurn { text: Some("again".into()), ..Default::default() });
    let out = run().output().await.unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("first start"), "imported once");
    assert_eq!(std::fs::read_to_string(fresh.join("config.jsonc")).unwrap(), written);
}
