//! Two engine processes on one `KEEL_HOME`: migrations claimed once, and each sees the other's commits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Engine, EventLog, Framing, Home};
use serde_json::json;

#[tokio::test]
async fn engines_started_at_once_do_not_race_on_migrations() {
    for _ in 0..5 {
        let home = Home::new();
        let (a, b, c) = tokio::join!(
            Engine::start(home.path(), Framing::Ndjson),
            Engine::start(home.path(), Framing::Ndjson),
            Engine::start(home.path(), Framing::ContentLength),
        );
        let (ra, rb, rc) = tokio::join!(a.client.initialize(), b.client.initialize(), c.client.initialize());
        assert_eq!((ra["protocolVersion"].clone(), rb["protocolVersion"].clone()), (json!(1), json!(1)));
        assert_eq!(rc["protocolVersion"], 1);
        let ws = home.workspace();
        let (x, y, z) =
            tokio::join!(a.client.create_session(&ws), b.client.create_session(&ws), c.client.create_session(&ws));
        let listed = a.client.ok("session/list", json!({})).await["sessions"].as_array().unwrap().len();
        assert_eq!(listed, 3, "{x} {y} {z}");
    }
}

#[tokio::test]
async fn a_subscriber_on_one_engine_sees_writes_through_another() {
    let home = Home::new();
    let a = Engine::ready(home.path()).await;
    let b = Engine::ready(home.path()).await;
    let session = a.client.create_session(&home.workspace()).await;
    let sub = a.client.subscribe(&session, 0).await;
    assert_eq!(EventLog::collect(&a.client, &sub, 1).await.seqs, [1]);

    for i in 0..50 {
        b.client.ok("session/update", json!({ "sessionId": session, "title": format!("from b {i}") })).await;
    }
    // Interleave writes from both engines: seqs stay gapless and the subscriber sees each once.
    for i in 0..50 {
        let (client, who) = if i % 2 == 0 { (&a.client, "a") } else { (&b.client, "b") };
        client.ok("session/update", json!({ "sessionId": session, "title": format!("{who} {i}") })).await;
    }
    let log = EventLog::collect(&a.client, &sub, 101).await;
    assert_eq!(log.seqs, (2..=101).collect::<Vec<_>>());
    let title = a.client.ok("session/get", json!({ "sessionId": session })).await["session"]["title"].clone();
    assert_eq!(title, "b 49");

    // A deletion through B ends A's subscription.
    b.client.ok("session/delete", json!({ "sessionId": session })).await;
    let ended = loop {
        let m = a.client.next_message().await;
        if m["method"] == "session/subscriptionEnded" {
            break m["params"].clone();
        }
    };
    assert_eq!(ended["reason"], "deleted");
}
