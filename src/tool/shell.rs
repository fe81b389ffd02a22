//! `bash`: runs a command in its own process group, with a timeout and bounded capture. On timeout or interrupt
//! the whole group is killed, so nothing the command started keeps running.

use std::process::Stdio;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ToolContext, ToolError, ToolOutput, TypedTool, fs};
use crate::permission::{Access, bash};
use crate::provider::BoxFuture;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Captured per stream; the rest is read and dropped so the command never blocks on a full pipe.
const MAX_CAPTURE: usize = 1024 * 1024;
/// After the command exits, how long its descendants may keep the pipes open before the group is killed.
const PIPE_GRACE: Duration = Duration::from_millis(200);

pub struct Bash;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BashInput {
    /// The command line, run with `bash -c`.
    command: String,
    /// Milliseconds before the command is killed (default 120000, at most 600000).
    #[serde(default)]
    timeout: Option<u64>,
    /// The directory to run in, relative to the workspace (default: the workspace).
    #[serde(default)]
    workdir: Option<String>,
    /// Five to ten words saying what the command does.
    #[serde(default)]
    #[allow(dead_code)] // Asked of the model for the transcript's sake; running the command does not need it.
    description: Option<String>,
}

impl TypedTool for Bash {
    type Input = BashInput;

    fn name(&self) -> &'static str {
        "bash"
    }

    fn description(&self) -> &'static str {
        "Run a shell command in the workspace. Output over 1 MiB per stream is cut; the command is killed (with \
         everything it started) after its timeout, 2 minutes by default."
    }

    fn access(&self, input: Result<&Self::Input, &ToolError>, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        let mut accesses = vec![Access { action: "bash", resources: bash::simple_commands(&input.command) }];
        if let Some(dir) = &input.workdir
            && let fs::Target::Outside(abs) = fs::locate(&ctx.cwd, dir)
        {
            accesses.push(Access { action: "external_directory", resources: vec![abs.display().to_string()] });
        }
        Ok(accesses)
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let timeout = input.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_millis).min(MAX_TIMEOUT);
            let dir = match &input.workdir {
                Some(dir) => fs::locate(&ctx.cwd, dir).absolute(&ctx.cwd),
                None => ctx.cwd.clone(),
            };
            run(&input.command, &dir, timeout, &ctx).await
        })
    }
}

async fn run(
    command: &str,
    dir: &std::path::Path,
    timeout: Duration,
    ctx: &ToolContext,
) -> Result<ToolOutput, ToolError> {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c").arg(command).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0).kill_on_drop(true);
    // Provider keys live in the engine's environment; a command has no business reading them.
    for provider in ["openai", "anthropic", "openrouter", "groq", "deepseek"] {
        if let Some(var) = crate::provider::auth::env_var(provider) {
            cmd.env_remove(var);
        }
    }
    let mut child = cmd.spawn().map_err(|e| ToolError::Failed(format!("cannot start bash: {e}")))?;
    let group = ProcessGroup(child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)));
    let kill_group = || group.kill();
    let stdout = tokio::spawn(capture(child.stdout.take()));
    let stderr = tokio::spawn(capture(child.stderr.take()));
    let outcome = tokio::select! {
        status = child.wait() => Outcome::Exited(status.map_err(|e| ToolError::Failed(e.to_string()))?),
        _ = tokio::time::sleep(timeout) => Outcome::TimedOut,
        _ = ctx.cancel.cancelled() => Outcome::Cancelled,
    };
    if !matches!(outcome, Outcome::Exited(_)) {
        kill_group();
        let _ = child.wait().await;
    }
    // Background jobs the command left in its group may hold the pipes open: after a grace period they are killed,
    // which closes the pipes, and what was captured is kept.
    let captured = async { (stdout.await.unwrap_or_default(), stderr.await.unwrap_or_default()) };
    tokio::pin!(captured);
    let early = tokio::select! {
        both = &mut captured => Some(both),
        _ = tokio::time::sleep(PIPE_GRACE) => None,
    };
    kill_group();
    let ((out, out_cut), (err, err_cut)) = match early {
        Some(both) => both,
        None => tokio::time::timeout(PIPE_GRACE * 5, captured).await.unwrap_or_default(),
    };
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&err));
    }
    if out_cut || err_cut {
        text.push_str("\n[output over 1 MiB per stream was cut]");
    }
    match outcome {
        Outcome::Cancelled => Err(ToolError::Interrupted),
        Outcome::TimedOut => {
            Err(ToolError::Failed(format!("{text}\n[killed after the timeout of {} s]", timeout.as_secs())))
        }
        Outcome::Exited(status) => {
            if !status.success() {
                let code = status.code().map_or_else(|| "a signal".to_owned(), |c| c.to_string());
                text.push_str(&format!("\n[exit status {code}]"));
            }
            Ok(ToolOutput {
                output: if text.is_empty() { "(no output)".into() } else { text },
                truncated: out_cut || err_cut,
            })
        }
    }
}

/// The command's process group, killed when the tool is done with it, also when its future is dropped.
struct ProcessGroup(Option<rustix::process::Pid>);

impl ProcessGroup {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Outcome {
    Exited(std::process::ExitStatus),
    TimedOut,
    Cancelled,
}

async fn capture<R: AsyncRead + Unpin>(stream: Option<R>) -> (Vec<u8>, bool) {
    let Some(mut stream) = stream else { return (Vec::new(), false) };
    let mut kept = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut cut = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, cut),
            Ok(n) => {
                let room = MAX_CAPTURE.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
}
