//! The black-box harness: spawns the built `keel` binary with its own `KEEL_HOME` and speaks JSON-RPC to it.
//! Every wait has a timeout, so a broken engine fails a test instead of hanging it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

pub mod mock;
pub mod node;
pub mod postgres;

pub const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    Ndjson,
    ContentLength,
}

/// A temporary `KEEL_HOME` and workspace, removed on drop.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A directory to use as a session's workspace.
    pub fn workspace(&self) -> String {
        let ws = self.dir.path().join("workspace");
        std::fs::create_dir_all(&ws).unwrap();
        ws.to_str().unwrap().to_owned()
    }
}

pub fn keel_command(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.env("KEEL_HOME", home)
        .env("KEEL_LOG", std::env::var("KEEL_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("KEEL_STORE")
        .kill_on_drop(true);
    if let Some(url) = store_for(home) {
        cmd.env("KEEL_STORE", url);
    }
    cmd
}

/// The store the engines of `home` use, opened in this process (to write a log by hand).
pub fn open_store(home: &Path) -> keel::store::Store {
    match store_for(home) {
        Some(url) => keel::store::Store::connect(&url).unwrap(),
        None => keel::store::Store::open(&home.join("keel.db")).unwrap(),
    }
}

/// Everything the engines of `home` stored, as bytes to search for what must never be stored (a key, say): the
/// SQLite file and its WAL, or the tables' rows on PostgreSQL.
pub fn stored_bytes(home: &Path) -> Vec<u8> {
    match store_for(home) {
        Some(url) => ["events", "parts", "inputs", "approvals", "sessions"]
            .iter()
            .map(|table| postgres::psql(&url, &format!("COPY (SELECT * FROM {table}) TO STDOUT")))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
        None => {
            let mut bytes = std::fs::read(home.join("keel.db")).unwrap();
            bytes.extend(std::fs::read(home.join("keel.db-wal")).unwrap_or_default());
            bytes
        }
    }
}

/// With `KEEL_TEST_STORE=postgres` the black-box tests run on PostgreSQL: each home gets its own database, which
/// every engine started on that home shares (as several engines on one SQLite file do otherwise).
pub fn store_for(home: &Path) -> Option<String> {
    static STORES: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    if std::env::var("KEEL_TEST_STORE").ok()? != "postgres" {
        return None;
    }
    let mut stores = STORES.lock().unwrap();
    let url = stores.get_or_insert_default().entry(home.to_owned()).or_insert_with(|| {
        postgres::fresh_database().expect("KEEL_TEST_STORE=postgres needs PostgreSQL (apt-get install postgresql)")
    });
    Some(url.clone())
}

/// An engine process serving stdio, with a client on its pipes.
pub struct Engine {
    pub child: Child,
    pub client: Client,
}

impl Engine {
    pub async fn start(home: &Path, framing: Framing) -> Self {
        Self::start_with(home, framing, &[]).await
    }

    pub async fn start_with(home: &Path, framing: Framing, env: &[(&str, &str)]) -> Self {
        let mut cmd = keel_command(home);
        cmd.arg("serve").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let client = Client::connect(stdout, stdin, framing);
        Self { child, client }
    }

    /// Starts and initializes.
    pub async fn ready(home: &Path) -> Self {
        let engine = Self::start(home, Framing::Ndjson).await;
        engine.client.initialize().await;
        engine
    }

    /// SIGKILL: no shutdown, no flush, like a crash.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    pub async fn wait_exit(mut self) -> i32 {
        tokio::time::timeout(WAIT, self.child.wait()).await.expect("engine did not exit").unwrap().code().unwrap_or(-1)
    }
}

/// An engine serving a Unix socket, for tests with several clients.
pub struct SocketEngine {
    pub child: Child,
    pub socket: PathBuf,
}

impl SocketEngine {
    pub async fn start(home: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_at(home, "keel.sock", env).await
    }

    /// An engine listening on its own socket (`name` in the home), for several engines on one home.
    pub async fn start_at(home: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let socket = home.join(name);
        let mut cmd = keel_command(home);
        cmd.arg("serve").arg("--listen").arg(format!("unix:{}", socket.display()));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "socket never appeared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { child, socket }
    }

    pub async fn connect(&self) -> Client {
        self.connect_with(json!({})).await
    }

    pub async fn connect_with(&self, capabilities: Value) -> Client {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        let (r, w) = stream.into_split();
        let client = Client::connect(r, w, Framing::Ndjson);
        client.initialize_with(capabilities).await;
        client
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Value,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// A JSON-RPC client over any byte stream, in either framing.
pub struct Client {
    out: mpsc::UnboundedSender<Vec<u8>>,
    framing: Framing,
    pending: Pending,
    next_id: Mutex<u64>,
    /// Notifications and server→client requests, in arrival order.
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    /// Responses whose id nobody waits for (errors to malformed frames carry `id: null`).
    orphans: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
}

impl Client {
    pub fn connect<R, W>(reader: R, writer: W, framing: Framing) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            let mut writer = writer;
            while let Some(bytes) = out_rx.recv().await {
                if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (orphan_tx, orphans) = mpsc::unbounded_channel();
        let routes = Arc::clone(&pending);
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader);
            while let Some(message) = read_message(&mut reader).await {
                let is_response = message.get("method").is_none();
                let waiter = match message.get("id") {
                    Some(id) if is_response => routes.lock().unwrap().remove(&id.to_string()),
                    _ => None,
                };
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(message);
                    }
                    None if is_response => {
                        let _ = orphan_tx.send(message);
                    }
                    None => {
                        let _ = inbox_tx.send(message);
                    }
                }
            }
        });
        Self {
            out,
            framing,
            pending,
            next_id: Mutex::new(1),
            inbox: tokio::sync::Mutex::new(inbox),
            orphans: tokio::sync::Mutex::new(orphans),
        }
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        let _ = self.out.send(bytes.to_vec());
    }

    /// Sends one message in this client's framing.
    pub fn send(&self, message: &Value) {
        let json = serde_json::to_vec(message).unwrap();
        self.send_framed(&json);
    }

    pub fn send_framed(&self, json: &[u8]) {
        let mut frame = Vec::new();
        match self.framing {
            Framing::Ndjson => {
                frame.extend_from_slice(json);
                frame.push(b'\n');
            }
            Framing::ContentLength => {
                frame.extend_from_slice(format!("Content-Length: {}\r\n\r\n", json.len()).as_bytes());
                frame.extend_from_slice(json);
            }
        }
        self.send_raw(&frame);
    }

    fn next_id(&self) -> u64 {
        let mut id = self.next_id.lock().unwrap();
        *id += 1;
        *id
    }

    /// Sends a request and returns its id and the receiver of its response.
    pub fn start_request(&self, method: &str, params: Value) -> (u64, oneshot::Receiver<Value>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.to_string(), tx);
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        (id, rx)
    }

    /// The whole response message.
    pub async fn call_raw(&self, method: &str, params: Value) -> Value {
        let (_, rx) = self.start_request(method, params);
        tokio::time::timeout(WAIT, rx).await.unwrap_or_else(|_| panic!("no answer to {method}")).unwrap()
    }

    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        into_result(self.call_raw(method, params).await)
    }

    /// A call that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params.clone()).await.unwrap_or_else(|e| panic!("{method} {params} failed: {e:?}"))
    }

    /// A call that must fail; returns the error.
    pub async fn err(&self, method: &str, params: Value) -> RpcError {
        match self.call(method, params.clone()).await {
            Ok(v) => panic!("{method} {params} succeeded with {v}"),
            Err(e) => e,
        }
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Answers a server→client request.
    pub fn respond(&self, id: &Value, result: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "result": result }));
    }

    pub async fn initialize_with(&self, capabilities: Value) -> Value {
        self.ok(
            "initialize",
            json!({ "protocolVersion": 1, "clientInfo": { "name": "keel-tests" }, "capabilities": capabilities }),
        )
        .await
    }

    pub async fn initialize(&self) -> Value {
        self.ok("initialize", json!({ "protocolVersion": 1, "clientInfo": { "name": "keel-tests" } })).await
    }

    /// The next notification or server→client request.
    pub async fn next_message(&self) -> Value {
        let mut inbox = self.inbox.lock().await;
        tokio::time::timeout(WAIT, inbox.recv()).await.expect("no message from the engine").expect("connection closed")
    }

    /// The events of subscription `sub` up to the first that `stop` accepts; other messages are skipped.
    pub async fn events_until(&self, sub: &str, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let m = self.next_message().await;
            if m["params"]["subscriptionId"] != sub || m["method"] != "session/event" {
                continue;
            }
            let event = m["params"]["event"].clone();
            let done = stop(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// The next message if one arrives within `wait`.
    pub async fn maybe_message(&self, wait: Duration) -> Option<Value> {
        let mut inbox = self.inbox.lock().await;
        tokio::time::timeout(wait, inbox.recv()).await.ok().flatten()
    }

    /// The next response to a frame the engine could not tie to a request.
    pub async fn orphan_response(&self) -> Value {
        let mut orphans = self.orphans.lock().await;
        tokio::time::timeout(WAIT, orphans.recv()).await.expect("no error response").expect("connection closed")
    }

    pub async fn create_session(&self, cwd: &str) -> String {
        let r = self.ok("session/create", json!({ "cwd": cwd })).await;
        r["session"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn subscribe(&self, session: &str, after_seq: i64) -> String {
        let r = self.ok("session/subscribe", json!({ "sessionId": session, "afterSeq": after_seq })).await;
        r["subscriptionId"].as_str().unwrap().to_owned()
    }
}

pub fn into_result(message: Value) -> Result<Value, RpcError> {
    match message.get("error") {
        Some(e) => Err(RpcError {
            code: e["code"].as_i64().unwrap(),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
            data: e.get("data").cloned().unwrap_or(Value::Null),
        }),
        None => Ok(message["result"].clone()),
    }
}

/// Reads one message in whichever framing the server answers with.
async fn read_message<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Value> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(len) = trimmed.strip_prefix("Content-Length:") {
            let len: usize = len.trim().parse().ok()?;
            loop {
                line.clear();
                reader.read_line(&mut line).await.ok()?;
                if line.trim().is_empty() {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).await.ok()?;
            return serde_json::from_slice(&body).ok();
        }
        return Some(serde_json::from_str(trimmed).expect("the engine wrote something that is not JSON"));
    }
}

/// Collects `session/event` seqs of one subscription until `session/synced` or until `until_seq` is reached.
pub struct EventLog {
    pub seqs: Vec<u64>,
    pub synced_at: Option<u64>,
    pub ended: Option<Value>,
}

impl EventLog {
    pub async fn collect(client: &Client, subscription: &str, until_seq: u64) -> Self {
        let mut log = EventLog { seqs: Vec::new(), synced_at: None, ended: None };
        while log.seqs.last().copied().unwrap_or(0) < until_seq {
            let m = client.next_message().await;
            if m["params"]["subscriptionId"] != subscription {
                continue;
            }
            match m["method"].as_str().unwrap() {
                "session/event" => log.seqs.push(m["params"]["event"]["seq"].as_u64().unwrap()),
                "session/synced" => log.synced_at = Some(m["params"]["seq"].as_u64().unwrap()),
                "session/subscriptionEnded" => {
                    log.ended = Some(m["params"].clone());
                    break;
                }
                _ => {}
            }
        }
        log
    }
}
