//! The session read model: create, list with cursors, get, update, fork, delete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Engine, Home};
use serde_json::json;

#[tokio::test]
async fn create_get_update() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let ws = home.workspace();
    let created = c.ok("session/create", json!({ "cwd": ws, "title": "first", "model": "openai/gpt-5" })).await;
    let s = &created["session"];
    assert_eq!(s["title"], "first");
    assert_eq!(s["model"], "openai/gpt-5");
    assert_eq!(s["agent"], "build");
    assert_eq!(s["status"], "idle");
    assert_eq!(s["usage"]["inputTokens"], 0);
    let id = s["id"].as_str().unwrap();

    let updated = c.ok("session/update", json!({ "sessionId": id, "title": "second", "agent": "plan" })).await;
    assert_eq!(updated["session"]["title"], "second");
    assert_eq!(updated["session"]["agent"], "plan");
    let got = c.ok("session/get", json!({ "sessionId": id })).await;
    assert_eq!(got["headSeq"], 2);
    assert_eq!(got["status"], "idle");
    assert_eq!(got["pendingInputs"], json!([]));

    // An update that changes nothing records nothing.
    c.ok("session/update", json!({ "sessionId": id, "title": "second" })).await;
    assert_eq!(c.ok("session/get", json!({ "sessionId": id })).await["headSeq"], 2);

    let events = c.ok("session/events", json!({ "sessionId": id, "afterSeq": 0 })).await;
    let types: Vec<_> = events["events"].as_array().unwrap().iter().map(|e| e["type"].clone()).collect();
    assert_eq!(types, [json!("session.created"), json!("session.updated")]);
    assert_eq!(events["events"][1]["data"], json!({ "title": "second", "agent": "plan" }));
    assert_eq!(events["hasMore"], false);
}

#[tokio::test]
async fn list_pages_through_every_session_exactly_once() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let ws = home.workspace();
    let other = home.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut ids = Vec::new();
    for _ in 0..23 {
        ids.push(c.create_session(&ws).await);
    }
    c.create_session(other.to_str().unwrap()).await;

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut params = json!({ "cwd": ws, "limit": 5 });
        if let Some(cursor) = &cursor {
            params["cursor"] = json!(cursor);
        }
        let page = c.ok("session/list", params).await;
        let sessions = page["sessions"].as_array().unwrap();
        assert!(sessions.len() <= 5);
        seen.extend(sessions.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        match page.get("nextCursor").and_then(|c| c.as_str()) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    ids.reverse(); // newest first
    assert_eq!(seen, ids);
    assert_eq!(c.ok("session/list", json!({})).await["sessions"].as_array().unwrap().len(), 24);
}

#[tokio::test]
async fn fork_copies_history_up_to_a_seq() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let source = c.create_session(&home.workspace()).await;
    for title in ["a", "b", "c"] {
        c.ok("session/update", json!({ "sessionId": source, "title": title })).await;
    }
    let fork = c.ok("session/fork", json!({ "sessionId": source, "atSeq": 3 })).await;
    let fork_id = fork["session"]["id"].as_str().unwrap();
    assert_ne!(fork_id, source);
    assert_eq!(fork["session"]["title"], "b");
    assert_eq!(fork["session"]["parentId"], source.as_str());
    let events = c.ok("session/events", json!({ "sessionId": fork_id, "afterSeq": 0 })).await;
    let seqs: Vec<_> = events["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(events["events"][0]["data"]["forkedFrom"], json!({ "sessionId": source, "atSeq": 3 }));

    let whole = c.ok("session/fork", json!({ "sessionId": source })).await;
    assert_eq!(whole["session"]["title"], "c");
    let e = c.err("session/fork", json!({ "sessionId": source, "atSeq": 99 })).await;
    assert_eq!((e.code, e.data["path"].as_str()), (-32602, Some("atSeq")));
    let e = c.err("session/fork", json!({ "sessionId": "ses_nope" })).await;
    assert_eq!(e.code, -32010);
}

#[tokio::test]
async fn delete_removes_the_session_and_ends_its_subscriptions() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let e = c.err("session/delete", json!({ "sessionId": "ses_unknown" })).await;
    assert_eq!(e.code, -32010);

    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    let log = common::EventLog::collect(c, &sub, 1).await;
    assert_eq!(log.seqs, [1]);
    c.ok("session/delete", json!({ "sessionId": session })).await;
    let mut last_event = None;
    let ended = loop {
        let m = c.next_message().await;
        match m["method"].as_str().unwrap() {
            "session/event" => last_event = Some(m["params"]["event"].clone()),
            "session/subscriptionEnded" => break m["params"].clone(),
            _ => {}
        }
    };
    assert_eq!(last_event.unwrap()["type"], "session.deleted");
    assert_eq!(ended, json!({ "subscriptionId": sub, "reason": "deleted", "lastSeq": 2 }));
    assert_eq!(c.err("session/get", json!({ "sessionId": session })).await.code, -32010);
    assert_eq!(c.err("session/delete", json!({ "sessionId": session })).await.code, -32010);
    assert_eq!(c.err("session/events", json!({ "sessionId": session, "afterSeq": 0 })).await.code, -32010);
    assert!(c.ok("session/list", json!({})).await["sessions"].as_array().unwrap().is_empty());
}
