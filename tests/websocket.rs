//! `keel serve --listen ws://`: JSON-RPC on text frames, the upgrade judged by origin and token, and bad frames
//! answered while the connection goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Home, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `keel serve --listen ws://ADDR:PORT` with `extra` arguments and waits until the port accepts.
async fn start(home: &Path, host: &str, extra: &[&str], env: &[(&str, &str)]) -> (tokio::process::Child, u16) {
    let port = free_port();
    let mut cmd = common::keel_command(home);
    cmd.args(["serve", "--listen", &format!("ws://{host}:{port}")]).args(extra).stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the WebSocket port never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (child, port)
}

struct Ws {
    socket: WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Ws {
    async fn open(port: u16, path: &str, headers: &[(&'static str, &str)]) -> Result<Ws, WsError> {
        let mut request = format!("ws://127.0.0.1:{port}{path}").into_client_request().unwrap();
        for (k, v) in headers {
            request.headers_mut().insert(*k, v.parse().unwrap());
        }
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (socket, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream)).await.unwrap()?;
        Ok(Ws { socket, next_id: 0 })
    }

    async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next()).await.expect("no frame in time");
            match message.expect("the socket closed").unwrap() {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Sends a request and returns its response, skipping notifications and collecting them.
    async fn call(&mut self, method: &str, params: Value, seen: &mut Vec<Value>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        // Pretty-printed on purpose: a text frame may hold line breaks.
        self.send_text(&serde_json::to_string_pretty(&request).unwrap()).await;
        loop {
            let message = self.next().await;
            if message["id"] == id && message.get("method").is_none() {
                return message;
            }
            seen.push(message);
        }
    }

    async fn ok(&mut self, method: &str, params: Value) -> Value {
        let mut seen = Vec::new();
        let answer = self.call(method, params, &mut seen).await;
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    async fn initialize(&mut self) {
        self.ok("initialize", json!({ "protocolVersion": 1, "clientInfo": { "name": "ws-test" } })).await;
    }
}

fn refusal_status(result: Result<Ws, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

#[tokio::test]
async fn a_prompt_round_trips_over_websocket() {
    let home = Home::new();
    let script = home.path().join("script.json");
    let turn = json!({ "turns": [{ "text": "hello over ws", "chunkDelayMs": 1 }] });
    std::fs::write(&script, turn.to_string()).unwrap();
    let (_child, port) = start(home.path(), "127.0.0.1", &[], &[("KEEL_SCRIPT", script.to_str().unwrap())]).await;
    let mut ws = Ws::open(port, "/", &[("origin", "http://localhost:5173")]).await.unwrap();
    ws.initialize().await;
    let session = ws.ok("session/create", json!({ "cwd": home.workspace() })).await["session"]["id"].clone();
    ws.ok("session/subscribe", json!({ "sessionId": session })).await;
    let mut seen = Vec::new();
    let prompt = json!({ "sessionId": session, "input": [{ "type": "text", "text": "hi" }] });
    let receipt = ws.call("session/prompt", prompt, &mut seen).await;
    assert_eq!(receipt["result"]["disposition"], "started", "{receipt}");
    let mut events: Vec<Value> = seen.into_iter().filter(|m| m["method"] == "session/event").collect();
    while !events.iter().any(|m| m["params"]["event"]["type"] == "activity.closed") {
        let message = ws.next().await;
        if message["method"] == "session/event" {
            events.push(message);
        }
    }
    let text: Vec<&Value> = events
        .iter()
        .filter(|m| m["params"]["event"]["type"] == "text.completed")
        .map(|m| &m["params"]["event"]["data"]["text"])
        .collect();
    assert_eq!(text, [&json!("hello over ws")]);
    let seqs: Vec<u64> = events.iter().map(|m| m["params"]["event"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless and in order");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    let home = Home::new();
    let (_child, port) = start(home.path(), "127.0.0.1", &["--allow-origin", "https://panel.example"], &[]).await;
    assert_eq!(refusal_status(Ws::open(port, "/", &[("origin", "https://evil.example")]).await), 403);
    let mut listed = Ws::open(port, "/", &[("origin", "https://panel.example")]).await.unwrap();
    listed.initialize().await;
    let mut no_origin = Ws::open(port, "/", &[]).await.unwrap();
    no_origin.initialize().await;
}

#[tokio::test]
async fn beyond_loopback_a_token_is_required_in_the_upgrade() {
    let home = Home::new();
    let refused = common::keel_command(home.path()).args(["serve", "--listen", "ws://0.0.0.0:0"]).output().await;
    let refused = refused.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--token-file"));

    let token = home.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (_child, port) = start(home.path(), "0.0.0.0", &["--token-file", token.to_str().unwrap()], &[]).await;
    assert_eq!(refusal_status(Ws::open(port, "/", &[]).await), 401);
    assert_eq!(refusal_status(Ws::open(port, "/?token=nope", &[]).await), 401);
    // The origin is judged first: a foreign page learns nothing about the token.
    assert_eq!(refusal_status(Ws::open(port, "/?token=s3cret", &[("origin", "https://evil.example")]).await), 403);
    let mut by_query = Ws::open(port, "/?token=s3cret", &[]).await.unwrap();
    by_query.initialize().await;
    let mut by_header = Ws::open(port, "/", &[("authorization", "Bearer s3cret")]).await.unwrap();
    by_header.initialize().await;
}

#[tokio::test]
async fn bad_frames_are_answered_and_the_connection_goes_on() {
    let home = Home::new();
    let (_child, port) = start(home.path(), "127.0.0.1", &[], &[]).await;
    let mut ws = Ws::open(port, "/", &[]).await.unwrap();
    ws.initialize().await;
    for (text, code) in [
        ("this is not json", -32700),
        ("{\"jsonrpc\":\"2.0\",\"id\":", -32700),
        ("Content-Length: 2\r\n\r\n{}", -32700),
        ("[]", -32600),
    ] {
        ws.send_text(text).await;
        let answer = ws.next().await;
        assert_eq!(answer["error"]["code"], code, "{text}: {answer}");
        ws.ok("session/list", json!({})).await;
    }
    ws.socket
        .send(Message::binary(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"session/list\"}".to_vec()))
        .await
        .unwrap();
    let answer = ws.next().await;
    assert_eq!(answer["error"]["code"], -32600);
    assert!(answer["error"]["message"].as_str().unwrap().contains("text frame"), "{answer}");
    ws.ok("session/list", json!({})).await;
}
