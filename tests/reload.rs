//! Config, credentials and models change while clients are attached: every client hears of it, a broken edit
//! changes nothing, `config/set` keeps the file's comments, and providers' own model lists join the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::mock::MockModel;
use common::{Client, Home, SocketEngine, WAIT};
use keel::provider::scripted::ScriptTurn;
use serde_json::{Value, json};

/// The next notification `method` that `accept` takes; others are skipped.
async fn heard(c: &Client, method: &str, accept: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let m = c.next_message().await;
            if m["method"] == method && accept(&m["params"]) {
                return m["params"].clone();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {method}"))
}

fn config(mock: &MockModel, model: &str) -> String {
    format!(
        "{{\n  // the team's model\n  \"model\": \"{model}\",\n  \"providers\": {{\n    \"mock\": {{ \"wire\": \"openai-chat\", \"baseUrl\": \"{}\" }} // local\n  }}\n}}\n",
        mock.url()
    )
}

fn text(t: &str) -> ScriptTurn {
    ScriptTurn { text: Some(t.into()), ..Default::default() }
}

/// Prompts and waits for the activity to close; returns the model the mock was asked for.
async fn turn(c: &Client, mock: &MockModel, session: &str, sub: &str) -> String {
    let before = mock.requests().len();
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "hi" }] })).await;
    c.events_until(sub, |e| e["type"] == "activity.closed").await;
    let requests = mock.requests();
    assert_eq!(requests.len(), before + 1);
    requests[before].body["model"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_edited_config_file_reaches_every_client_and_the_next_turn() {
    let home = Home::new();
    let mock = MockModel::start().await;
    (0..4).for_each(|_| mock.push(text("ok")));
    let file = home.path().join("config.jsonc");
    std::fs::write(&file, config(&mock, "mock/first")).unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let (a, b) = (engine.connect().await, engine.connect().await);
    let session = a.create_session(&home.workspace()).await;
    let sub = a.subscribe(&session, 0).await;
    assert_eq!(turn(&a, &mock, &session, &sub).await, "first");

    let written = Instant::now();
    std::fs::write(&file, config(&mock, "mock/second")).unwrap();
    for c in [&a, &b] {
        let changed = heard(c, "config/changed", |p| p.get("cwd").is_none()).await;
        assert_eq!(changed["keys"], json!(["model"]));
    }
    eprintln!("figure: file write to config/changed at the second client: {:?}", written.elapsed());
    assert_eq!(turn(&a, &mock, &session, &sub).await, "second", "the next turn reads the new config");

    // A project file in the session's directory, in a `.keel/` made after the engine started. (The global change
    // above was announced for the session's directory too: the keys tell the notices apart.)
    let ws = home.workspace();
    let project = std::path::Path::new(&ws).join(".keel/config.jsonc");
    let both = json!(["instructions", "model"]);
    std::fs::create_dir_all(project.parent().unwrap()).unwrap();
    std::fs::write(&project, r#"{ "model": "mock/project", "instructions": ["P.md"] }"#).unwrap();
    heard(&b, "config/changed", |p| p["cwd"] == ws.as_str() && p["keys"] == both).await;
    assert_eq!(turn(&a, &mock, &session, &sub).await, "project");
    std::fs::remove_file(&project).unwrap();
    heard(&b, "config/changed", |p| p["cwd"] == ws.as_str() && p["keys"] == both).await;

    // A broken edit: every client is told which file and why, and turns go on with the last good config.
    std::fs::write(&file, "{ \"model\": \"mock/third\", ").unwrap();
    for c in [&a, &b] {
        let invalid = heard(c, "config/invalid", |_| true).await;
        assert!(invalid["path"].as_str().unwrap().ends_with("config.jsonc"), "{invalid}");
        assert!(!invalid["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(turn(&a, &mock, &session, &sub).await, "second");
    // A client that connects now hears of the broken file too.
    let late = engine.connect().await;
    let invalid = heard(&late, "config/invalid", |_| true).await;
    assert!(invalid["path"].as_str().unwrap().ends_with("config.jsonc"), "{invalid}");
    // Fixed again: announced as a change from the last good config.
    std::fs::write(&file, config(&mock, "mock/fourth")).unwrap();
    let changed = heard(&b, "config/changed", |p| p.get("cwd").is_none()).await;
    assert_eq!(changed["keys"], json!(["model"]));
}

#[tokio::test]
async fn config_set_keeps_comments_validates_first_and_the_next_turn_uses_it() {
    let home = Home::new();
    let mock = MockModel::start().await;
    (0..2).for_each(|_| mock.push(text("ok")));
    let file = home.path().join("config.jsonc");
    std::fs::write(&file, config(&mock, "mock/first")).unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let (a, b) = (engine.connect().await, engine.connect().await);
    let ws = home.workspace();
    let session = a.create_session(&ws).await;
    let sub = a.subscribe(&session, 0).await;

    let set = a.ok("config/set", json!({ "scope": "global", "path": "model", "value": "mock/second" })).await;
    assert_eq!(set, json!({ "path": file.to_str().unwrap(), "changed": true }));
    let text_now = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text_now, config(&mock, "mock/second"), "only the value changed; comments and layout kept");
    let changed = heard(&b, "config/changed", |p| p.get("cwd").is_none()).await;
    assert_eq!(changed["keys"], json!(["model"]));
    assert_eq!(turn(&a, &mock, &session, &sub).await, "second");

    // An invalid value is refused, naming the config path, and the file is not touched.
    let e = a
        .err("config/set", json!({ "scope": "global", "path": "providers.mock.wire", "value": "carrier-pigeon" }))
        .await;
    assert_eq!(e.code, -32602);
    assert_eq!(e.data["path"], "value");
    assert!(e.message.contains("providers.mock.wire"), "{}", e.message);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text_now);
    let e = a.err("config/set", json!({ "scope": "project", "path": "model", "value": "x/y" })).await;
    assert_eq!(e.data["path"], "cwd");

    // A key with a dot, in a project file that does not exist yet.
    let path = json!(["providers", "mock", "models", "gpt-4.1", "contextWindow"]);
    let set = a.ok("config/set", json!({ "scope": "project", "cwd": ws, "path": path, "value": 4096 })).await;
    assert!(set["path"].as_str().unwrap().ends_with("workspace/keel.jsonc"));
    // The session's directory is followed too (the global `model` change above was announced for it as well).
    heard(&b, "config/changed", |p| p["cwd"] == ws.as_str() && p["keys"] == json!(["providers"])).await;
    let got = a.ok("config/get", json!({ "cwd": ws })).await;
    assert_eq!(got["config"]["providers"]["mock"]["models"]["gpt-4.1"]["contextWindow"], 4096);

    let unset = a.ok("config/unset", json!({ "scope": "global", "path": "model" })).await;
    assert_eq!(unset["changed"], true);
    assert!(!std::fs::read_to_string(&file).unwrap().contains("\"model\""));
    assert!(std::fs::read_to_string(&file).unwrap().contains("// local"));
    let again = a.ok("config/unset", json!({ "scope": "global", "path": "model" })).await;
    assert_eq!(again["changed"], false);
}

#[tokio::test]
async fn credentials_changes_are_announced_without_the_secret() {
    let home = Home::new();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let (a, b) = (engine.connect().await, engine.connect().await);
    a.ok("auth/set", json!({ "provider": "groq", "apiKey": "gsk-very-secret" })).await;
    let changed = tokio::time::timeout(WAIT, async {
        loop {
            let m = b.next_message().await;
            assert!(!m.to_string().contains("gsk-very-secret"));
            if m["method"] == "auth/changed" {
                return m["params"].clone();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(changed, json!({ "provider": "groq" }));
    heard(&b, "provider/listChanged", |_| true).await;
    a.ok("auth/remove", json!({ "provider": "groq" })).await;
    assert_eq!(heard(&b, "auth/changed", |_| true).await, json!({ "provider": "groq" }));
}

#[tokio::test]
async fn models_a_provider_lists_join_the_database_and_run() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(text("from a discovered model"));
    // A provider that is down: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // And one that accepts connections and never answers: the engine serves while it waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let file = home.path().join("config.jsonc");
    let with_gone = |model: &str| {
        let mut c: Value = serde_json::from_str(&keel_jsonc(&config(&mock, model))).unwrap();
        c["providers"]["gone"] = json!({ "wire": "openai-chat", "baseUrl": format!("http://127.0.0.1:{closed}/v1") });
        c["providers"]["silent"] =
            json!({ "wire": "openai-chat", "baseUrl": format!("http://127.0.0.1:{silent_port}/v1") });
        c.to_string()
    };
    std::fs::write(&file, with_gone("mock/first")).unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let providers = c.ok("provider/list", json!({})).await;
    let waiting = providers["providers"].as_array().unwrap().iter().find(|p| p["id"] == "silent").unwrap().clone();
    assert_ne!(waiting["status"], "up", "{waiting}");

    // The mock starts listing models; a config change makes the engine ask again.
    mock.list_models(vec![
        json!({ "id": "disc-1", "context_length": 4096 }),
        json!({ "id": "disc-2" }),
        json!({ "id": "qwen3:8b", "object": "model", "owned_by": "library" }),
    ]);
    std::fs::write(&file, with_gone("mock/disc-1")).unwrap();
    let listed = tokio::time::timeout(WAIT, async {
        loop {
            heard(&c, "model/listChanged", |_| true).await;
            let models = c.ok("model/list", json!({ "provider": "mock" })).await;
            let models = models["models"].as_array().unwrap().clone();
            if let Some(m) = models.iter().find(|m| m["id"] == "mock/disc-1") {
                return (m.clone(), models.len());
            }
        }
    })
    .await
    .expect("the discovered models were never listed");
    assert_eq!(listed.0["contextWindow"], 4096);
    assert_eq!(listed.0["source"], "runtime");
    assert_eq!(listed.1, 3);
    let models = c.ok("model/list", json!({ "provider": "mock" })).await;
    let ollama = models["models"].as_array().unwrap().iter().find(|m| m["id"] == "mock/qwen3:8b").unwrap().clone();
    assert_eq!(ollama["contextWindow"], 40960, "Ollama's /api/show gives the context length");

    let down = tokio::time::timeout(WAIT, async {
        loop {
            let providers = c.ok("provider/list", json!({})).await;
            let gone = providers["providers"].as_array().unwrap().iter().find(|p| p["id"] == "gone").unwrap().clone();
            if gone["status"] == "down" {
                return (gone, providers);
            }
            heard(&c, "provider/listChanged", |_| true).await;
        }
    })
    .await
    .expect("the provider that is down was never shown as down");
    assert!(down.0["error"].as_str().unwrap().contains("refused"), "{}", down.0);
    let mock_entry = down.1["providers"].as_array().unwrap().iter().find(|p| p["id"] == "mock").unwrap().clone();
    assert_eq!(mock_entry["status"], "up");

    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    assert_eq!(turn(&c, &mock, &session, &sub).await, "disc-1");
    drop(silent);
}

/// The test's own JSONC reader: the config text above has comments.
fn keel_jsonc(text: &str) -> String {
    text.lines().map(|l| l.split(" // ").next().unwrap()).filter(|l| !l.trim_start().starts_with("//")).collect()
}

#[tokio::test]
async fn mcp_servers_added_and_removed_in_config_start_and_stop() {
    let home = Home::new();
    let file = home.path().join("config.jsonc");
    std::fs::write(&file, "{}").unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let mcp = json!({ "mcp": { "missing": { "type": "local", "command": ["/nonexistent/mcp-server"] } } });
    std::fs::write(&file, mcp.to_string()).unwrap();
    assert_eq!(heard(&c, "config/changed", |p| p.get("cwd").is_none()).await["keys"], json!(["mcp"]));
    heard(&c, "mcp/listChanged", |_| true).await;
    heard(&c, "mcp/statusChanged", |p| p["name"] == "missing" && p["status"] == "failed").await;
    let listed = c.ok("mcp/list", json!({})).await;
    assert_eq!(listed["servers"][0]["name"], "missing");

    std::fs::write(&file, "{}").unwrap();
    heard(&c, "mcp/listChanged", |_| true).await;
    assert_eq!(c.ok("mcp/list", json!({})).await["servers"], json!([]));
}

#[tokio::test]
async fn an_imported_models_dev_catalog_reaches_a_running_engine() {
    let home = Home::new();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let file = home.path().join("api.json");
    let catalog = json!({
        "openai": { "id": "openai", "models": {
            "gpt-9": { "id": "gpt-9", "name": "GPT-9", "tool_call": true, "reasoning": true,
                "cost": { "input": 2, "output": 8 }, "limit": { "context": 1000000, "output": 100000 } },
            "odd": { "id": "odd", "name": "no limits" } } }
    });
    std::fs::write(&file, catalog.to_string()).unwrap();
    let out = common::keel_command(home.path()).args(["models", "--import"]).arg(&file).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("imported 1 models of 1 providers"), "{report}");
    assert!(report.contains("skipped openai/odd: no context limit"), "{report}");

    let model = tokio::time::timeout(WAIT, async {
        loop {
            heard(&c, "model/listChanged", |_| true).await;
            let models = c.ok("model/list", json!({ "provider": "openai" })).await;
            if let Some(m) = models["models"].as_array().unwrap().iter().find(|m| m["id"] == "openai/gpt-9") {
                return m.clone();
            }
        }
    })
    .await
    .expect("the imported model never appeared");
    assert_eq!(model["contextWindow"], 1_000_000);
    assert_eq!(model["cost"]["output"], 8.0);
    assert_eq!(model["source"], "catalog");
    // Embedded models the file does not name stay.
    let all = c.ok("model/list", json!({ "provider": "openai" })).await;
    assert!(all["models"].as_array().unwrap().iter().any(|m| m["id"] == "openai/gpt-5"));
}

#[tokio::test]
async fn a_config_directory_made_while_the_engine_runs_is_watched() {
    let home = Home::new();
    let (config_home, data_home) = (home.path().join("cfg"), home.path().join("data"));
    std::fs::create_dir_all(&config_home).unwrap();
    let env = [
        ("KEEL_HOME", ""),
        ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
        ("XDG_DATA_HOME", data_home.to_str().unwrap()),
    ];
    let engine = SocketEngine::start(home.path(), &env).await;
    let c = engine.connect().await;
    std::fs::create_dir_all(config_home.join("keel")).unwrap();
    std::fs::write(config_home.join("keel/config.jsonc"), r#"{ "model": "openai/gpt-5" }"#).unwrap();
    assert_eq!(heard(&c, "config/changed", |p| p.get("cwd").is_none()).await["keys"], json!(["model"]));
    std::fs::write(config_home.join("keel/config.jsonc"), r#"{ "model": "openai/gpt-5-mini" }"#).unwrap();
    assert_eq!(heard(&c, "config/changed", |p| p.get("cwd").is_none()).await["keys"], json!(["model"]));
}

#[tokio::test]
async fn plugins_added_and_removed_in_config_start_and_stop() {
    let home = Home::new();
    let file = home.path().join("config.jsonc");
    std::fs::write(&file, "{}").unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/pipefail.py");
    std::fs::write(&file, json!({ "plugins": { "pipefail": { "command": ["python3", example] } } }).to_string())
        .unwrap();
    assert_eq!(heard(&c, "config/changed", |p| p.get("cwd").is_none()).await["keys"], json!(["plugins"]));
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            heard(&c, "plugin/listChanged", |_| true).await;
            let listed = c.ok("plugin/list", json!({})).await;
            if listed["plugins"][0]["status"] == "ready" && listed["plugins"][0]["tools"] == json!(["word_count"]) {
                return listed["plugins"][0]["pid"].as_u64().unwrap();
            }
        }
    })
    .await
    .expect("the added plugin starts and registers");

    std::fs::write(&file, "{}").unwrap();
    let emptied = tokio::time::timeout(WAIT, async {
        while c.ok("plugin/list", json!({})).await["plugins"] != json!([]) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    emptied.await.expect("the removed plugin leaves the list");
    let gone = tokio::time::timeout(WAIT, async {
        while std::path::Path::new(&format!("/proc/{ready}")).exists()
            && !std::fs::read_to_string(format!("/proc/{ready}/stat")).unwrap_or_default().contains(") Z")
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    gone.await.expect("the removed plugin's process ends");
}
