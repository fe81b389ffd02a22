//! One MCP server and the task that keeps it running: connect, list its tools, follow `tools/list_changed`, and
//! restart it with backoff when it dies. Its state is one `watch` value, so readers (`mcp/list`, the tool set of a
//! turn, a call waiting for a restart) never wait on the supervisor.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::ClientHandler;
use rmcp::model::{ClientCapabilities, ClientInfo, Implementation, ProtocolVersion};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService, ServiceError, ServiceExt};
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::{StreamableHttpClientTransport, StreamableHttpClientTransportConfig};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::ServerInfo;
use super::config::{ServerSpec, Transport};
use super::tool::McpTool;
use crate::sandbox::EnvPolicy;

/// Consecutive failed starts before a server stays failed until `mcp/restart`.
const MAX_FAILURES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Lines of a stdio server's stderr kept to explain why it failed.
const STDERR_LINES: usize = 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Starting,
    Ready,
    /// Why, and whether another start is coming on its own.
    Failed {
        reason: String,
        retrying: bool,
    },
    Stopped,
}

/// What a server is now.
#[derive(Clone)]
pub struct Snapshot {
    pub status: Status,
    /// The last tool list; kept while a crashed server restarts, so the model's view does not flicker.
    pub tools: Vec<Arc<McpTool>>,
    /// Its prompts (slash commands), for servers that have them.
    pub prompts: Vec<rmcp::model::Prompt>,
    pub peer: Option<Peer<RoleClient>>,
    pub pid: Option<u32>,
    /// Starts after the first.
    pub restarts: u32,
}

pub struct Server {
    pub spec: ServerSpec,
    /// The session whose client passed this server (ACP `mcpServers`); `None` for config's servers.
    pub session: Option<String>,
    state: watch::Sender<Snapshot>,
    restart: Notify,
    stop: CancellationToken,
    env: EnvPolicy,
    cwd: std::path::PathBuf,
    changes: broadcast::Sender<ServerInfo>,
}

impl Server {
    /// Starts the server's supervisor in the background; the caller never waits for the server.
    pub fn spawn(
        spec: ServerSpec,
        session: Option<String>,
        env: EnvPolicy,
        cwd: std::path::PathBuf,
        changes: broadcast::Sender<ServerInfo>,
    ) -> Arc<Self> {
        let (state, _) = watch::channel(Snapshot {
            status: Status::Starting,
            tools: Vec::new(),
            prompts: Vec::new(),
            peer: None,
            pid: None,
            restarts: 0,
        });
        let server = Arc::new(Self {
            spec,
            session,
            state,
            restart: Notify::new(),
            stop: CancellationToken::new(),
            env,
            cwd,
            changes,
        });
        tokio::spawn(supervise(Arc::downgrade(&server), server.stop.clone()));
        server
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.state.subscribe()
    }

    /// Resolves when the server's first start has ended (ready or failed), at most its start-up time from now.
    pub async fn first_start(&self) {
        let mut state = self.subscribe();
        let done = state.wait_for(|s| s.restarts > 0 || s.status != Status::Starting);
        let _ = tokio::time::timeout(self.spec.startup_timeout, done).await;
    }

    /// Stops the running server (if any) and starts it again at once, also after it gave up.
    pub fn restart(&self) {
        self.restart.notify_one();
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn info(&self) -> ServerInfo {
        let now = self.snapshot();
        ServerInfo {
            name: self.spec.name.clone(),
            session_id: self.session.clone(),
            transport: self.spec.transport.kind(),
            status: now.status,
            tools: now.tools.iter().map(|t| crate::tool::Tool::name(&**t).to_owned()).collect(),
            pid: now.pid,
            restarts: now.restarts,
        }
    }

    fn set(&self, f: impl FnOnce(&mut Snapshot)) {
        self.state.send_modify(f);
        let _ = self.changes.send(self.info());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Tells the supervisor that the server's tool list changed.
struct Handler {
    list_changed: Arc<Notify>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientInfo {
        ClientInfo {
            meta: None,
            protocol_version: ProtocolVersion::default(),
            capabilities: ClientCapabilities::default(),
            client_info: Implementation {
                name: "keel".into(),
                title: None,
                version: env!("CARGO_PKG_VERSION").into(),
                description: None,
                icons: None,
                website_url: None,
            },
        }
    }

    fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) -> impl Future<Output = ()> + Send + '_ {
        self.list_changed.notify_one();
        std::future::ready(())
    }

    fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) -> impl Future<Output = ()> + Send + '_ {
        self.list_changed.notify_one();
        std::future::ready(())
    }
}

type Running = RunningService<RoleClient, Handler>;

/// Runs until `stop`, which the manager calls whenever it forgets a server; between starts it holds only a weak
/// reference, so a server nobody holds ends too.
async fn supervise(server: Weak<Server>, stop: CancellationToken) {
    let mut failures = 0u32;
    let mut first = true;
    loop {
        let Some(this) = server.upgrade() else { return };
        this.set(|s| {
            s.status = Status::Starting;
            if !first {
                s.restarts += 1;
            }
        });
        first = false;
        let list_changed = Arc::new(Notify::new());
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let mut reader = None;
        let started = tokio::select! {
            r = tokio::time::timeout(this.spec.startup_timeout, connect(&this, &list_changed, &stderr, &mut reader)) => r,
            () = stop.cancelled() => return this.set(|s| s.status = Status::Stopped),
        };
        let outcome = match started {
            Ok(Ok((running, pid))) => {
                failures = 0;
                follow(&this, running, pid, &list_changed, &stop).await
            }
            Ok(Err(e)) => Ended::Failed(e),
            Err(_) => {
                Ended::Failed(format!("no answer within {} ms of starting", this.spec.startup_timeout.as_millis()))
            }
        };
        let reason = match outcome {
            Ended::Stopped => return this.set(|s| s.status = Status::Stopped),
            Ended::Restart => {
                failures = 0;
                continue;
            }
            Ended::Failed(reason) => {
                // The last lines a dying process wrote may still be in the pipe.
                if let Some(reader) = reader.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
                }
                with_stderr(reason, &stderr)
            }
        };
        failures += 1;
        let retrying = failures < MAX_FAILURES;
        tracing::warn!(server = %this.spec.name, "MCP server failed: {reason}");
        this.set(|s| {
            s.status = Status::Failed { reason, retrying };
            s.peer = None;
            s.pid = None;
        });
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (failures - 1).min(10)).min(MAX_BACKOFF);
        let wait = async {
            if retrying {
                tokio::time::sleep(backoff).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = wait => {}
            () = this.restart.notified() => failures = 0,
            () = stop.cancelled() => return this.set(|s| s.status = Status::Stopped),
        }
    }
}

enum Ended {
    Stopped,
    Restart,
    Failed(String),
}

/// Runs a connected server until it dies, is restarted or stopped; refreshes its tools when they change.
async fn follow(
    this: &Arc<Server>,
    running: Running,
    pid: Option<u32>,
    list_changed: &Notify,
    stop: &CancellationToken,
) -> Ended {
    let peer = running.peer().clone();
    this.set(|s| {
        s.status = Status::Ready;
        s.peer = Some(peer.clone());
        s.pid = pid;
    });
    let mut cancel = Some(running.cancellation_token());
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let stop_now = |cancel: &mut Option<rmcp::service::RunningServiceCancellationToken>| {
        if let Some(token) = cancel.take() {
            token.cancel();
        }
    };
    loop {
        tokio::select! {
            _ = &mut waiting => {
                return Ended::Failed("the server closed its connection".into());
            }
            () = list_changed.notified() => {
                match tokio::time::timeout(this.spec.startup_timeout, peer.list_all_tools()).await {
                    Ok(Ok(tools)) => {
                        let tools = McpTool::from_listing(this, tools);
                        this.set(|s| s.tools = tools);
                    }
                    Ok(Err(e)) => tracing::warn!(server = %this.spec.name, "listing tools again failed: {e}"),
                    Err(_) => tracing::warn!(server = %this.spec.name, "listing tools again timed out"),
                }
                match tokio::time::timeout(this.spec.startup_timeout, list_prompts(&peer)).await {
                    Ok(Ok(prompts)) => this.set(|s| s.prompts = prompts),
                    Ok(Err(e)) => tracing::warn!(server = %this.spec.name, "listing prompts again failed: {e}"),
                    Err(_) => tracing::warn!(server = %this.spec.name, "listing prompts again timed out"),
                }
            }
            () = this.restart.notified() => {
                stop_now(&mut cancel);
                let _ = waiting.await;
                return Ended::Restart;
            }
            () = stop.cancelled() => {
                stop_now(&mut cancel);
                let _ = waiting.await;
                return Ended::Stopped;
            }
        }
    }
}

/// Starts the process or opens the HTTP session, runs MCP's handshake and lists the tools.
async fn connect(
    this: &Arc<Server>,
    list_changed: &Arc<Notify>,
    stderr: &Arc<Mutex<VecDeque<String>>>,
    reader: &mut Option<tokio::task::JoinHandle<()>>,
) -> Result<(Running, Option<u32>), String> {
    let handler = Handler { list_changed: Arc::clone(list_changed) };
    let (running, pid) = match &this.spec.transport {
        Transport::Stdio { command, args, env, cwd } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args);
            // The config's environment policy leaves credentials out; the server's own `env` puts back what it
            // needs. Not confined by Landlock: a server is the user's program, and it reads and writes where its
            // arguments say (a filesystem server's roots), not the session's workspace.
            cmd.env_clear();
            cmd.envs(this.env.child_environment(std::env::vars_os()));
            cmd.envs(env);
            cmd.current_dir(cwd.as_ref().map_or_else(|| this.cwd.clone(), |c| this.cwd.join(c)));
            let mut wrapped = process_wrap::tokio::CommandWrap::from(cmd);
            // Its own process group: `npx` and shell wrappers start grandchildren that must die with it.
            wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
            let (transport, err) = TokioChildProcess::builder(wrapped)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {command:?}: {e}"))?;
            let pid = transport.id();
            if let Some(err) = err {
                *reader = Some(tokio::spawn(keep_stderr(err, Arc::clone(stderr), this.spec.name.clone())));
            }
            let running = handler.serve(transport).await.map_err(|e| e.to_string())?;
            (running, pid)
        }
        Transport::Http { url, headers } => {
            let mut map = reqwest::header::HeaderMap::new();
            for (name, value) in headers {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("bad header name {name:?}"))?;
                let mut value = reqwest::header::HeaderValue::from_str(value)
                    .map_err(|_| format!("bad value for header {name}"))?;
                value.set_sensitive(true);
                map.insert(name, value);
            }
            let client = reqwest::Client::builder()
                .default_headers(map)
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
            let transport = StreamableHttpClientTransport::with_client(
                client,
                StreamableHttpClientTransportConfig::with_uri(url.as_str()),
            );
            (handler.serve(transport).await.map_err(|e| e.to_string())?, None)
        }
    };
    let tools = running.peer().list_all_tools().await.map_err(|e| format!("listing tools failed: {e}"))?;
    let tools = McpTool::from_listing(this, tools);
    let prompts = list_prompts(running.peer()).await.map_err(|e| format!("listing prompts failed: {e}"))?;
    this.set(|s| {
        s.tools = tools;
        s.prompts = prompts;
    });
    Ok((running, pid))
}

/// A server's prompts; none for a server that does not offer any.
async fn list_prompts(peer: &Peer<RoleClient>) -> Result<Vec<rmcp::model::Prompt>, ServiceError> {
    let offers = peer.peer_info().is_some_and(|info| info.capabilities.prompts.is_some());
    if !offers {
        return Ok(Vec::new());
    }
    peer.list_all_prompts().await
}

async fn keep_stderr(err: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>, name: String) {
    let mut lines = tokio::io::BufReader::new(err).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(server = %name, "stderr: {}", crate::secret::scrub(&line));
        let mut tail = tail.lock();
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// A failure with the server's last words, secrets scrubbed: `mcp/list` shows it.
fn with_stderr(reason: String, stderr: &Mutex<VecDeque<String>>) -> String {
    let tail: Vec<String> = stderr.lock().iter().filter(|l| !l.trim().is_empty()).cloned().collect();
    let text = if tail.is_empty() { reason } else { format!("{reason}; stderr: {}", tail.join("\n")) };
    crate::secret::scrub_owned(text)
}
