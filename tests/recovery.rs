//! What a dead process leaves behind: a running tool call is failed as interrupted (never re-run); an activity whose
//! model answer was cut waits for a decision (`recovering`) that the next engine start announces by itself; and a
//! SIGKILL mid-stream loses nothing that was committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::MockModel;
use common::{Engine, Home, SocketEngine};
use keel::provider::scripted::ScriptTurn;
use keel::store::NewEvent;
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
        let store = common::open_store(home.path());
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
    // The engine that starts finds the activity by itself: its turn was answering, so it waits for a decision.
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let sub = c.subscribe("ses_dead", 7).await;
    let mut events = c.events_until(&sub, |e| e["type"] == "recovery.required").await;
    assert_eq!(events[0]["type"], "tool.failed");
    assert_eq!(events[0]["data"]["callId"], "call_9");
    assert!(events[0]["data"]["error"].as_str().unwrap().starts_with("interrupted"));
    assert_eq!(events[1]["type"], "turn.failed");
    assert_eq!(events[1]["data"]["error"]["kind"], "unknown_outcome");
    let required = events.last().unwrap();
    assert_eq!(required["data"]["reason"], "attempt_streamed");
    assert_eq!(required["data"]["activityId"], "act_old");
    assert_eq!(c.ok("session/get", json!({ "sessionId": "ses_dead" })).await["status"], "recovering");
    assert!(mock.requests().is_empty(), "nothing is sent again without a decision");

    c.ok("recovery/decide", json!({ "sessionId": "ses_dead", "decision": "retry" })).await;
    events.extend(c.events_until(&sub, |e| e["type"] == "activity.closed").await);
    let closed = events.last().unwrap();
    assert_eq!(closed["data"], json!({ "activityId": "act_old", "reason": "completed" }));
    let resumed = events.iter().find(|e| e["type"] == "activity.resumed").unwrap();
    assert_eq!(resumed["data"]["after"], "decision");
    assert!(events.iter().filter(|e| e["type"] == "tool.started").count() == 0, "the tool is never re-run");
    // The model learns what happened to the call.
    assert_eq!(mock.requests().len(), 1);
    let history = mock.requests()[0].body["messages"].clone();
    let tool = history.as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], "call_9");
    assert!(tool["content"].as_str().unwrap().contains("interrupted"));
    let again = c.err("recovery/decide", json!({ "sessionId": "ses_dead", "decision": "retry" })).await;
    assert_eq!(again.code, -32011, "a decision is taken once");
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
        if m["params"]["subscriptionId"] == sub && m["params"]["event"]["type"] == "turn.dispatched" {
            break m["params"]["event"]["seq"].as_u64().unwrap();
        }
    };
    // Killed while the model answers: the request has arrived and the answer streams slowly.
    for _ in 0..500 {
        if !mock.requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(mock.requests().len(), 1);
    let mut child = engine.child;
    child.kill().await.unwrap();

    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let sub = c.subscribe(&session, last as i64).await;
    // The engine that starts takes the cut answer over by itself and asks for a decision.
    c.events_until(&sub, |e| e["type"] == "recovery.required").await;
    let got = c.ok("session/get", json!({ "sessionId": session })).await;
    assert!(got["headSeq"].as_u64().unwrap() > last);
    assert_eq!(got["status"], "recovering");
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "again" }] })).await;
    c.ok("recovery/decide", json!({ "sessionId": session, "decision": "abandon" })).await;
    let mut closed = Vec::new();
    while closed.len() < 2 {
        let event = c.events_until(&sub, |e| e["type"] == "activity.closed").await.pop().unwrap();
        closed.push(event["data"].clone());
    }
    assert_eq!(closed[0]["reason"], "interrupted");
    assert_eq!(closed[0]["error"], "abandoned after the engine stopped");
    assert_eq!(closed[1]["reason"], "completed");
    assert_eq!(mock.requests().len(), 2, "the cut attempt was not sent again");
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
        let store = common::open_store(home.path());
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
