//! MCP servers from registries (the reference filesystem server from npm over stdio, a server on PyPI's `mcp` SDK
//! over streamable HTTP), driven by the mock model through the engine. `.ci/run` installs both into `tests/mcp/`;
//! without them these tests fail and say how to install them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock::{MockModel, Wire};
use common::{Client, Engine, Framing, Home, WAIT};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

fn mcp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp")
}

/// The filesystem server's entry point, installed by `npm ci` in tests/mcp.
pub fn filesystem_server() -> String {
    let bin = mcp_dir().join("node_modules/.bin/mcp-server-filesystem");
    assert!(bin.exists(), "{} is missing: run `npm ci` in tests/mcp (.ci/run does)", bin.display());
    bin.to_str().unwrap().to_owned()
}

/// The Python of the venv that holds PyPI's `mcp` SDK.
fn python() -> PathBuf {
    let python = mcp_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `python3 -m venv tests/mcp/.venv && tests/mcp/.venv/bin/pip install -r \
         tests/mcp/requirements.txt` (.ci/run does)",
        python.display()
    );
    python
}

struct Setup {
    _home: Home,
    ws: PathBuf,
    mock: MockModel,
    engine: Engine,
    session: String,
    sub: String,
}

async fn setup(mcp: Value, permissions: Value, capabilities: Value) -> Setup {
    let home = Home::new();
    let ws = PathBuf::from(home.workspace());
    let mock = MockModel::start().await;
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": Wire::Chat.config_name(), "baseUrl": mock.url() } },
        "permissions": permissions,
        "mcp": mcp,
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = Engine::start_with(home.path(), Framing::Ndjson, &[]).await;
    engine.client.initialize_with(capabilities).await;
    let session = engine.client.create_session(ws.to_str().unwrap()).await;
    let sub = engine.client.subscribe(&session, 0).await;
    Setup { _home: home, ws, mock, engine, session, sub }
}

fn filesystem(ws: &Path) -> Value {
    json!({ "fs": { "type": "local", "command": [filesystem_server(), ws] } })
}

fn call(name: &str, input: Value) -> ScriptTurn {
    ScriptTurn {
        tool_calls: vec![ScriptToolCall { id: Some("c1".into()), name: name.into(), input }],
        ..Default::default()
    }
}

fn done() -> ScriptTurn {
    ScriptTurn { text: Some("done".into()), ..Default::default() }
}

/// The server's entry in `mcp/list` once `ready` says it is what the test waits for.
async fn wait_server(c: &Client, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let list = c.ok("mcp/list", json!({})).await;
            if let Some(server) = list["servers"].as_array().unwrap().iter().find(|s| s["name"] == name)
                && ready(server)
            {
                return server.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    match found {
        Ok(server) => server,
        Err(_) => panic!("server {name} never got there: {}", c.ok("mcp/list", json!({})).await),
    }
}

async fn wait_ready(c: &Client, name: &str) -> Value {
    wait_server(c, name, |s| s["status"] == "ready").await
}

/// Prompts and returns the activity's events, answering approvals with `answer` when given.
async fn run(s: &Setup, answer: Option<Value>) -> Vec<Value> {
    let c = &s.engine.client;
    c.ok("session/prompt", json!({ "sessionId": s.session, "input": [{ "type": "text", "text": "go" }] })).await;
    let mut events = Vec::new();
    loop {
        let m = c.next_message().await;
        if m["method"] == "approval/request" {
            if let Some(answer) = &answer {
                c.respond(&m["id"], answer.clone());
            }
            continue;
        }
        if m["method"] != "session/event" || m["params"]["subscriptionId"] != s.sub {
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

fn settlement(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["type"] == "tool.completed" || e["type"] == "tool.failed")
        .unwrap_or_else(|| panic!("no settlement: {events:#?}"))
}

fn output(events: &[Value]) -> String {
    let r = settlement(events);
    assert_eq!(r["type"], "tool.completed", "{r}");
    r["data"]["output"].as_str().unwrap().to_owned()
}

fn allow_mcp() -> Value {
    json!([{ "action": "mcp", "pattern": "*", "effect": "allow" }])
}

/// What the model was sent as the result of its call, in its next request.
fn tool_result_sent(mock: &MockModel) -> String {
    let requests = mock.requests();
    let last = requests.last().unwrap();
    let messages = last.body["messages"].as_array().unwrap();
    let tool = messages.iter().rev().find(|m| m["role"] == "tool").expect("a tool message");
    tool["content"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_model_calls_a_filesystem_tool_and_its_result_reaches_the_next_request() {
    let home = Home::new();
    let ws = PathBuf::from(home.workspace());
    std::fs::write(ws.join("notes.txt"), "keel was here\n").unwrap();
    let s = setup(filesystem(&ws), allow_mcp(), json!({})).await;
    let server = wait_ready(&s.engine.client, "fs").await;
    assert_eq!(server["transport"], "stdio");
    assert!(server["toolCount"].as_u64().unwrap() > 3, "{server}");
    assert!(server["pid"].as_u64().is_some(), "{server}");

    // tool/list shows the server's tools with their schemas, namespaced and marked as MCP.
    let tools = s.engine.client.ok("tool/list", json!({ "sessionId": s.session })).await;
    let read = tools["tools"].as_array().unwrap().iter().find(|t| t["name"] == "fs_read_text_file").unwrap();
    assert_eq!(read["source"], "mcp");
    assert_eq!(read["inputSchema"]["properties"]["path"]["type"], "string", "{read}");

    s.mock.push(call("fs_read_text_file", json!({ "path": ws.join("notes.txt") })));
    s.mock.push(done());
    let events = run(&s, None).await;
    assert_eq!(output(&events), "keel was here\n");
    assert!(tool_result_sent(&s.mock).contains("keel was here"));
    // The first request offered the MCP tool to the model, beside the built-in ones.
    let offered: Vec<String> = s.mock.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(offered.contains(&"fs_read_text_file".to_owned()) && offered.contains(&"read".to_owned()), "{offered:?}");
    drop(home);
}

#[tokio::test]
async fn mcp_tools_ask_by_default_and_the_approval_flow_runs_them() {
    let home = Home::new();
    let ws = PathBuf::from(home.workspace());
    let s = setup(
        filesystem(&ws),
        json!([{ "action": "mcp", "pattern": "fs/list_allowed_directories", "effect": "deny" }]),
        json!({ "approvals": true }),
    )
    .await;
    wait_ready(&s.engine.client, "fs").await;

    s.mock.push(call("fs_write_file", json!({ "path": ws.join("out.txt"), "content": "approved" })));
    s.mock.push(done());
    let events = run(&s, Some(json!({ "decision": "once" }))).await;
    let asked = events.iter().find(|e| e["type"] == "approval.requested").expect("an approval");
    assert_eq!(asked["data"]["action"], "mcp");
    assert_eq!(asked["data"]["resources"], json!(["fs/write_file"]));
    assert_eq!(settlement(&events)["type"], "tool.completed");
    assert_eq!(std::fs::read_to_string(ws.join("out.txt")).unwrap(), "approved");

    // Rejected: the server never sees the call.
    s.mock.push(call("fs_write_file", json!({ "path": ws.join("no.txt"), "content": "x" })));
    s.mock.push(done());
    let events = run(&s, Some(json!({ "decision": "reject" }))).await;
    assert_eq!(settlement(&events)["type"], "tool.failed");
    assert!(!ws.join("no.txt").exists());

    // A deny rule refuses without asking.
    s.mock.push(call("fs_list_allowed_directories", json!({})));
    s.mock.push(done());
    let events = run(&s, None).await;
    assert!(events.iter().all(|e| e["type"] != "approval.requested"));
    assert_eq!(settlement(&events)["type"], "tool.failed");
    drop(home);
}

#[tokio::test]
async fn a_killed_server_is_restarted_and_the_next_call_works() {
    let home = Home::new();
    let ws = PathBuf::from(home.workspace());
    std::fs::write(ws.join("a.txt"), "first\n").unwrap();
    let s = setup(filesystem(&ws), allow_mcp(), json!({})).await;
    let before = wait_ready(&s.engine.client, "fs").await;
    s.mock.push(call("fs_read_text_file", json!({ "path": ws.join("a.txt") })));
    s.mock.push(done());
    assert_eq!(output(&run(&s, None).await), "first\n");

    let pid = before["pid"].as_u64().unwrap();
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let after = wait_server(&s.engine.client, "fs", |s| s["status"] == "ready" && s["restarts"] == 1).await;
    assert_ne!(after["pid"], before["pid"]);

    std::fs::write(ws.join("a.txt"), "second\n").unwrap();
    s.mock.push(call("fs_read_text_file", json!({ "path": ws.join("a.txt") })));
    s.mock.push(done());
    assert_eq!(output(&run(&s, None).await), "second\n");

    // mcp/restart starts it again on request.
    let restarted = s.engine.client.ok("mcp/restart", json!({ "name": "fs" })).await;
    assert_eq!(restarted["server"]["status"], "starting");
    wait_server(&s.engine.client, "fs", |s| s["status"] == "ready" && s["restarts"] == 2).await;
    drop(home);
}

#[tokio::test]
async fn mcp_list_shows_servers_that_fail_to_start_with_their_error() {
    let s = setup(
        json!({
            "missing": { "type": "local", "command": ["/nonexistent/mcp-server"] },
            "dies": { "command": "sh", "args": ["-c", "echo cannot open the database >&2; exit 3"] },
            "old": { "type": "sse", "url": "http://127.0.0.1:9/sse" },
            "off": { "type": "local", "command": ["/nonexistent"], "enabled": false },
        }),
        json!([]),
        json!({}),
    )
    .await;
    let c = &s.engine.client;
    // Every initialized connection hears of state changes.
    let heard = tokio::time::timeout(WAIT, async {
        loop {
            let m = c.next_message().await;
            if m["method"] == "mcp/statusChanged"
                && m["params"]["name"] == "missing"
                && m["params"]["status"] == "failed"
            {
                return m["params"].clone();
            }
        }
    })
    .await
    .expect("no mcp/statusChanged for the failed server");
    assert!(heard["error"].as_str().unwrap().contains("/nonexistent/mcp-server"), "{heard}");
    let missing = wait_server(c, "missing", |s| s["status"] == "failed").await;
    assert!(missing["error"].as_str().unwrap().contains("/nonexistent/mcp-server"), "{missing}");
    let dies = wait_server(c, "dies", |s| s["status"] == "failed").await;
    assert!(dies["error"].as_str().unwrap().contains("cannot open the database"), "{dies}");
    let old = wait_server(c, "old", |s| s["status"] == "failed").await;
    assert!(old["error"].as_str().unwrap().contains("SSE"), "{old}");
    assert_eq!(old["retrying"], false);
    let list = c.ok("mcp/list", json!({})).await;
    assert!(list["servers"].as_array().unwrap().iter().all(|s| s["name"] != "off"), "{list}");
    // No tools from them, and the engine serves on.
    let tools = c.ok("tool/list", json!({ "sessionId": s.session })).await;
    assert!(tools["tools"].as_array().unwrap().iter().all(|t| t["source"] == "builtin"));

    let unknown = c.err("mcp/restart", json!({ "name": "nope" })).await;
    assert_eq!(unknown.code, -32602);

    // mcp/restart reads config again: a fixed entry starts as it now reads, a removed one stops.
    let config_path = s._home.path().join("config.jsonc");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["mcp"]["missing"] = json!({ "type": "local", "command": [filesystem_server(), s.ws] });
    config["mcp"].as_object_mut().unwrap().remove("dies");
    std::fs::write(&config_path, config.to_string()).unwrap();
    c.ok("mcp/restart", json!({ "name": "missing" })).await;
    wait_ready(c, "missing").await;
    assert_eq!(c.err("mcp/restart", json!({ "server": "dies" })).await.code, -32602);
    let list = c.ok("mcp/list", json!({})).await;
    assert!(list["servers"].as_array().unwrap().iter().all(|s| s["name"] != "dies"), "{list}");
}

/// A free port on loopback (closed again: the server binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The Python server on `port`, killed on drop; returns once it accepts connections.
async fn python_server(port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(python())
        .arg(mcp_dir().join("http_server.py"))
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the Python MCP server did not listen");
    child
}

#[tokio::test]
async fn a_python_server_over_streamable_http_serves_tools_and_their_changes() {
    let port = free_port();
    let _server = python_server(port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let s = setup(
        json!({ "py": { "type": "remote", "url": url, "headers": { "X-Keel-Test": "1" }, "timeoutMs": 500 } }),
        allow_mcp(),
        json!({}),
    )
    .await;
    let c = &s.engine.client;
    let py = wait_ready(c, "py").await;
    assert_eq!(py["transport"], "http");
    assert_eq!(py["tools"], json!(["py_echo", "py_fail", "py_slow", "py_grow"]));

    s.mock.push(call("py_echo", json!({ "text": "over http" })));
    s.mock.push(done());
    assert_eq!(output(&run(&s, None).await), "http echo: over http");
    assert!(tool_result_sent(&s.mock).contains("http echo: over http"));

    // An error the server reports is the call's failure, with its reason.
    s.mock.push(call("py_fail", json!({ "reason": "the disk is full" })));
    s.mock.push(done());
    let events = run(&s, None).await;
    let failed = settlement(&events);
    assert_eq!(failed["type"], "tool.failed");
    assert!(failed["data"]["error"].as_str().unwrap().contains("the disk is full"), "{failed}");

    // tools/list_changed: a tool added at run time joins the list and can be called.
    s.mock.push(call("py_grow", json!({ "name": "sprout" })));
    s.mock.push(done());
    assert_eq!(output(&run(&s, None).await), "added sprout");
    wait_server(c, "py", |s| s["tools"].as_array().unwrap().iter().any(|t| t == "py_sprout")).await;
    s.mock.push(call("py_sprout", json!({})));
    s.mock.push(done());
    assert_eq!(output(&run(&s, None).await), "I am sprout");

    // Every call has a timeout (`timeoutMs`); the server is told to stop, and serves the next call.
    s.mock.push(call("py_slow", json!({ "seconds": 60 })));
    s.mock.push(done());
    let events = run(&s, None).await;
    let failed = settlement(&events);
    assert_eq!(failed["type"], "tool.failed");
    assert!(failed["data"]["error"].as_str().unwrap().contains("no answer within 500 ms"), "{failed}");
    s.mock.push(call("py_echo", json!({ "text": "still here" })));
    s.mock.push(done());
    assert_eq!(output(&run(&s, None).await), "http echo: still here");
}

#[tokio::test]
async fn an_mcp_prompt_is_a_slash_command() {
    let port = free_port();
    let _server = python_server(port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let s = setup(json!({ "py": { "type": "remote", "url": url } }), allow_mcp(), json!({})).await;
    let c = &s.engine.client;
    wait_ready(c, "py").await;
    let listed = c.ok("command/list", json!({})).await;
    let review = listed["commands"].as_array().unwrap().iter().find(|c| c["name"] == "py:review").cloned();
    let review = review.unwrap_or_else(|| panic!("{listed}"));
    assert_eq!((review["source"].as_str(), review["hint"].as_str()), (Some("mcp"), Some("path focus")), "{review}");
    assert_eq!(review["description"], "Asks for a review of one file.");

    // The words go to the prompt's arguments in order, the last one taking the rest.
    s.mock.push(done());
    let params = json!({ "sessionId": s.session, "command": "py:review", "arguments": "src/lib.rs security holes" });
    c.ok("session/command", params).await;
    let sent = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = s.mock.requests().first() {
                return r.body.to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the prompt reaches the model");
    assert!(sent.contains("Review src/lib.rs, looking for security holes."), "{sent}");

    // A required argument left out is the call's error, before anything is sent.
    let e = c.err("session/command", json!({ "sessionId": s.session, "command": "py:review" })).await;
    assert_eq!(e.code, -32602);
    assert!(e.message.contains("needs its argument \"path\""), "{}", e.message);
}

#[tokio::test]
async fn an_interrupt_ends_a_running_mcp_call() {
    let port = free_port();
    let _server = python_server(port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let s = setup(json!({ "py": { "url": url } }), allow_mcp(), json!({})).await;
    let c = &s.engine.client;
    wait_ready(c, "py").await;
    s.mock.push(call("py_slow", json!({ "seconds": 60 })));
    s.mock.push(done());
    c.ok("session/prompt", json!({ "sessionId": s.session, "input": [{ "type": "text", "text": "go" }] })).await;
    let mut interrupted = false;
    let failed = loop {
        let m = c.next_message().await;
        if m["method"] != "session/event" {
            continue;
        }
        let event = m["params"]["event"].clone();
        if event["type"] == "tool.started" && !interrupted {
            c.ok("session/interrupt", json!({ "sessionId": s.session })).await;
            interrupted = true;
        }
        if event["type"] == "tool.failed" {
            break event;
        }
    };
    assert_eq!(failed["data"]["error"], "interrupted");
}

#[tokio::test]
async fn large_outputs_are_stored_and_credentials_stay_out_of_servers_and_answers() {
    let home = Home::new();
    let ws = PathBuf::from(home.workspace());
    let lines: String = (1..=3000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(ws.join("big.txt"), &lines).unwrap();
    let mut mcp = filesystem(&ws);
    // The engine's own credentials are not inherited; a server's configured `env` is given, and scrubbed from
    // whatever keel shows.
    mcp["leaky"] = json!({
        "command": "sh",
        "args": ["-c", "echo \"inherited=[$MY_SERVICE_TOKEN] given=[$LEAKY_API_KEY]\" >&2; exit 1"],
        "env": { "LEAKY_API_KEY": "configured-secret-4242" },
    });
    let home2 = Home::new();
    let mock = MockModel::start().await;
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": Wire::Chat.config_name(), "baseUrl": mock.url() } },
        "permissions": allow_mcp(),
        "mcp": mcp,
    });
    std::fs::write(home2.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = Engine::start_with(home2.path(), Framing::Ndjson, &[("MY_SERVICE_TOKEN", "engine-secret-1717")]).await;
    engine.client.initialize().await;
    let leaky = wait_server(&engine.client, "leaky", |s| s["status"] == "failed").await;
    let error = leaky["error"].as_str().unwrap();
    assert!(error.contains("inherited=[]") && error.contains("given=[[redacted]]"), "{error}");

    let session = engine.client.create_session(ws.to_str().unwrap()).await;
    let sub = engine.client.subscribe(&session, 0).await;
    wait_ready(&engine.client, "fs").await;
    mock.push(call("fs_read_text_file", json!({ "path": ws.join("big.txt") })));
    mock.push(done());
    let s = Setup { _home: home2, ws: ws.clone(), mock, engine, session, sub };
    let events = run(&s, None).await;
    let completed = settlement(&events);
    assert_eq!(completed["type"], "tool.completed");
    assert_eq!(completed["data"]["truncated"], true, "{completed}");
    assert!(completed["data"]["output"].as_str().unwrap().len() < lines.len());
    drop(home);
}

/// `keel acp` with the mock model; MCP tools allowed without asking.
async fn acp(home: &Home, mock: &MockModel) -> (tokio::process::Child, Client) {
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } },
        "permissions": allow_mcp(),
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let mut child = common::keel_command(home.path())
        .arg("acp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let client = Client::connect(child.stdout.take().unwrap(), child.stdin.take().unwrap(), Framing::Ndjson);
    (child, client)
}

/// Sends a prompt and collects its updates until it answers.
async fn acp_prompt(c: &Client, session: &str) -> (Value, Vec<Value>) {
    let (_, answer) = c
        .start_request("session/prompt", json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "go" }] }));
    let mut updates = Vec::new();
    tokio::pin!(answer);
    loop {
        tokio::select! {
            biased;
            m = c.next_message() => {
                if m["method"] == "session/update" {
                    updates.push(m["params"]["update"].clone());
                }
            }
            a = &mut answer => return (a.unwrap(), updates),
        }
    }
}

#[tokio::test]
async fn acp_session_new_with_mcp_servers_gives_that_session_the_tools() {
    let home = Home::new();
    let ws = PathBuf::from(home.workspace());
    std::fs::write(ws.join("hello.txt"), "from the client's server\n").unwrap();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let init = c.ok("initialize", json!({ "protocolVersion": 1, "clientCapabilities": {} })).await;
    assert_eq!(init["agentCapabilities"]["mcpCapabilities"], json!({ "http": true, "sse": false }));

    let servers = json!([{ "name": "files", "command": filesystem_server(), "args": [ws], "env": [] }]);
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": servers })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    // The first turn waits for the session's server to start, so the tool is there at once.
    mock.push(call("files_read_text_file", json!({ "path": ws.join("hello.txt") })));
    mock.push(done());
    let (answer, updates) = acp_prompt(&c, &session).await;
    assert_eq!(answer["result"]["stopReason"], "end_turn", "{answer}");
    let completed = updates
        .iter()
        .find(|u| u["sessionUpdate"] == "tool_call_update" && u["status"] == "completed")
        .unwrap_or_else(|| panic!("{updates:#?}"));
    assert!(completed.to_string().contains("from the client's server"), "{completed}");
    let offered = mock.requests()[0].body["tools"].to_string();
    assert!(offered.contains("files_read_text_file"));

    // Another session does not get them.
    let other = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await;
    mock.push(done());
    acp_prompt(&c, other["sessionId"].as_str().unwrap()).await;
    assert!(!mock.requests().last().unwrap().body["tools"].to_string().contains("files_"));
}

#[tokio::test]
async fn acp_reports_mcp_servers_that_cannot_start() {
    let home = Home::new();
    let ws = home.workspace();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    c.ok("initialize", json!({ "protocolVersion": 1, "clientCapabilities": {} })).await;

    // A program that does not exist, or a transport keel does not speak, is the request's error.
    let missing = json!([{ "name": "gone", "command": "/nonexistent/server", "args": [], "env": [] }]);
    let err = c.err("session/new", json!({ "cwd": ws, "mcpServers": missing })).await;
    assert_eq!(err.code, -32602);
    assert!(err.message.contains("mcpServers[0].command"), "{}", err.message);
    let sse = json!([{ "type": "sse", "name": "old", "url": "http://127.0.0.1:9/sse", "headers": [] }]);
    let err = c.err("session/new", json!({ "cwd": ws, "mcpServers": sse })).await;
    assert!(err.message.contains("mcpServers[0].type"), "{}", err.message);

    // One that starts and dies is told to the client as a message on that session.
    let dies = json!([{ "name": "dies", "command": "sh", "args": ["-c", "echo no license >&2; exit 1"], "env": [] }]);
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": dies })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    let told = tokio::time::timeout(WAIT, async {
        loop {
            let m = c.next_message().await;
            let update = &m["params"]["update"];
            let about_session = m["method"] == "session/update" && m["params"]["sessionId"] == session;
            if about_session && update["sessionUpdate"] != "available_commands_update" {
                return update.clone();
            }
        }
    })
    .await
    .expect("no report of the failed server");
    assert_eq!(told["sessionUpdate"], "agent_message_chunk");
    let text = told["content"]["text"].as_str().unwrap();
    assert!(text.contains("`dies` failed") && text.contains("no license"), "{text}");
}
