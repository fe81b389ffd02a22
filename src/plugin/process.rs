//! One plugin and the task that keeps it running: start the process, serve its stdio as a connection of the
//! engine's own protocol, and start it again with backoff when it dies. Its state is one `watch` value, so hooks,
//! `plugin/list` and the tool set of a turn read it without waiting on the supervisor.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use keel_protocol::plugin::{Hook, PluginStatus};
use parking_lot::Mutex;
use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::tool::PluginTool;
use crate::rpc::{self, PeerRef};
use crate::sandbox::EnvPolicy;

/// Consecutive failed starts before a plugin stays failed until its config changes.
const MAX_FAILURES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as a good start: the failures before it are forgotten.
const STABLE: Duration = Duration::from_secs(60);
/// Lines of a plugin's stderr kept to explain why it died.
const STDERR_LINES: usize = 20;

/// A plugin as config declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// How long a hook may take.
    pub timeout: Duration,
}

/// What a plugin is now.
#[derive(Clone)]
pub struct Snapshot {
    pub status: PluginStatus,
    pub error: Option<String>,
    pub retrying: bool,
    /// The connection, while the process runs. Weak: the connection ends when the process closes its end, and
    /// its writer only once nobody holds it.
    pub peer: Option<Weak<rpc::Peer>>,
    pub hooks: Vec<Hook>,
    /// Kept while a crashed plugin restarts, so that the model's view does not flicker.
    pub tools: Vec<Arc<PluginTool>>,
    pub pid: Option<u32>,
    /// Starts after the first.
    pub restarts: u32,
}

pub struct Plugin {
    pub spec: Spec,
    state: watch::Sender<Snapshot>,
    stop: CancellationToken,
    changed: Arc<dyn Fn() + Send + Sync>,
}

impl Plugin {
    /// Starts the plugin's supervisor in the background; its connection is served by `server`.
    pub fn spawn(
        spec: Spec,
        server: Weak<rpc::Server>,
        env: EnvPolicy,
        cwd: PathBuf,
        changed: Arc<dyn Fn() + Send + Sync>,
    ) -> Arc<Self> {
        let (state, _) = watch::channel(Snapshot {
            status: PluginStatus::Starting,
            error: None,
            retrying: false,
            peer: None,
            hooks: Vec::new(),
            tools: Vec::new(),
            pid: None,
            restarts: 0,
        });
        let plugin = Arc::new(Self { spec, state, stop: CancellationToken::new(), changed });
        tokio::spawn(supervise(Arc::downgrade(&plugin), server, env, cwd, plugin.stop.clone()));
        plugin
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    /// True when this is the plugin whose process is on the other end of connection `peer_id`.
    pub fn is_on(&self, peer_id: u64) -> bool {
        self.connection().is_some_and(|p| p.id() == peer_id)
    }

    /// The connection, when the plugin runs and declared `hook`.
    pub fn hooked(&self, hook: Hook) -> Option<PeerRef> {
        let now = self.state.borrow();
        now.hooks.contains(&hook).then(|| now.peer.as_ref().and_then(Weak::upgrade)).flatten()
    }

    /// The connection, while the process runs.
    pub fn connection(&self) -> Option<PeerRef> {
        self.state.borrow().peer.as_ref().and_then(Weak::upgrade)
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn set(&self, f: impl FnOnce(&mut Snapshot)) {
        self.state.send_modify(f);
        (self.changed)();
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs until `stop`; between starts it holds only weak references, so a plugin nobody holds ends too.
async fn supervise(
    plugin: Weak<Plugin>,
    server: Weak<rpc::Server>,
    env: EnvPolicy,
    cwd: PathBuf,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    let mut first = true;
    loop {
        let (Some(this), Some(server)) = (plugin.upgrade(), server.upgrade()) else { return };
        this.set(|s| {
            s.status = PluginStatus::Starting;
            s.error = None;
            s.hooks.clear();
            if !first {
                s.restarts += 1;
            }
        });
        first = false;
        let began = Instant::now();
        let reason = match run(&this, &server, &env, &cwd, &stop).await {
            Ok(()) => return this.set(stopped),
            Err(reason) => reason,
        };
        drop(server);
        if began.elapsed() >= STABLE {
            failures = 0;
        }
        failures += 1;
        let retrying = failures < MAX_FAILURES;
        tracing::warn!(plugin = %this.spec.name, "plugin failed: {reason}");
        this.set(|s| {
            s.status = PluginStatus::Failed;
            s.error = Some(reason);
            s.retrying = retrying;
            s.peer = None;
            s.pid = None;
            s.hooks.clear();
        });
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (failures - 1).min(10)).min(MAX_BACKOFF);
        drop(this);
        if !retrying {
            return stop.cancelled().await;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => {
                if let Some(this) = plugin.upgrade() {
                    this.set(stopped);
                }
                return;
            }
        }
    }
}

fn stopped(s: &mut Snapshot) {
    s.status = PluginStatus::Stopped;
    s.peer = None;
    s.pid = None;
    s.hooks.clear();
}

/// One run of the process: `Ok` when it was stopped, the reason it ended otherwise.
async fn run(
    this: &Arc<Plugin>,
    server: &Arc<rpc::Server>,
    env: &EnvPolicy,
    cwd: &std::path::Path,
    stop: &CancellationToken,
) -> Result<(), String> {
    let (program, args) = this.spec.command.split_first().ok_or("its command is empty")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.child_environment(std::env::vars_os()))
        .envs(&this.spec.env)
        .current_dir(cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut wrapped = CommandWrap::from(cmd);
    // Its own process group: whatever it starts dies with it.
    wrapped.wrap(ProcessGroup::leader());
    let mut child = wrapped.spawn().map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let (Some(stdin), Some(stdout)) = (child.stdin().take(), child.stdout().take()) else {
        kill(&mut *child).await;
        return Err("its stdio could not be opened".into());
    };
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let reader =
        child.stderr().take().map(|err| tokio::spawn(keep_stderr(err, Arc::clone(&tail), this.spec.name.clone())));
    let pid = child.id();
    this.set(|s| s.pid = pid);
    let serving = server.serve_opened(stdout, stdin, |peer| this.set(|s| s.peer = Some(Arc::downgrade(&peer))));
    tokio::select! {
        _ = serving => {}
        () = stop.cancelled() => {
            kill(&mut *child).await;
            return Ok(());
        }
    }
    // No hook may pick the dead connection while the process is reaped.
    this.set(|s| {
        s.peer = None;
        s.hooks.clear();
    });
    // Its stdout closed: it is exiting, or it closed its end and lives on, which is no use either.
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => {
            kill(&mut *child).await;
            "it closed its stdout".into()
        }
    };
    if let Some(reader) = reader {
        let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
    }
    let lines: Vec<String> = tail.lock().iter().filter(|l| !l.trim().is_empty()).cloned().collect();
    let reason = format!("the process ended ({status})");
    Err(if lines.is_empty() { reason } else { format!("{reason}; stderr: {}", lines.join("\n")) })
}

async fn kill(child: &mut dyn ChildWrapper) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

async fn keep_stderr(err: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>, name: String) {
    let mut lines = tokio::io::BufReader::new(err).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = crate::secret::scrub(&line).into_owned();
        tracing::debug!(plugin = %name, "stderr: {line}");
        let mut tail = tail.lock();
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
