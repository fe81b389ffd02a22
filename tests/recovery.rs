//! What a dead process leaves behind: a running tool call is failed as interrupted (never re-run) and its open
//! activity closed, before the session's next run; and a SIGKILL mid-stream loses nothing that was committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::MockModel;
use common::{Engine, Home, SocketEngine};
use keel::provider::scripted::ScriptTurn;
use keel::store::{NewEvent, Store};
use serde_json::json;

#[tokio::test]
async fn tool_calls_left_running_by_a_dead_process_fail_as_interrupted_and_are_not_rerun() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn { text: Some("Picking up again.".into()), ..Default::default() });
    let config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let ws = home.workspace();
    {
        // The log of a process that died while a tool ran.
        let store = Store::open(&home.path().join("keel.db")).unwrap();
        let e = |kind: &'static str, data: serde_json::Value| NewEvent::from_wire(kind, &data).unwrap();
        store
            .append(
                "ses_dead",
                vec![
                    e("session.created", json!({ "cwd": ws, "title": "t", "agent": "build", "model": "" })),
                    e("input.admitted", json!({ "inputId": "i1", "delivery": "queue", "disposition": "started", "input": [{ "type": "text", "text": "do it" }] })),
                    e("activity.opened", json!({ "activityId": "act_old", "trigger": "queue", "stepLimit": 25 })),
                    e("input.promoted", json!({ "inputIds": ["i1"], "activityId": "act_old", "messageId": "m1" })),
                    e("turn.started", json!({ "turnId": "t1", "activityId": "act_old", "messageId": "m2", "model": "mock/m", "agent": "build" })),
                    e("tool.called", json!({ "turnId": "t1", "messageId": "m2", "callId": "call_9", "tool": "todowrite", "input": { "todos": [] } })),
                    e("tool.started", json!({ "callId": "call_9" })),
                ],
            )
            .unwrap();
    }
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let sub = c.subscribe("ses_dead", 7).await;
    assert_eq!(c.ok("session/resume", json!({ "sessionId": "ses_dead" })).await["started"], true);
    let mut events = Vec::new();
    loop {
        let m = c.next_message().await;
        if m["params"]["subscriptionId"] != sub || m["method"] != "session/event" {
            continue;
        }
        let event = m["params"]["event"].clone();
        let done = event["type"] == "activity.closed" && event["data"]["activityId"] != "act_old";
        events.push(event);
        if done {
            break;
        }
    }
    assert_eq!(events[0]["type"], "tool.failed");
    assert_eq!(events[0]["data"]["callId"], "call_9");
    assert!(events[0]["data"]["error"].as_str().unwrap().starts_with("interrupted"));
    assert_eq!(events[1]["type"], "activity.closed");
    assert_eq!(
        events[1]["data"],
        json!({ "activityId": "act_old", "reason": "failed", "error": "the engine stopped while this activity ran" })
    );
    assert!(events.iter().filter(|e| e["type"] == "tool.started").count() == 0, "the tool is never re-run");
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    // The model learns what happened to the call.
    let history = mock.requests()[0].body["messages"].clone();
    let tool = history.as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], "call_9");
    assert!(tool["content"].as_str().unwrap().contains("interrupted"));
}

#[tokio::test]
async fn sigkill_mid_stream_keeps_every_committed_event_and_the_next_run_recovers() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn { text: Some("word ".repeat(400)), chunk_delay_ms: 10, ..Default::default() });
    mock.push(ScriptTurn { text: Some("fresh start".into()), ..Default::default() });
    let config = json!({ "model": "mock/m", "providers": { "mock": { "wire": "anthropic", "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "long" }] })).await;
    let last = loop {
        let m = c.next_message().await;
        if m["params"]["subscriptionId"] == sub && m["params"]["event"]["type"] == "turn.started" {
            break m["params"]["event"]["seq"].as_u64().unwrap();
        }
    };
    let mut child = engine.child;
    child.kill().await.unwrap();

    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let got = c.ok("session/get", json!({ "sessionId": session })).await;
    assert!(got["headSeq"].as_u64().unwrap() >= last);
    assert_eq!(got["status"], "running", "the dead run's status stays until recovery");
    let sub = c.subscribe(&session, last as i64).await;
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "again" }] })).await;
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let m = c.next_message().await;
        if m["params"]["subscriptionId"] == sub && m["params"]["event"]["type"] == "activity.closed" {
            reasons.push(m["params"]["event"]["data"]["reason"].clone());
        }
    }
    assert_eq!(reasons, [json!("failed"), json!("completed")]);
}

#[tokio::test]
async fn an_approved_call_that_had_started_is_not_run_again_after_a_crash() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let ws = home.workspace();
    {
        let store = Store::open(&home.path().join("keel.db")).unwrap();
        let e = |kind: &'static str, data: serde_json::Value| NewEvent::from_wire(kind, &data).unwrap();
        store
            .append(
                "ses_ran",
                vec![
                    e("session.created", json!({ "cwd": ws, "title": "t", "agent": "build", "model": "" })),
                    e("activity.opened", json!({ "activityId": "act_1", "trigger": "queue", "stepLimit": 25 })),
                    e("turn.started", json!({ "turnId": "t1", "activityId": "act_1", "messageId": "m2", "model": "mock/m", "agent": "build" })),
                    e("tool.called", json!({ "turnId": "t1", "messageId": "m2", "callId": "c1", "tool": "write", "input": { "filePath": "twice.txt", "content": "x" } })),
                    e("approval.requested", json!({ "approvalId": "apr_1", "callId": "c1", "tool": "write", "action": "edit", "resources": ["twice.txt"], "title": "t", "options": ["once"] })),
                    e("approval.resolved", json!({ "approvalId": "apr_1", "decision": "once", "by": "t" })),
                    e("tool.started", json!({ "callId": "c1" })),
                ],
            )
            .unwrap();
    }
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let sub = c.subscribe("ses_ran", 7).await;
    c.ok("session/resume", json!({ "sessionId": "ses_ran" })).await;
    let first = loop {
        let m = c.next_message().await;
        if m["params"]["subscriptionId"] == sub && m["method"] == "session/event" {
            break m["params"]["event"].clone();
        }
    };
    assert_eq!(first["type"], "tool.failed");
    assert!(first["data"]["error"].as_str().unwrap().starts_with("interrupted"));
    assert!(!std::path::Path::new(&ws).join("twice.txt").exists(), "a call that had started is never run again");
}
