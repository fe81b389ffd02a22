//! Cursor subscriptions: exactly-once, in-order delivery from any cursor, while writers run, across a SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Engine, EventLog, Home, SocketEngine};
use serde_json::json;

/// Renames the session `n` times as fast as the engine answers.
async fn rename_loop(client: &common::Client, session: &str, n: usize) {
    for i in 0..n {
        client.ok("session/update", json!({ "sessionId": session, "title": format!("title {i}") })).await;
    }
}

fn assert_gapless(seqs: &[u64], after: u64, head: u64) {
    let expected: Vec<u64> = (after + 1..=head).collect();
    assert_eq!(seqs.len(), expected.len(), "count after {after} up to {head}");
    assert_eq!(seqs, expected.as_slice());
}

#[tokio::test]
async fn subscribing_mid_stream_delivers_every_later_seq_once_in_order_even_across_sigkill() {
    let home = Home::new();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let writer = engine.connect().await;
    let reader = engine.connect().await;
    let session = writer.create_session(&home.workspace()).await;

    let writes = 1500;
    let (_, ()) = tokio::join!(
        async {
            // Subscribe part-way through the writes, from a cursor behind the head.
            tokio::time::sleep(Duration::from_millis(30)).await;
            let head = reader.ok("session/get", json!({ "sessionId": session })).await["headSeq"].as_u64().unwrap();
            assert!(head > 1, "the writer has not started");
            let after = head / 2;
            let sub = reader.subscribe(&session, after as i64).await;
            let log = EventLog::collect(&reader, &sub, writes as u64 + 1).await;
            assert_gapless(&log.seqs, after, writes as u64 + 1);
            assert!(log.synced_at.is_some());
        },
        rename_loop(&writer, &session, writes),
    );

    // A crash with events committed: nothing acknowledged is lost, and a re-subscription continues exactly.
    let mut child = engine.child;
    child.kill().await.unwrap();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let writer = engine.connect().await;
    let reader = engine.connect().await;
    let last_seen = writes as u64 + 1;
    let sub = reader.subscribe(&session, last_seen as i64).await;
    rename_loop(&writer, &session, 10).await;
    let log = EventLog::collect(&reader, &sub, last_seen + 10).await;
    assert_gapless(&log.seqs, last_seen, last_seen + 10);
}

#[tokio::test]
async fn replay_then_synced_then_live() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let session = c.create_session(&home.workspace()).await;
    rename_loop(c, &session, 5).await;
    let sub = c.subscribe(&session, 0).await;
    let replay = EventLog::collect(c, &sub, 6).await;
    assert_gapless(&replay.seqs, 0, 6);
    let synced = c.next_message().await;
    assert_eq!(synced["method"], "session/synced");
    assert_eq!(synced["params"]["seq"], 6);
    rename_loop(c, &session, 1).await;
    let live = c.next_message().await;
    assert_eq!(live["method"], "session/event");
    assert_eq!(live["params"]["event"]["seq"], 7);
    assert_eq!(live["params"]["event"]["type"], "session.updated");
    assert_eq!(live["params"]["event"]["data"]["title"], "title 0");
}

#[tokio::test]
async fn from_now_skips_history_and_unsubscribe_stops_delivery() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let session = c.create_session(&home.workspace()).await;
    rename_loop(c, &session, 3).await;
    let sub = c.subscribe(&session, -1).await;
    let synced = c.next_message().await;
    assert_eq!(synced["method"], "session/synced");
    assert_eq!(synced["params"]["seq"], 4);
    rename_loop(c, &session, 1).await;
    assert_eq!(c.next_message().await["params"]["event"]["seq"], 5);
    c.ok("session/unsubscribe", json!({ "subscriptionId": sub })).await;
    rename_loop(c, &session, 1).await;
    assert!(c.maybe_message(Duration::from_millis(200)).await.is_none());
    let e = c.err("session/unsubscribe", json!({ "subscriptionId": sub })).await;
    assert_eq!(e.code, -32602);
}

#[tokio::test]
async fn several_connections_each_get_every_event() {
    let home = Home::new();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let writer = engine.connect().await;
    let session = writer.create_session(&home.workspace()).await;
    let mut readers = Vec::new();
    for _ in 0..5 {
        let r = engine.connect().await;
        let sub = r.subscribe(&session, 0).await;
        readers.push((r, sub));
    }
    rename_loop(&writer, &session, 200).await;
    for (r, sub) in &readers {
        let log = EventLog::collect(r, sub, 201).await;
        assert_gapless(&log.seqs, 0, 201);
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_ended_as_lagged_without_slowing_the_writer() {
    let home = Home::new();
    let engine = SocketEngine::start(home.path(), &[("KEEL_SUBSCRIBER_STALL_MS", "300")]).await;
    let writer = engine.connect().await;
    let session = writer.create_session(&home.workspace()).await;

    // A raw connection that subscribes, then reads nothing until the writer is done.
    let stream = tokio::net::UnixStream::connect(&engine.socket).await.unwrap();
    let (r, mut w) = stream.into_split();
    use tokio::io::AsyncWriteExt;
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": 1, "clientInfo": { "name": "slow" } } });
    let sub = json!({ "jsonrpc": "2.0", "id": 2, "method": "session/subscribe", "params": { "sessionId": session } });
    w.write_all(format!("{init}\n{sub}\n").as_bytes()).await.unwrap();

    // Enough events to fill the socket buffers and the engine's bounded queue several times over.
    let writes = 6000;
    rename_loop(&writer, &session, writes).await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    let slow = common::Client::connect(r, w, common::Framing::Ndjson);
    let mut seqs = Vec::new();
    let ended = loop {
        let m = slow.next_message().await;
        match m["method"].as_str().unwrap() {
            "session/event" => seqs.push(m["params"]["event"]["seq"].as_u64().unwrap()),
            "session/subscriptionEnded" => break m["params"].clone(),
            _ => {}
        }
    };
    assert_eq!(ended["reason"], "lagged");
    let last = ended["lastSeq"].as_u64().unwrap();
    assert!(last < writes as u64 + 1, "it should have been cut off before the end");
    // What it did get is a gapless prefix, and lastSeq is where to resume.
    assert_gapless(&seqs, 0, last);
    let sub = slow.subscribe(&session, last as i64).await;
    let log = EventLog::collect(&slow, &sub, writes as u64 + 1).await;
    assert_gapless(&log.seqs, last, writes as u64 + 1);
}
