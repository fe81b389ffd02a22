//! Durable approvals: fan-out to every attached client, first answer wins, `always` rules, rejection messages,
//! interrupts, a symlink swapped in while an approval waits, and an approval that outlives the engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::mock::{MockModel, Wire};
use common::{Client, Home, SocketEngine};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

fn write_call(id: &str, path: &str, content: &str) -> ScriptToolCall {
    ScriptToolCall { id: Some(id.into()), name: "write".into(), input: json!({ "filePath": path, "content": content }) }
}

fn turn(calls: Vec<ScriptToolCall>) -> ScriptTurn {
    ScriptTurn { tool_calls: calls, ..Default::default() }
}

fn done() -> ScriptTurn {
    ScriptTurn { text: Some("done".into()), ..Default::default() }
}

struct Setup {
    home: Home,
    ws: PathBuf,
    mock: MockModel,
    engine: SocketEngine,
}

async fn setup(wire: Wire) -> Setup {
    let home = Home::new();
    let mock = MockModel::start().await;
    let config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": wire.config_name(), "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let ws = PathBuf::from(home.workspace());
    Setup { home, ws, mock, engine }
}

async fn prompt(c: &Client, session: &str) {
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "go" }] })).await;
}

/// The next server→client `approval/request`.
async fn next_request(c: &Client) -> Value {
    loop {
        let m = c.next_message().await;
        if m["method"] == "approval/request" {
            return m;
        }
    }
}

/// Events until `stop`.
async fn events_until(c: &Client, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let m = c.next_message().await;
        if m["method"] == "session/event" {
            let e = m["params"]["event"].clone();
            let done = stop(&e);
            events.push(e);
            if done {
                return events;
            }
        }
    }
}

#[tokio::test]
async fn every_attached_client_is_asked_and_the_first_answer_wins() {
    for wire in Wire::ALL {
        let s = setup(wire).await;
        s.mock.push(turn(vec![write_call("c1", "a.txt", "A")]));
        s.mock.push(done());
        let a = s.engine.connect_with(json!({ "approvals": true })).await;
        let b = s.engine.connect_with(json!({ "approvals": true })).await;
        let watcher = s.engine.connect().await;
        let session = a.create_session(s.ws.to_str().unwrap()).await;
        a.subscribe(&session, 0).await;
        b.subscribe(&session, 0).await;
        watcher.subscribe(&session, 0).await;
        prompt(&a, &session).await;

        let ra = next_request(&a).await;
        let rb = next_request(&b).await;
        assert_eq!(ra["params"], rb["params"], "{wire:?}");
        assert_eq!(ra["params"]["tool"], "write");
        assert_eq!(ra["params"]["action"], "edit");
        assert_eq!(ra["params"]["resources"], json!(["a.txt"]));
        assert_eq!(ra["params"]["sessionId"], session.as_str());
        let got = watcher.ok("session/get", json!({ "sessionId": session })).await;
        assert_eq!(got["status"], "waiting_approval");
        assert_eq!(got["pendingApprovals"][0]["approvalId"], ra["params"]["approvalId"]);

        a.respond(&ra["id"], json!({ "decision": "once" }));
        // B's question is withdrawn.
        loop {
            let m = b.next_message().await;
            if m["method"] == "$/cancelRequest" {
                assert_eq!(m["params"]["id"], rb["id"]);
                break;
            }
        }
        let late =
            b.err("approval/respond", json!({ "approvalId": ra["params"]["approvalId"], "decision": "reject" })).await;
        assert_eq!(late.code, -32012);
        let events = events_until(&watcher, |e| e["type"] == "activity.closed").await;
        let resolved: Vec<_> = events.iter().filter(|e| e["type"] == "approval.resolved").collect();
        assert_eq!(resolved.len(), 1, "{wire:?}");
        assert_eq!(resolved[0]["data"]["decision"], "once");
        assert_eq!(resolved[0]["data"]["by"], "keel-tests");
        assert_eq!(std::fs::read_to_string(s.ws.join("a.txt")).unwrap(), "A");
        assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
        let unknown = a.err("approval/respond", json!({ "approvalId": "apr_nope", "decision": "once" })).await;
        assert_eq!(unknown.code, -32012);
    }
}

#[tokio::test]
async fn always_stores_a_project_rule_and_answers_the_calls_it_covers() {
    let s = setup(Wire::Chat).await;
    // Two calls asking about the same file in one turn, then the same file again in a later activity.
    s.mock.push(turn(vec![write_call("c1", "same.txt", "1"), write_call("c2", "same.txt", "2")]));
    s.mock.push(done());
    s.mock.push(turn(vec![write_call("c3", "same.txt", "3")]));
    s.mock.push(done());
    let c = s.engine.connect().await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let mut asked = Vec::new();
    while asked.len() < 2 {
        let events = events_until(&c, |e| e["type"] == "approval.requested").await;
        asked.push(events.last().unwrap()["data"]["approvalId"].clone());
    }
    c.ok("approval/respond", json!({ "approvalId": asked[0], "decision": "always" })).await;
    let events = events_until(&c, |e| e["type"] == "activity.closed").await;
    let resolved: Vec<_> =
        events.iter().filter(|e| e["type"] == "approval.resolved").map(|e| e["data"].clone()).collect();
    assert_eq!(resolved.len(), 2, "{resolved:#?}");
    assert!(resolved.iter().any(|r| r["approvalId"] == asked[1] && r["by"] == "rule"));

    prompt(&c, &session).await;
    let events = events_until(&c, |e| e["type"] == "activity.closed").await;
    assert!(events.iter().all(|e| e["type"] != "approval.requested"), "the stored rule answers it");
    assert_eq!(std::fs::read_to_string(s.ws.join("same.txt")).unwrap(), "3");
    // A session with approvals in its history forks (the copies get their own approval ids).
    let fork = c.ok("session/fork", json!({ "sessionId": session })).await;
    assert_ne!(fork["session"]["id"], session.as_str());
}

#[tokio::test]
async fn a_rejection_message_reaches_the_model_and_an_interrupt_cancels_the_question() {
    let s = setup(Wire::Anthropic).await;
    s.mock.push(turn(vec![write_call("c1", "x.txt", "x")]));
    s.mock.push(done());
    s.mock.push(turn(vec![write_call("c2", "y.txt", "y")]));
    let c = s.engine.connect_with(json!({ "approvals": true })).await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let r = next_request(&c).await;
    c.respond(&r["id"], json!({ "decision": "reject", "message": "use y.txt instead" }));
    events_until(&c, |e| e["type"] == "activity.closed").await;
    let body = s.mock.requests()[1].body.to_string();
    assert!(body.contains("use y.txt instead"), "{body}");
    assert!(!s.ws.join("x.txt").exists());

    prompt(&c, &session).await;
    next_request(&c).await;
    c.ok("session/interrupt", json!({ "sessionId": session })).await;
    let events = events_until(&c, |e| e["type"] == "activity.closed").await;
    let resolved = events.iter().find(|e| e["type"] == "approval.resolved").unwrap();
    assert_eq!(resolved["data"]["decision"], "cancelled");
    assert_eq!(resolved["data"]["by"], "interrupt");
    assert_eq!(events.last().unwrap()["data"]["reason"], "interrupted");
    assert!(
        c.ok("session/get", json!({ "sessionId": session })).await["pendingApprovals"].as_array().unwrap().is_empty()
    );
}

#[tokio::test]
async fn a_symlink_swapped_in_while_an_approval_waits_does_not_redirect_the_write() {
    let s = setup(Wire::Chat).await;
    let outside = s.home.path().join("outside.txt");
    std::fs::write(&outside, "keep me").unwrap();
    std::fs::write(s.ws.join("notes.txt"), "old").unwrap();
    s.mock.push(turn(vec![write_call("c1", "notes.txt", "new")]));
    s.mock.push(done());
    let c = s.engine.connect_with(json!({ "approvals": true })).await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let r = next_request(&c).await;
    std::fs::remove_file(s.ws.join("notes.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, s.ws.join("notes.txt")).unwrap();
    c.respond(&r["id"], json!({ "decision": "once" }));
    events_until(&c, |e| e["type"] == "activity.closed").await;
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    let meta = std::fs::symlink_metadata(s.ws.join("notes.txt")).unwrap();
    assert!(meta.is_file(), "the link itself was replaced");
}

#[tokio::test]
async fn a_pending_approval_survives_sigkill_and_the_activity_completes_after_the_answer() {
    let s = setup(Wire::Responses).await;
    s.mock.push(turn(vec![write_call("c1", "after-restart.txt", "survived")]));
    s.mock.push(done());
    let c = s.engine.connect().await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let asked = events_until(&c, |e| e["type"] == "approval.requested").await;
    let approval_id = asked.last().unwrap()["data"]["approvalId"].clone();
    let call_id = asked.last().unwrap()["data"]["callId"].clone();
    let called = asked.iter().find(|e| e["type"] == "tool.called").unwrap();
    assert_eq!((&called["data"]["callId"], &called["data"]["providerCallId"]), (&call_id, &json!("c1")));
    let mut child = s.engine.child;
    child.kill().await.unwrap();
    drop(c);

    let engine = SocketEngine::start(s.home.path(), &[]).await;
    let c = engine.connect_with(json!({ "approvals": true })).await;
    let got = c.ok("session/get", json!({ "sessionId": session })).await;
    assert_eq!(got["pendingApprovals"][0]["approvalId"], approval_id);
    assert_eq!(got["status"], "waiting_approval");
    // A client that (re)subscribes is asked again.
    c.subscribe(&session, -1).await;
    let r = next_request(&c).await;
    assert_eq!(r["params"]["approvalId"], approval_id);
    c.respond(&r["id"], json!({ "decision": "once" }));
    let events = events_until(&c, |e| e["type"] == "activity.closed").await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert!(events.iter().any(|e| e["type"] == "tool.completed" && e["data"]["callId"] == call_id));
    assert_eq!(std::fs::read_to_string(s.ws.join("after-restart.txt")).unwrap(), "survived");
    assert_eq!(s.mock.requests().len(), 2, "the activity went on to the next turn");
}

#[tokio::test]
async fn keel_run_states_its_approval_policy() {
    // A refused call leaves the activity completed, and the exit status (3) says calls were refused.
    for (policy, expect_written, expect_code) in [("allow", true, 0), ("reject", false, 3)] {
        let home = Home::new();
        let mock = MockModel::start().await;
        mock.push(turn(vec![write_call("c1", "run.txt", "from keel run")]));
        mock.push(done());
        let config =
            json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
        std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
        let ws = home.workspace();
        let out = common::keel_command(home.path())
            .args(["run", "--cwd", &ws, "--approve", policy, "write the file"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(expect_code), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::path::Path::new(&ws).join("run.txt").exists(), expect_written, "{policy}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("? write (edit): run.txt"), "{stderr}");
    }
}

#[tokio::test]
async fn interrupting_after_a_restart_closes_the_waiting_activity_and_cancels_its_approval() {
    let s = setup(Wire::Chat).await;
    s.mock.push(turn(vec![write_call("c1", "never.txt", "x")]));
    s.mock.push(done());
    let c = s.engine.connect().await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    events_until(&c, |e| e["type"] == "approval.requested").await;
    let mut child = s.engine.child;
    child.kill().await.unwrap();
    drop(c);

    let engine = SocketEngine::start(s.home.path(), &[]).await;
    let c = engine.connect().await;
    c.subscribe(&session, -1).await;
    assert_eq!(c.ok("session/interrupt", json!({ "sessionId": session })).await["interrupted"], true);
    let events = events_until(&c, |e| e["type"] == "activity.closed").await;
    let resolved = events.iter().find(|e| e["type"] == "approval.resolved").unwrap();
    assert_eq!(resolved["data"]["decision"], "cancelled");
    assert_eq!(events.last().unwrap()["data"]["reason"], "interrupted");
    let got = c.ok("session/get", json!({ "sessionId": session })).await;
    assert!(got["pendingApprovals"].as_array().unwrap().is_empty());
    assert_eq!(got["status"], "idle");
    assert!(!s.ws.join("never.txt").exists());
}
