//! Plugins against the mock model: the example plugin's tool called by the model and its `tool/before` rewriting an
//! argument; hooks that answer approvals, shape the model request and rewrite outputs, and a plugin tool that calls
//! the engine back while the engine waits for it; hooks that throw, time out or whose process dies, each leaving the
//! call as it was and the engine serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::mock::MockModel;
use common::{Client, Home, SocketEngine};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

fn call(id: &str, name: &str, input: Value) -> ScriptToolCall {
    ScriptToolCall { id: Some(id.into()), name: name.into(), input }
}

fn calls(calls: Vec<ScriptToolCall>) -> ScriptTurn {
    ScriptTurn { tool_calls: calls, ..Default::default() }
}

fn say(text: &str) -> ScriptTurn {
    ScriptTurn { text: Some(text.into()), ..Default::default() }
}

fn plugin_path(relative: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative).display().to_string()
}

fn write_config(home: &Home, mock: &MockModel, plugins: Value, permissions: Value) {
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } },
        "permissions": permissions,
        "plugins": plugins,
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}");
}

async fn plugin(c: &Client, name: &str) -> Value {
    let list = c.ok("plugin/list", json!({})).await;
    list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or(Value::Null)
}

async fn ready(c: &Client, name: &str) {
    eventually(&format!("plugin {name} registers"), async || {
        let p = plugin(c, name).await;
        p["status"] == "ready" && !p["hooks"].as_array().unwrap().is_empty()
    })
    .await;
}

/// Prompts and returns the session's events up to the activity's end.
async fn run(c: &Client, home: &Home) -> (String, Vec<Value>) {
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "go" }] })).await;
    let events = c.events_until(&sub, |e| e["type"] == "activity.closed").await;
    (session, events)
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The engine's id of the call the model made as `provider_id`.
fn call_id<'a>(events: &'a [Value], provider_id: &str) -> &'a str {
    let called = events.iter().find(|e| e["type"] == "tool.called" && e["data"]["providerCallId"] == provider_id);
    called.unwrap_or_else(|| panic!("{provider_id} called: {events:#?}"))["data"]["callId"].as_str().unwrap()
}

/// What the call the model made as `provider_id` gave: its output, or its error.
fn output_of<'a>(events: &'a [Value], provider_id: &str) -> &'a Value {
    let id = call_id(events, provider_id);
    let settled = events
        .iter()
        .find(|e| e["data"]["callId"] == id && (e["type"] == "tool.completed" || e["type"] == "tool.failed"))
        .unwrap_or_else(|| panic!("{provider_id} settled: {events:#?}"));
    if settled["type"] == "tool.completed" { &settled["data"]["output"] } else { &settled["data"]["error"] }
}

#[tokio::test]
async fn the_example_plugins_tool_is_called_and_its_hook_rewrites_a_bash_command() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let log = home.path().join("events.log");
    let plugins = json!({ "pipefail": {
        "command": ["python3", plugin_path("examples/plugins/pipefail.py")],
        "env": { "PIPEFAIL_EVENT_LOG": log.display().to_string() },
    }});
    let rules = json!([{ "action": "bash", "effect": "allow" }, { "action": "plugin", "pattern": "pipefail/*", "effect": "allow" }]);
    write_config(&home, &mock, plugins, rules);
    mock.push(calls(vec![
        call("c_count", "word_count", json!({ "text": "one two three" })),
        call("c_pipe", "bash", json!({ "command": "false | true; echo status=$?" })),
    ]));
    mock.push(say("done"));
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    ready(&c, "pipefail").await;
    let listed = plugin(&c, "pipefail").await;
    assert_eq!(listed["tools"], json!(["word_count"]));
    assert_eq!(listed["hooks"], json!(["tool/before", "event"]));
    let tools = c.ok("tool/list", json!({})).await.to_string();
    assert!(tools.contains("word_count"), "{tools}");

    let (_, events) = run(&c, &home).await;
    assert_eq!(output_of(&events, "c_count"), "3 words");
    // Without the rewrite the pipeline's status is `true`'s: 0.
    assert!(output_of(&events, "c_pipe").as_str().unwrap().contains("status=1"), "{events:#?}");
    let acted = of_type(&events, "plugin.acted");
    assert_eq!(acted.len(), 1, "{acted:#?}");
    assert_eq!(acted[0]["data"]["callId"], call_id(&events, "c_pipe"));
    assert_eq!(acted[0]["data"]["input"]["command"], "set -o pipefail; false | true; echo status=$?");
    // The model reads both results in its next request; the call it made is recorded as it made it.
    let next = mock.requests()[1].body.to_string();
    assert!(next.contains("3 words") && next.contains("status=1"), "{next}");
    let called = events.iter().find(|e| e["type"] == "tool.called" && e["data"]["providerCallId"] == "c_pipe").unwrap();
    assert_eq!(called["data"]["input"]["command"], "false | true; echo status=$?");
    // The `event` hook saw the session's events after their commit.
    eventually("the event hook sees the activity's end", async || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().any(|k| k == "activity.closed"))
    })
    .await;
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.starts_with("session.created\n"), "{seen}");
}

#[tokio::test]
async fn hooks_answer_approvals_shape_the_request_and_rewrite_outputs() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let plugins = json!({ "decide": { "command": ["python3", plugin_path("tests/plugins/fixture.py"), "decide"] } });
    write_config(&home, &mock, plugins, json!([{ "action": "plugin", "effect": "allow" }]));
    mock.push(calls(vec![
        call("c_rm", "bash", json!({ "command": "rm -rf build" })),
        call("c_printf", "bash", json!({ "command": "printf 'hello\\n'" })),
        call("c_sessions", "sessions", json!({})),
    ]));
    mock.push(say("done"));
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    ready(&c, "decide").await;
    let (_, events) = run(&c, &home).await;

    // Bash asks by default: the plugin answered both questions, so nobody was asked.
    assert!(of_type(&events, "approval.requested").is_empty(), "{events:#?}");
    assert_eq!(output_of(&events, "c_rm"), "plugin decide denied it: no deleting here");
    assert_eq!(output_of(&events, "c_printf"), "hello\n\n[checked by the fixture]");
    // Its tool asked the engine for the sessions while the engine waited for its answer.
    assert_eq!(output_of(&events, "c_sessions"), "1 sessions\n[checked by the fixture]");
    let changes: Vec<&str> =
        of_type(&events, "plugin.acted").iter().map(|e| e["data"]["change"].as_str().unwrap()).collect();
    assert!(changes.contains(&"denied: no deleting here") && changes.contains(&"allowed"), "{changes:?}");

    let first = &mock.requests()[0];
    assert!(first.body["messages"][0]["content"].as_str().unwrap().ends_with("\n\nAnswer in French."));
    assert_eq!(first.body["temperature"], 0.2);
    assert_eq!(first.header("x-fixture"), Some("on"));
}

/// A plugin in `mode` hooks everything; the turn must run as if it were not there.
async fn check_harmless(mode: &str, failure: &str) {
    let home = Home::new();
    let mock = MockModel::start().await;
    let plugins = json!({ "bad": {
        "command": ["python3", plugin_path("tests/plugins/fixture.py"), mode],
        "timeoutMs": 300,
    }});
    write_config(&home, &mock, plugins, json!([{ "action": "bash", "effect": "allow" }]));
    mock.push(calls(vec![call("c_echo", "bash", json!({ "command": "echo unchanged" }))]));
    mock.push(say("done"));
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    ready(&c, "bad").await;
    let (_, events) = run(&c, &home).await;

    assert_eq!(output_of(&events, "c_echo"), "unchanged\n", "{mode}");
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed", "{mode}");
    let failed = of_type(&events, "plugin.failed");
    assert!(!failed.is_empty(), "{mode}: no plugin.failed");
    for f in &failed {
        assert!(f["data"]["error"].as_str().unwrap().contains(failure), "{mode}: {f}");
    }
    assert!(of_type(&events, "plugin.acted").is_empty(), "{mode}");
    let first = &mock.requests()[0];
    assert!(first.body.get("temperature").is_none(), "{mode}");
    assert!(!first.body["messages"][0]["content"].as_str().unwrap().contains("French"), "{mode}");
    assert!(c.call("session/list", json!({})).await.is_ok(), "{mode}: the engine keeps serving");
}

#[tokio::test]
async fn a_hook_that_throws_changes_nothing() {
    check_harmless("throw", "plugin bad failed: the fixture throws").await;
}

#[tokio::test]
async fn a_hook_that_times_out_changes_nothing() {
    check_harmless("hang", "plugin bad did not answer within 300 ms").await;
}

#[tokio::test]
async fn a_plugin_that_dies_in_a_hook_changes_nothing_and_is_started_again() {
    check_harmless("die", "plugin bad exited").await;
}

#[tokio::test]
async fn a_dead_plugin_is_started_again_and_a_broken_one_is_reported() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let plugins = json!({
        "bad": { "command": ["python3", plugin_path("tests/plugins/fixture.py"), "die"] },
        "missing": { "command": ["/nonexistent/plugin"] },
    });
    write_config(&home, &mock, plugins, json!([]));
    mock.push(say("hi"));
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    ready(&c, "bad").await;
    eventually_failed(&c, "missing", "cannot start \"/nonexistent/plugin\"").await;

    // Its first hook kills it (chat/params at the turn's start); it comes back on its own.
    let (_, events) = run(&c, &home).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    eventually("the dead plugin starts again and registers", async || {
        let p = plugin(&c, "bad").await;
        p["restarts"].as_u64() >= Some(1) && p["status"] == "ready"
    })
    .await;
}

async fn eventually_failed(c: &Client, name: &str, reason: &str) {
    eventually(&format!("{name} is shown failed"), async || {
        let p = plugin(c, name).await;
        p["status"] == "failed" && p["error"].as_str().is_some_and(|e| e.contains(reason))
    })
    .await;
}

#[tokio::test]
async fn a_plugins_provider_joins_the_models_and_streams_turns_with_tool_calls() {
    let home = Home::new();
    let config = json!({
        "model": "parrot/echo",
        "permissions": [{ "action": "bash", "effect": "allow" }],
        "plugins": { "parrot": { "command": ["python3", plugin_path("tests/plugins/fixture.py"), "provider"] } },
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    eventually("the plugin's model joins the model list", async || {
        let models = c.ok("model/list", json!({})).await;
        models["models"].as_array().unwrap().iter().any(|m| m["id"] == "parrot/echo" && m["contextWindow"] == 8000)
    })
    .await;
    let providers = c.ok("provider/list", json!({})).await.to_string();
    assert!(providers.contains("\"parrot\"") && providers.contains("Parrot"), "{providers}");

    let (_, events) = run(&c, &home).await;
    assert_eq!(output_of(&events, "t1"), "from the plugin model\n");
    let said: Vec<&str> =
        of_type(&events, "text.completed").iter().map(|e| e["data"]["text"].as_str().unwrap()).collect();
    assert_eq!(said, ["let me look", "the tool said: from the plugin model"]);
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    let usage = of_type(&events, "turn.completed").last().unwrap()["data"]["usage"].clone();
    assert_eq!((usage["inputTokens"].as_u64(), usage["outputTokens"].as_u64()), (Some(11), Some(5)), "{usage}");

    // Another connection cannot feed a plugin's turns or take its provider's id.
    let e = c.err("provider/delta", json!({ "requestId": "prq_x", "deltas": [] })).await;
    assert_eq!((e.code, e.data["path"].as_str()), (-32602, Some("requestId")), "{e:?}");
    let e = c.err("provider/register", json!({ "id": "parrot", "models": [] })).await;
    assert_eq!(e.code, -32600, "{e:?}");
}

#[tokio::test]
async fn only_a_plugins_own_connection_registers() {
    let home = Home::new();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let e = c.err("plugin/register", json!({ "hooks": ["tool/before"] })).await;
    assert_eq!(e.code, -32600, "{e:?}");
    let e = c.err("plugin/register", json!({ "hooks": ["nope"] })).await;
    assert_eq!(e.code, -32602, "{e:?}");
    assert_eq!(c.ok("plugin/list", json!({})).await, json!({ "plugins": [] }));
}
