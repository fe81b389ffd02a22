//! `bash`: runs a command in its own process group, with a timeout and bounded capture. On timeout or interrupt
//! the whole group is killed, so nothing the command started keeps running.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, OnceLock, Weak};
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

pub struct Bash {
    background: BackgroundSlot,
}

impl Bash {
    pub fn new(background: BackgroundSlot) -> Self {
        Self { background }
    }
}

/// Runs commands that outlive their call (`bash {background: true}`) as jobs; the engine installs it.
pub trait Background: Send + Sync {
    /// Starts `command` in `dir` for the call in `ctx`; answers with the job's id.
    fn start(
        &self,
        ctx: &ToolContext,
        command: &str,
        description: Option<&str>,
        dir: &Path,
    ) -> Result<String, ToolError>;
}

/// Where the engine puts its `Background` once it is built.
pub type BackgroundSlot = Arc<OnceLock<Weak<dyn Background>>>;

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
    description: Option<String>,
    /// Run it as a background job: the call answers at once with the job's id, and the job's end (its exit
    /// status and the end of its output) comes back as a message when it finishes. For servers, watchers and long
    /// builds; the timeout does not apply.
    #[serde(default)]
    background: bool,
}

impl TypedTool for Bash {
    type Input = BashInput;

    fn name(&self) -> &'static str {
        "bash"
    }

    fn description(&self) -> &'static str {
        "Run a shell command in the workspace. Output over 1 MiB per stream is cut; the command is killed (with \
         everything it started) after its timeout, 2 minutes by default. With background: true it runs as a job \
         and its result arrives later as a message."
    }

    fn access(&self, input: Result<&Self::Input, &ToolError>, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        let analysis = bash::analyse(&input.command);
        let mut accesses = vec![Access { action: "bash", resources: analysis.commands }];
        let workdir = input.workdir.as_deref().unwrap_or(".");
        if let fs::Target::Outside(abs) = fs::locate(&ctx.cwd, workdir) {
            accesses.push(Access { action: "external_directory", resources: vec![abs.display().to_string()] });
        }
        // What the line writes or reads is checked like the file tools' own writes and reads, whatever the
        // rules say of the command that does it.
        let home = std::env::var("HOME").unwrap_or_default();
        let resolve = |path: &str| -> Option<String> {
            let path = match path.strip_prefix('~') {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{home}{rest}"),
                Some(_) => return None,
                None => path.to_owned(),
            };
            Some(std::path::Path::new(workdir).join(path).display().to_string())
        };
        let mut opaque = analysis.opaque;
        for (action, paths) in [("edit", &analysis.writes), ("read", &analysis.reads)] {
            for path in paths {
                match resolve(path) {
                    Some(path) => accesses.extend(super::file::path_access(action, &ctx.cwd, &path)),
                    None => opaque.push(path.clone()),
                }
            }
        }
        // What cannot be known before the command runs could be anywhere: it asks like a path outside.
        if !opaque.is_empty() {
            accesses.push(Access { action: "external_directory", resources: opaque });
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
            if input.background {
                let Some(jobs) = self.background.get().and_then(Weak::upgrade) else {
                    return Err(ToolError::Failed("background jobs are not available in this engine".into()));
                };
                let job_id = jobs.start(&ctx, &input.command, input.description.as_deref(), &dir)?;
                let output = format!(
                    "started background job {job_id}; its exit status and output will arrive as a message when it \
                     ends (job/output pages the whole output)"
                );
                return Ok(ToolOutput { output, truncated: false });
            }
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
    let armed = ctx.sandbox.apply(&mut cmd).map_err(|e| ToolError::Failed(e.to_string()))?;
    let mut child = cmd.spawn().map_err(|e| ToolError::Failed(format!("cannot start bash: {e}")))?;
    drop(armed);
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

/// Starts a background job's command in its own process group (confined like every command), its output and
/// errors going to `log`.
pub fn spawn_job(
    command: &str,
    dir: &Path,
    ctx: &ToolContext,
    log: std::fs::File,
) -> Result<(tokio::process::Child, ProcessGroup), ToolError> {
    let errors = log.try_clone().map_err(|e| ToolError::Failed(format!("cannot open the job's log: {e}")))?;
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c").arg(command).current_dir(dir).stdin(Stdio::null()).stdout(log).stderr(errors);
    cmd.process_group(0).kill_on_drop(true);
    let armed = ctx.sandbox.apply(&mut cmd).map_err(|e| ToolError::Failed(e.to_string()))?;
    let child = cmd.spawn().map_err(|e| ToolError::Failed(format!("cannot start bash: {e}")))?;
    drop(armed);
    let group = ProcessGroup(child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)));
    Ok((child, group))
}

/// The command's process group, killed when the tool is done with it, also when its future is dropped.
pub struct ProcessGroup(Option<rustix::process::Pid>);

impl ProcessGroup {
    pub fn kill(&self) {
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

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::{Effect, PermissionRule};
    use crate::permission::{self, Verdict};

    fn verdict(rules: &[PermissionRule], command: &str) -> &'static str {
        let ctx = ToolContext {
            session_id: "s".into(),
            call_id: "c".into(),
            cwd: "/work/ws".into(),
            output_dir: "/work/out".into(),
            cancel: CancellationToken::new(),
            sandbox: Default::default(),
        };
        let input = BashInput {
            command: command.to_owned(),
            timeout: None,
            workdir: None,
            description: None,
            background: false,
        };
        let accesses = Bash::new(BackgroundSlot::default()).access(Ok(&input), &ctx).unwrap();
        match permission::check(rules, &accesses) {
            Verdict::Allow => "allow",
            Verdict::Ask { .. } => "ask",
            Verdict::Deny { .. } => "deny",
        }
    }

    #[test]
    fn shell_verdicts() {
        let rule = |action: &str, pattern: &str, effect| PermissionRule {
            action: action.into(),
            pattern: pattern.into(),
            effect,
        };
        let defaults = permission::rules_for(&[], Vec::new());
        let readme = permission::rules_for(
            &[
                rule("bash", "cargo test *", Effect::Allow),
                rule("bash", "rm *", Effect::Deny),
                rule("edit", "*", Effect::Allow),
            ],
            Vec::new(),
        );
        let table = include_str!("../../tests/data/shell_verdicts.txt");
        let mut wrong = Vec::new();
        let mut checked = 0;
        for line in table.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (verdicts, command) = line.split_once(" | ").unwrap();
            let command = command.replace("\\n", "\n");
            let expected: Vec<&str> = verdicts.split_whitespace().collect();
            let got = [verdict(&defaults, &command), verdict(&readme, &command)];
            if expected != got {
                wrong.push(format!("{command:?}: expected {expected:?}, got {got:?}: {:?}", bash::analyse(&command)));
            }
            checked += 1;
        }
        assert!(checked >= 100, "only {checked} lines");
        assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));
    }
}
