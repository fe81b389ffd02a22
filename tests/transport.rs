//! The wire: both framings, the lifecycle, errors for every kind of bad input, cancellation, and sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Engine, Framing, Home, SocketEngine};
use serde_json::json;

#[tokio::test]
async fn both_framings_round_trip_initialize_and_a_session_call() {
    for framing in [Framing::Ndjson, Framing::ContentLength] {
        let home = Home::new();
        let engine = Engine::start(home.path(), framing).await;
        let init = engine.client.initialize().await;
        assert_eq!(init["protocolVersion"], 1, "{framing:?}");
        assert_eq!(init["serverInfo"]["name"], "keel");
        let id = engine.client.create_session(&home.workspace()).await;
        let got = engine.client.ok("session/get", json!({ "sessionId": id })).await;
        assert_eq!(got["session"]["id"], id.as_str());
        assert_eq!(got["headSeq"], 1);
    }
}

#[tokio::test]
async fn requests_before_initialize_answer_not_initialized() {
    let home = Home::new();
    let engine = Engine::start(home.path(), Framing::Ndjson).await;
    let e = engine.client.err("session/list", json!({})).await;
    assert_eq!(e.code, -32002);
    engine.client.initialize().await;
    engine.client.ok("session/list", json!({})).await;
    let again = engine.client.err("initialize", json!({ "protocolVersion": 1, "clientInfo": { "name": "x" } })).await;
    assert_eq!(again.code, -32600);
}

/// One bad input per row: what is sent, and the error code that must come back. After each, the connection
/// still answers a normal call.
#[tokio::test]
async fn bad_input_gets_the_right_error_and_the_connection_goes_on() {
    for framing in [Framing::Ndjson, Framing::ContentLength] {
        let home = Home::new();
        let engine = Engine::start(home.path(), framing).await;
        let c = &engine.client;
        c.initialize().await;

        let check_raw = |json: &'static [u8], code: i64| async move {
            c.send_framed(json);
            let answer = c.orphan_response().await;
            assert_eq!(answer["error"]["code"], code, "{framing:?} {}", String::from_utf8_lossy(json));
            c.ok("session/list", json!({})).await;
        };
        check_raw(b"this is not json", -32700).await;
        check_raw(b"{\"jsonrpc\":\"2.0\",\"id\":", -32700).await;
        check_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"session/list\"}]", -32600).await;
        check_raw(b"[]", -32600).await;
        check_raw(b"42", -32600).await;

        let check = |method: &'static str, params: serde_json::Value, code: i64, path: Option<&'static str>| async move {
            let e = c.err(method, params.clone()).await;
            assert_eq!(e.code, code, "{framing:?} {method} {params}: {e:?}");
            if let Some(path) = path {
                assert_eq!(e.data["path"], path, "{method} {params}: {e:?}");
            }
            c.ok("session/list", json!({})).await;
        };
        check("no/such/method", json!({}), -32601, None).await;
        check("session/create", json!({}), -32602, Some("cwd")).await;
        check("session/create", json!({ "cwd": 7 }), -32602, Some("cwd")).await;
        check("session/create", json!({ "cwd": "relative/dir" }), -32602, Some("cwd")).await;
        check("session/create", json!({ "cwd": "/no/such/dir/anywhere" }), -32602, Some("cwd")).await;
        check("session/list", json!({ "limit": "ten" }), -32602, Some("limit")).await;
        check("session/get", json!({ "sessionId": "ses_missing" }), -32010, None).await;
        check("session/subscribe", json!({ "sessionId": "ses_missing" }), -32010, None).await;
        check("session/unsubscribe", json!({ "subscriptionId": "sub_x" }), -32602, Some("subscriptionId")).await;
        check("session/list", json!({ "cursor": "garbage" }), -32602, Some("cursor")).await;
    }
}

#[tokio::test]
async fn oversized_frames_are_answered_and_skipped() {
    for framing in [Framing::Ndjson, Framing::ContentLength] {
        let home = Home::new();
        let engine = Engine::start(home.path(), framing).await;
        let c = &engine.client;
        c.initialize().await;
        let big = "x".repeat(16 * 1024 * 1024 + 10);
        let frame = json!({ "jsonrpc": "2.0", "id": 99, "method": "session/create", "params": { "cwd": big } });
        c.send(&frame);
        let answer = c.orphan_response().await;
        assert_eq!(answer["error"]["code"], -32600, "{framing:?}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("exceeds"), "{answer}");
        c.ok("session/list", json!({})).await;
    }
}

#[tokio::test]
async fn unusual_ids_are_echoed() {
    let home = Home::new();
    let engine = Engine::start(home.path(), Framing::Ndjson).await;
    engine.client.initialize().await;
    for id in [json!(-5), json!(1.5), json!("abc")] {
        engine.client.send(&json!({ "jsonrpc": "2.0", "id": id, "method": "session/list" }));
        let answer = engine.client.orphan_response().await;
        assert_eq!(answer["id"], id);
        assert!(answer["result"]["sessions"].is_array());
    }
}

#[tokio::test]
async fn shutdown_then_exit_ends_the_process_with_zero() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    engine.client.ok("shutdown", json!(null)).await;
    let e = engine.client.err("session/list", json!({})).await;
    assert_eq!(e.code, -32600);
    engine.client.notify("exit", json!(null));
    assert_eq!(engine.wait_exit().await, 0);
}

#[tokio::test]
async fn exit_without_shutdown_ends_with_one() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    engine.client.notify("exit", json!(null));
    assert_eq!(engine.wait_exit().await, 1);
}

#[tokio::test]
async fn closing_stdin_ends_the_process_cleanly() {
    let home = Home::new();
    let mut engine = Engine::ready(home.path()).await;
    drop(engine.child.stdin.take());
    drop(engine.client);
    let status = tokio::time::timeout(common::WAIT, engine.child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn cancel_request_answers_request_cancelled() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let session = c.create_session(&home.workspace()).await;
    let (id, answer) =
        c.start_request("session/events", json!({ "sessionId": session, "afterSeq": 1, "waitMs": 60000 }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.notify("$/cancelRequest", json!({ "id": id }));
    let answer = tokio::time::timeout(common::WAIT, answer).await.unwrap().unwrap();
    assert_eq!(answer["error"]["code"], -32800);
    c.ok("session/list", json!({})).await;
}

#[tokio::test]
async fn long_poll_returns_when_an_event_commits() {
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let c = &engine.client;
    let session = c.create_session(&home.workspace()).await;
    let (_, answer) =
        c.start_request("session/events", json!({ "sessionId": session, "afterSeq": 1, "waitMs": 60000 }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.ok("session/update", json!({ "sessionId": session, "title": "later" })).await;
    let answer = common::into_result(tokio::time::timeout(common::WAIT, answer).await.unwrap().unwrap()).unwrap();
    assert_eq!(answer["events"][0]["seq"], 2);
    assert_eq!(answer["events"][0]["data"]["title"], "later");
}

#[tokio::test]
async fn unix_socket_serves_several_clients_and_survives_a_disconnect_mid_request() {
    let home = Home::new();
    let engine = SocketEngine::start(home.path(), &[]).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&engine.socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let a = engine.connect().await;
    let b = engine.connect().await;
    let session = a.create_session(&home.workspace()).await;
    let seen = b.ok("session/get", json!({ "sessionId": session })).await;
    assert_eq!(seen["session"]["id"], session.as_str());

    // A client that vanishes while its request waits leaves the engine serving everyone else.
    let _pending = b.start_request("session/events", json!({ "sessionId": session, "afterSeq": 1, "waitMs": 60000 }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(b);
    let c = engine.connect().await;
    c.ok("session/update", json!({ "sessionId": session, "title": "still here" })).await;
    let got = a.ok("session/get", json!({ "sessionId": session })).await;
    assert_eq!(got["session"]["title"], "still here");
}

#[tokio::test]
async fn tcp_listener_on_loopback() {
    let home = Home::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _child = common::keel_command(home.path())
        .args(["serve", "--listen", &format!("tcp:127.0.0.1:{port}")])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let stream = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("{e}"),
        }
    };
    let (r, w) = stream.into_split();
    let client = common::Client::connect(r, w, Framing::ContentLength);
    client.initialize().await;
    client.create_session(&home.workspace()).await;
}

#[tokio::test]
async fn tcp_beyond_loopback_requires_a_token_and_checks_it() {
    let home = Home::new();
    let refused =
        common::keel_command(home.path()).args(["serve", "--listen", "tcp:0.0.0.0:0"]).output().await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--token-file"));

    let token = home.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _child = common::keel_command(home.path())
        .args(["serve", "--listen", &format!("tcp:0.0.0.0:{port}"), "--token-file"])
        .arg(&token)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let connect = || async {
        let deadline = tokio::time::Instant::now() + common::WAIT;
        loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => {
                    let (r, w) = s.into_split();
                    break common::Client::connect(r, w, Framing::Ndjson);
                }
                Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let wrong = connect().await;
    let e = wrong
        .err("initialize", json!({ "protocolVersion": 1, "clientInfo": { "name": "t" }, "authToken": "nope" }))
        .await;
    assert_eq!(e.code, -32014);
    assert!(!e.message.contains("s3cret"));
    let right = connect().await;
    right.ok("initialize", json!({ "protocolVersion": 1, "clientInfo": { "name": "t" }, "authToken": "s3cret" })).await;
}
