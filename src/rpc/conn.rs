//! One connection: reads frames, classifies them, runs requests concurrently through the method table, and writes
//! every outgoing frame through one ordered queue.
//!
//! Requests ordered by the same key (`Ordering`, declared by the method table) run in arrival order; all others
//! run concurrently.
//! An in-flight request is registered before its task starts, and whoever removes it from the table (the task on
//! completion, or `$/cancelRequest`) is the one that answers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jsonrpsee::core::server::{MethodCallback, Methods};
use jsonrpsee::types::{Id, Params};
use jsonrpsee::{ConnectionId, Extensions};
use keel_protocol::error as code;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::framing::{Frame, FrameReader, Framing, MAX_FRAME, MAX_FRAME_BEFORE_INIT, write_frame};
use super::message::{self, Incoming, Invalid};
use super::ordering::RequestOrder;
use super::peer::{CancelNotice, OUTBOUND_FRAMES, Peer, PeerError, PeerRef};

/// How long requests still running when the client goes away may take to finish their work.
const DRAIN_ON_CLOSE: Duration = Duration::from_secs(5);

/// What every connection of one engine shares.
pub struct Server {
    methods: Methods,
    next_connection: AtomicU64,
    /// The token that `initialize` must carry, for listeners reachable beyond loopback.
    required_token: Option<String>,
    max_connections: usize,
    cancel_notice: CancelNotice,
    ordering: RequestOrder,
}

/// Connections one listener serves at once unless told otherwise; more are closed as they arrive.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

type Hook = Box<dyn FnOnce() + Send>;

/// Running requests by id: their generation and their cancel switch.
type Inflight = Arc<Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>>;

/// Per-request context handed to method handlers through jsonrpsee's `Extensions`.
#[derive(Clone)]
pub struct Call {
    pub peer: PeerRef,
    pub required_token: Option<Arc<str>>,
    after_response: Arc<Mutex<Vec<Hook>>>,
    /// Dropped to let the connection's next request with the same ordering key start.
    order: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl Call {
    /// Lets later requests with the same ordering key run while this one waits (long polls). Call it once the
    /// request's ordered part, the reads and writes that must follow earlier requests, is done.
    pub fn release_order(&self) {
        self.order.lock().take();
    }

    /// Runs `f` once this request's response is queued, so that anything `f` sends follows the response.
    pub fn after_response(&self, f: impl FnOnce() + Send + 'static) {
        self.after_response.lock().push(Box::new(f));
    }
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client closed its end.
    Closed,
    /// The client sent `exit`; the code is 0 after `shutdown`, 1 otherwise.
    Exit(i32),
}

impl Server {
    pub fn new(methods: impl Into<Methods>, required_token: Option<String>) -> Self {
        Self {
            methods: methods.into(),
            next_connection: AtomicU64::new(1),
            required_token,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            cancel_notice: CancelNotice::Lsp,
            ordering: RequestOrder::default(),
        }
    }

    /// Which requests wait for which; without it, every request runs concurrently.
    pub fn with_ordering(mut self, ordering: RequestOrder) -> Self {
        self.ordering = ordering;
        self
    }

    /// Withdrawn server→client requests are announced the way this protocol does it.
    pub fn with_cancel_notice(mut self, cancel_notice: CancelNotice) -> Self {
        self.cancel_notice = cancel_notice;
        self
    }

    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The token clients must present, when the listener is reachable beyond loopback.
    pub fn required_token(&self) -> Option<&str> {
        self.required_token.as_deref()
    }

    pub async fn serve<R, W>(self: &Arc<Self>, reader: R, writer: W) -> Ended
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let token = self.required_token.as_deref().map(Arc::from);
        self.serve_connection(reader, writer, token, |_| {}).await
    }

    /// Serves a connection whose client already proved the token (a WebSocket upgrade carries it), so `initialize`
    /// does not ask again.
    pub async fn serve_authenticated<R, W>(self: &Arc<Self>, reader: R, writer: W) -> Ended
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_connection(reader, writer, None, |_| {}).await
    }

    /// Serves a connection the engine opened itself (a plugin's stdio): trusted like `serve_authenticated`, and
    /// `opened` gets the connection's peer before its first frame, so the engine can send it requests.
    pub async fn serve_opened<R, W>(
        self: &Arc<Self>,
        reader: R,
        writer: W,
        opened: impl FnOnce(PeerRef) + Send,
    ) -> Ended
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_connection(reader, writer, None, opened).await
    }

    async fn serve_connection<R, W>(
        self: &Arc<Self>,
        reader: R,
        writer: W,
        required_token: Option<Arc<str>>,
        opened: impl FnOnce(PeerRef) + Send,
    ) -> Ended
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
        let peer = Arc::new(Peer::with_cancel_notice(id, tx, self.cancel_notice));
        opened(Arc::clone(&peer));
        let mut frames = FrameReader::strict(BufReader::new(reader), MAX_FRAME_BEFORE_INIT);
        let mut relaxed = false;
        let mut connection = Connection {
            server: Arc::clone(self),
            peer: Arc::clone(&peer),
            inflight: Arc::new(Mutex::new(HashMap::new())),
            generation: 0,
            order: HashMap::new(),
            required_token,
            large_frame: false,
        };
        let mut writer_task = None;
        let mut writer_input = Some((rx, writer));
        let ended = loop {
            let frame = match frames.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break Ended::Closed,
                Err(e) => {
                    tracing::error!(connection = id, "read failed: {e}");
                    break Ended::Closed;
                }
            };
            if let (Some(framing), Some((rx, writer))) = (frames.framing(), writer_input.take()) {
                let progress = peer.progress();
                writer_task = Some(tokio::spawn(write_loop(rx, Counted { inner: writer, progress }, framing)));
            }
            if !relaxed && let Frame::Oversized(n) = frame {
                tracing::info!(connection = id, "closed: a frame of {n} bytes before `initialize`");
                let reason = format!("frame of {n} bytes before `initialize` (limit {MAX_FRAME_BEFORE_INIT}); closing");
                connection.reply(message::error(&Value::Null, code::INVALID_REQUEST, &reason, None)).await;
                break Ended::Closed;
            }
            connection.large_frame = matches!(&frame, Frame::Message(bytes) if bytes.len() > super::memory::LARGE);
            if let Some(ended) = connection.handle(frame).await {
                break ended;
            }
            if !relaxed && peer.lifecycle().initialized {
                frames.relax(MAX_FRAME);
                relaxed = true;
            }
        };
        peer.fail_pending();
        connection.drain().await;
        if relaxed {
            // A partial frame may have grown its buffer up to the frame limit before the client went away.
            super::memory::release();
        }
        peer.stop_tasks();
        drop(connection);
        drop(peer);
        if let Some(task) = writer_task {
            // Ends once every handle on the queue is gone; tasks that outlive the connection only hold it briefly.
            let _ = tokio::time::timeout(DRAIN_ON_CLOSE, task).await;
        }
        ended
    }
}

struct Connection {
    server: Arc<Server>,
    peer: PeerRef,
    /// Requests running, by id: a generation (ids may be reused once answered) and the cancel switch.
    inflight: Inflight,
    generation: u64,
    /// The completion signal of the last request for each ordering key, which the next one waits for.
    order: HashMap<String, oneshot::Receiver<()>>,
    required_token: Option<Arc<str>>,
    /// Whether the frame being handled was large: its request gives the memory it took back once answered.
    large_frame: bool,
}

impl Connection {
    async fn handle(&mut self, frame: Frame) -> Option<Ended> {
        let bytes = match frame {
            Frame::Message(bytes) => bytes,
            Frame::Oversized(n) => {
                let reason = format!("frame of {n} bytes exceeds the limit of {MAX_FRAME} bytes; skipped");
                self.reply(message::error(&Value::Null, code::INVALID_REQUEST, &reason, None)).await;
                return None;
            }
            Frame::BadHeader(reason) => {
                self.reply(message::error(
                    &Value::Null,
                    code::PARSE_ERROR,
                    &format!("bad frame header: {reason}"),
                    None,
                ))
                .await;
                return None;
            }
        };
        let incoming = message::classify(&bytes);
        // A large request gives its memory back once answered, which only works if the frame is gone by then.
        drop(bytes);
        match incoming {
            Err(Invalid::Parse(reason)) => {
                self.reply(message::error(&Value::Null, code::PARSE_ERROR, &format!("parse error: {reason}"), None))
                    .await;
            }
            Err(Invalid::Request { id, reason }) => {
                self.reply(message::error(&id, code::INVALID_REQUEST, reason, None)).await;
            }
            Ok(Incoming::Request { id, method, params }) => self.request(id, method, params).await,
            Ok(Incoming::Notification { method, params }) => {
                return self.notification(&method, params).await;
            }
            Ok(Incoming::Response { id, result }) => {
                let result = result.map_err(|(code, message)| PeerError::Remote { code, message });
                if !id.as_str().is_some_and(|id| self.peer.complete(id, result)) {
                    tracing::debug!("response to unknown request {id}");
                }
            }
        }
        None
    }

    async fn reply(&self, frame: Vec<u8>) {
        let _ = self.peer.send_frame(frame).await;
    }

    async fn request(&mut self, id: Value, method: String, params: Option<Value>) {
        let lifecycle = self.peer.lifecycle();
        if lifecycle.shut_down {
            let reason = "the server is shut down; only `exit` is accepted";
            return self.reply(message::error(&id, code::INVALID_REQUEST, reason, None)).await;
        }
        if !lifecycle.initialized && method != "initialize" {
            let reason = "the connection is not initialized; send `initialize` first";
            return self.reply(message::error(&id, code::NOT_INITIALIZED, reason, None)).await;
        }
        let key = id.to_string();
        let (cancel_tx, cancel_rx) = oneshot::channel();
        if self.inflight.lock().contains_key(&key) {
            let reason = "a request with this id is still running";
            return self.reply(message::error(&id, code::INVALID_REQUEST, reason, None)).await;
        }
        self.generation += 1;
        let generation = self.generation;
        self.inflight.lock().insert(key.clone(), (generation, cancel_tx));

        let (done_tx, done_rx) = oneshot::channel::<()>();
        let previous = match self.server.ordering.key(&method, params.as_ref()) {
            Some(key) => self.order.insert(key, done_rx),
            None => None,
        };
        let methods = self.server.methods.clone();
        let peer = Arc::clone(&self.peer);
        let inflight = Arc::clone(&self.inflight);
        let required_token = self.required_token.clone();
        // Lifecycle requests change how every later frame is treated, so the next frame waits for them.
        let lifecycle_change = method == "initialize" || method == "shutdown";
        let large = self.large_frame;
        let task = tokio::spawn(async move {
            let mut cancel_rx = cancel_rx;
            if let Some(previous) = previous {
                // A request cancelled while it waits for its turn never runs.
                tokio::select! {
                    biased;
                    _ = &mut cancel_rx => return,
                    _ = previous => {}
                }
            }
            let call = Call {
                peer: Arc::clone(&peer),
                required_token,
                after_response: Arc::default(),
                order: Arc::new(Mutex::new(Some(done_tx))),
            };
            tokio::select! {
                biased;
                _ = &mut cancel_rx => {}
                frame = dispatch(&methods, &id, &method, params, call.clone()) => {
                    let answer = {
                        let mut inflight = inflight.lock();
                        let ours = inflight.get(&key).is_some_and(|(g, _)| *g == generation);
                        ours && inflight.remove(&key).is_some()
                    };
                    if answer && peer.send_frame(frame).await.is_ok() {
                        let hooks = std::mem::take(&mut *call.after_response.lock());
                        hooks.into_iter().for_each(|hook| hook());
                    }
                }
            }
            call.release_order();
            if large {
                super::memory::release();
            }
        });
        if lifecycle_change {
            let _ = task.await;
        }
    }

    async fn notification(&mut self, method: &str, params: Option<Value>) -> Option<Ended> {
        match method {
            "exit" => {
                return Some(Ended::Exit(if self.peer.lifecycle().shut_down { 0 } else { 1 }));
            }
            // LSP's name and ACP's, whose parameter is `requestId`.
            "$/cancelRequest" | "$/cancel_request" => {
                let id = params.as_ref().and_then(|p| p.get("id").or_else(|| p.get("requestId")))?;
                let cancelled = self.inflight.lock().remove(&id.to_string());
                if let Some((_, cancel)) = cancelled {
                    let _ = cancel.send(());
                    self.reply(message::error(id, code::REQUEST_CANCELLED, "request cancelled", None)).await;
                }
            }
            "initialized" => {}
            // A notification the method table knows runs like a request whose answer is dropped.
            other if self.server.methods.method_with_name(other).is_some() && self.peer.lifecycle().initialized => {
                let methods = self.server.methods.clone();
                let call = Call {
                    peer: Arc::clone(&self.peer),
                    required_token: self.required_token.clone(),
                    after_response: Arc::default(),
                    order: Arc::new(Mutex::new(None)),
                };
                let method = other.to_owned();
                tokio::spawn(async move {
                    let _ = dispatch(&methods, &Value::Null, &method, params, call).await;
                });
            }
            other => tracing::debug!("ignored notification {other}"),
        }
        None
    }

    /// Gives requests that are still running a moment to finish their durable work.
    async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + DRAIN_ON_CLOSE;
        while !self.inflight.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs one request through the method table and returns the response frame.
async fn dispatch(methods: &Methods, id: &Value, method: &str, params: Option<Value>, call: Call) -> Vec<u8> {
    let Some((_, callback)) = methods.method_with_name(method) else {
        return message::error(id, code::METHOD_NOT_FOUND, &format!("method not found: {method}"), None);
    };
    // jsonrpsee ids are unsigned integers or strings; anything else is echoed back by patching the response.
    let (rpc_id, patch_id) = match id {
        Value::Number(n) if n.is_u64() => (Id::Number(n.as_u64().unwrap_or_default()), false),
        Value::String(s) => (Id::Str(Cow::Owned(s.clone())), false),
        Value::Null => (Id::Null, false),
        _ => (Id::Null, true),
    };
    let params = params.filter(|p| !p.is_null()).map(|p| p.to_string());
    let params = Params::new(params.as_deref()).into_owned();
    let mut extensions = Extensions::new();
    extensions.insert(call.clone());
    let conn = ConnectionId(usize::try_from(call.peer.id()).unwrap_or_default());
    let max = MAX_FRAME * 4;
    let response = match callback {
        MethodCallback::Async(cb) => cb(rpc_id, params, conn, max, extensions).await,
        MethodCallback::Sync(cb) => cb(rpc_id, params, max, extensions),
        _ => {
            return message::error(id, code::METHOD_NOT_FOUND, &format!("method not found: {method}"), None);
        }
    };
    let json = response.into_json();
    if !patch_id {
        return json.get().as_bytes().to_vec();
    }
    match serde_json::from_str::<Value>(json.get()) {
        Ok(mut value) => {
            value["id"] = id.clone();
            serde_json::to_vec(&value).unwrap_or_default()
        }
        Err(_) => json.get().as_bytes().to_vec(),
    }
}

/// The writer, counting the bytes the client accepts: that count is how backpressure tells a slow reader from
/// one that stopped.
struct Counted<W> {
    inner: W,
    progress: Arc<AtomicU64>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes queued frames in order, flushing whenever the queue runs dry.
async fn write_loop<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Vec<u8>>, writer: W, framing: Framing) {
    use tokio::io::AsyncWriteExt;
    let mut out = BufWriter::new(writer);
    while let Some(frame) = rx.recv().await {
        if write_frame(&mut out, framing, &frame).await.is_err() {
            break;
        }
        while let Ok(frame) = rx.try_recv() {
            if write_frame(&mut out, framing, &frame).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            break;
        }
    }
    // The client is gone or every sender dropped; closing `rx` tells the remaining senders.
    rx.close();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonrpsee::RpcModule;
    use jsonrpsee::types::ErrorObjectOwned;
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
    use tokio::sync::mpsc;

    use super::*;

    /// A table with one method that asks the client a question and returns the outcome as text.
    fn asking_server(timeout: Duration, outcomes: mpsc::UnboundedSender<String>) -> Arc<Server> {
        let mut module = RpcModule::new(());
        module
            .register_async_method("test/ask", move |_, _, ext| {
                let outcomes = outcomes.clone();
                async move {
                    let call = ext.get::<Call>().cloned().ok_or(ErrorObjectOwned::owned(1, "no call", None::<()>))?;
                    let outcome = match call.peer.request("test/question", &json!({ "q": 1 }), timeout).await {
                        Ok(answer) => format!("answer {answer}"),
                        Err(e) => format!("error {e}"),
                    };
                    let _ = outcomes.send(outcome.clone());
                    Ok::<_, ErrorObjectOwned>(outcome)
                }
            })
            .unwrap();
        module
            .register_async_method("initialize", |_, _, ext| async move {
                let call = ext.get::<Call>().cloned().unwrap();
                call.peer.update_lifecycle(|l| l.initialized = true);
                Ok::<_, ErrorObjectOwned>(())
            })
            .unwrap();
        Arc::new(Server::new(module, None))
    }

    struct TestClient {
        lines: tokio::io::Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
        writer: tokio::io::WriteHalf<DuplexStream>,
    }

    impl TestClient {
        async fn send(&mut self, v: Value) {
            self.writer.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        }
        async fn next(&mut self) -> Value {
            let line = tokio::time::timeout(Duration::from_secs(5), self.lines.next_line()).await.unwrap().unwrap();
            serde_json::from_str(&line.unwrap()).unwrap()
        }
    }

    async fn start(server: Arc<Server>) -> (TestClient, tokio::task::JoinHandle<Ended>) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(theirs);
        let task = tokio::spawn(async move { server.serve(r, w).await });
        let (r, writer) = tokio::io::split(ours);
        let mut client = TestClient { lines: BufReader::new(r).lines(), writer };
        client.send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize" })).await;
        assert_eq!(client.next().await["id"], 1);
        client.send(json!({ "jsonrpc": "2.0", "id": 2, "method": "test/ask" })).await;
        (client, task)
    }

    #[tokio::test]
    async fn server_to_client_request_is_answered() {
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let (mut client, _) = start(asking_server(Duration::from_secs(5), tx)).await;
        let question = client.next().await;
        assert_eq!(question["method"], "test/question");
        assert_eq!(question["id"], "s1");
        client.send(json!({ "jsonrpc": "2.0", "id": "s1", "result": { "yes": true } })).await;
        assert_eq!(outcomes.recv().await.unwrap(), r#"answer {"yes":true}"#);
        assert_eq!(client.next().await["result"], r#"answer {"yes":true}"#);
    }

    #[tokio::test]
    async fn server_to_client_request_times_out_and_is_cancelled() {
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let (mut client, _) = start(asking_server(Duration::from_millis(50), tx)).await;
        assert_eq!(client.next().await["method"], "test/question");
        let cancel = client.next().await;
        assert_eq!(cancel["method"], "$/cancelRequest");
        assert_eq!(cancel["params"]["id"], "s1");
        assert!(outcomes.recv().await.unwrap().starts_with("error the client did not answer"));
        // A late answer is ignored and the connection keeps working.
        client.send(json!({ "jsonrpc": "2.0", "id": "s1", "result": null })).await;
        assert!(client.next().await["result"].as_str().unwrap().starts_with("error"));
    }

    #[tokio::test]
    async fn pending_server_requests_fail_when_the_client_disconnects() {
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let (mut client, task) = start(asking_server(Duration::from_secs(30), tx)).await;
        assert_eq!(client.next().await["method"], "test/question");
        drop(client);
        assert_eq!(outcomes.recv().await.unwrap(), "error the connection is closed");
        assert_eq!(tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap(), Ended::Closed);
    }
}
