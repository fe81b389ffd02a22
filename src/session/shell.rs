//! `session/shell`: a command the user runs in a session's workspace (opencode's `!cmd`). It goes through the `bash`
//! tool (sandbox, timeout, output capture, process-group kill) under the session's permission rules, and its
//! `shell.completed` puts the command and its output into the transcript as a user message.

use std::sync::Arc;

use keel_protocol::catalogue::EventBody;
use keel_protocol::shell::{ShellCompletedData, ShellStartedData};
use serde_json::json;

use super::{Error, Services, event};
use crate::permission::{self, Verdict};
use crate::store::approvals;
use crate::tool::{ToolContext, ToolError, output};

/// What a command did, as recorded.
#[derive(Debug)]
pub struct ShellRun {
    pub shell_id: String,
    pub output: String,
    pub exit_code: Option<i32>,
    pub seq: u64,
}

/// Runs `command` for the user; see `keel_protocol::shell::SessionShell`.
pub async fn run(
    services: &Arc<Services>,
    session_id: &str,
    command: String,
    timeout_ms: Option<u64>,
) -> Result<ShellRun, Error> {
    let session = services.store.session(session_id)?.ok_or_else(|| Error::NotFound(session_id.to_owned()))?;
    let config = services.config(Some(&session.cwd));
    let tool = services
        .tools
        .get_for(session_id, "bash")
        .ok_or_else(|| Error::Unavailable("the bash tool is not available in this engine".into()))?;
    let shell_id = format!("sh_{}", uuid::Uuid::now_v7().simple());
    let cwd = std::path::PathBuf::from(&session.cwd);
    let ctx = ToolContext {
        session_id: session_id.to_owned(),
        call_id: shell_id.clone(),
        cwd: cwd.clone(),
        output_dir: services.output_dir(session_id),
        cancel: services.shutdown.child_token(),
        sandbox: Arc::new(crate::sandbox::Policy::for_agent(&config, &session.agent, &cwd, &services.paths)),
    };
    let input = tool.decode(json!({ "command": command, "timeout": timeout_ms }));
    let accesses =
        tool.access(&input, &ctx).map_err(|e| Error::InvalidParam { path: "command", reason: e.to_string() })?;
    let stored = services.store.query(|c| approvals::project_rules(c, &session.cwd))?;
    let agent_rules = config.agents.get(&session.agent).map(|a| a.permissions.clone()).unwrap_or_default();
    let rules = permission::rules_with_agent(&config.permissions, stored, &agent_rules);
    if let Verdict::Deny { action, resource } = permission::check(&rules, &accesses) {
        let reason = format!("refused by the permission rules: {action} {resource}");
        return Err(Error::InvalidParam { path: "command", reason });
    }
    let started = ShellStartedData { shell_id: shell_id.clone(), command: command.clone() };
    services.store.append(session_id, vec![event(EventBody::ShellStarted(started))?])?;
    // Run to the end on a task of its own: a cancelled request must not leave a started command unrecorded.
    let limits = super::runner::output_limits(&config);
    let services = Arc::clone(services);
    let session_id = session_id.to_owned();
    let task = tokio::spawn(async move {
        let dir = ctx.output_dir.clone();
        let result = tool.start(input, ctx).await;
        let (output, exit_code, error) = match result {
            Ok(out) => {
                let code = exit_status(&out.output);
                let (output, _) = output::fit(out.output, limits, &dir);
                (output, code, None)
            }
            Err(ToolError::Interrupted) => (String::new(), None, Some("interrupted".to_owned())),
            Err(e) => (String::new(), None, Some(e.to_string())),
        };
        let completed = ShellCompletedData { shell_id: shell_id.clone(), command, output, exit_code, error };
        let appended =
            services.store.append(&session_id, vec![event(EventBody::ShellCompleted(completed.clone()))?])?;
        let seq = appended.last().map_or(0, |e| e.seq);
        let output = match &completed.error {
            Some(error) => format!("{}[{error}]", completed.output),
            None => completed.output,
        };
        Ok::<_, Error>(ShellRun { shell_id, output, exit_code: completed.exit_code, seq })
    });
    task.await.map_err(|e| Error::Unavailable(format!("the command's task ended abnormally: {e}")))?
}

/// The `bash` tool reports a non-zero status as a last line `[exit status N]` (`a signal` when killed by one); none
/// means 0.
fn exit_status(output: &str) -> Option<i32> {
    match output.lines().last().and_then(|l| l.strip_prefix("[exit status ")?.strip_suffix(']')) {
        Some(code) => code.parse().ok(),
        None => Some(0),
    }
}
