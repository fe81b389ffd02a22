//! Background jobs: `bash {background: true}` starts a command that outlives its call. Its start and end are events
//! of the session (`job.started`, then `job.completed`, `job.failed` or `job.cancelled`); its output goes to a log
//! under the data folder (`jobs/<id>.log`); and its end is admitted into the session as a queued prompt, which
//! wakes the session even when it is idle, so the model sees the result without a person asking.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Weak;

use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery, InputKind};
use keel_protocol::job::{JobCancelledData, JobCompletedData, JobFailedData, JobStartedData};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Engine, tool_failed as failed};
use crate::session::inbox::NewInput;
use crate::tool::shell::{Background, spawn_job};
use crate::tool::{ToolContext, ToolError};

/// The end of a job's output that its end event and the model's message carry.
const TAIL_BYTES: usize = 8 * 1024;

pub struct Jobs {
    engine: Weak<Engine>,
    /// This process's running jobs: their cancel switches.
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Jobs {
    pub fn new(engine: Weak<Engine>) -> Self {
        Self { engine, running: Mutex::default() }
    }

    /// Kills a running job of this process; false when it is not running here.
    pub fn cancel(&self, job_id: &str) -> bool {
        self.running.lock().get(job_id).map(CancellationToken::cancel).is_some()
    }

    pub fn log_path(data_dir: &Path, job_id: &str) -> PathBuf {
        data_dir.join("jobs").join(format!("{job_id}.log"))
    }

    /// Records a job's start and makes it cancellable with `job/cancel`; the switch is what the job watches.
    pub(super) fn begin(
        &self,
        engine: &Engine,
        session_id: &str,
        started: JobStartedData,
    ) -> Result<CancellationToken, ToolError> {
        let job_id = started.job_id.clone();
        engine.record_for_tool(session_id, EventBody::JobStarted(started))?;
        let cancel = CancellationToken::new();
        self.running.lock().insert(job_id, cancel.clone());
        Ok(cancel)
    }

    /// Records a job's end (`body`) and delivers `text` into its session as a queued prompt, which wakes it.
    pub(super) fn end(&self, engine: &Engine, session_id: &str, job_id: &str, body: EventBody, text: String) {
        self.running.lock().remove(job_id);
        if let Err(e) = engine.record_for_tool(session_id, body) {
            tracing::error!(session = %session_id, "recording the end of job {job_id} failed: {e}");
            return;
        }
        let input = NewInput {
            input_id: Some(format!("{job_id}-end")),
            delivery: Delivery::Queue,
            input: vec![ContentPart::Text { text }],
            agent: None,
            model: None,
            kind: InputKind::Prompt,
        };
        if let Err(e) = engine.admit(session_id, input) {
            tracing::error!(session = %session_id, "delivering the end of job {job_id} failed: {e}");
        }
    }
}

/// A new job's id.
pub(super) fn job_id() -> String {
    format!("job_{}", uuid::Uuid::now_v7().simple())
}

impl Background for Jobs {
    fn start(
        &self,
        ctx: &ToolContext,
        command: &str,
        description: Option<&str>,
        dir: &Path,
    ) -> Result<String, ToolError> {
        let engine = self.engine.upgrade().ok_or_else(|| failed("the engine is stopping"))?;
        let job_id = job_id();
        let log_path = Self::log_path(&engine.paths().data_dir, &job_id);
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed(format!("cannot create the jobs folder: {e}")))?;
        }
        let log = std::fs::File::create(&log_path).map_err(|e| failed(format!("cannot create the job's log: {e}")))?;
        let (mut child, group) = spawn_job(command, dir, ctx, log)?;
        let started = JobStartedData {
            job_id: job_id.clone(),
            call_id: ctx.call_id.clone(),
            command: command.to_owned(),
            description: description.map(str::to_owned),
            host: crate::store::lease::host(),
            owner_pid: i64::from(std::process::id()),
            pid: child.id().map_or(0, i64::from),
        };
        let session_id = ctx.session_id.clone();
        let cancel = self.begin(&engine, &session_id, started)?;
        let jobs = self.engine.clone();
        let (id, command) = (job_id.clone(), command.to_owned());
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => Some(status),
                () = cancel.cancelled() => None,
            };
            // What the command left running in its group goes with it.
            group.kill();
            let _ = child.wait().await;
            let Some(engine) = jobs.upgrade() else { return };
            let (tail, truncated) = tail(&log_path);
            let (body, summary) = match status {
                Some(Ok(status)) => {
                    let code = status.code();
                    let said = code.map_or_else(|| "was ended by a signal".to_owned(), |c| format!("exited with {c}"));
                    let data =
                        JobCompletedData { job_id: id.clone(), exit_code: code, output: tail.clone(), truncated };
                    (EventBody::JobCompleted(data), said)
                }
                Some(Err(e)) => {
                    let error = format!("waiting for the job failed: {e}");
                    (EventBody::JobFailed(JobFailedData { job_id: id.clone(), error: error.clone() }), error)
                }
                None => (EventBody::JobCancelled(JobCancelledData { job_id: id.clone() }), "was cancelled".into()),
            };
            let cut = if truncated { "[… earlier output in job/output …]\n" } else { "" };
            let text = format!("Background job {id} (`{command}`) {summary}. Its output ends with:\n{cut}{tail}");
            engine.jobs.end(&engine, &session_id, &id, body, text);
        });
        Ok(job_id)
    }
}

/// The last `TAIL_BYTES` of a log, from a line start when one is near, and whether anything came before.
fn tail(path: &Path) -> (String, bool) {
    let bytes = std::fs::read(path).unwrap_or_default();
    if bytes.len() <= TAIL_BYTES {
        return (String::from_utf8_lossy(&bytes).into_owned(), false);
    }
    let start = bytes.len() - TAIL_BYTES;
    let start = bytes[start..].iter().position(|&b| b == b'\n').map_or(start, |i| start + i + 1);
    (String::from_utf8_lossy(&bytes[start..]).into_owned(), true)
}

/// Jobs a stopped engine of this host left running: their process groups are killed and they are recorded as
/// failed (interrupted), so no session shows a job running forever.
pub fn sweep(engine: &Engine) {
    let orphaned = match engine.services.store.query(crate::store::jobs::orphaned) {
        Ok(orphaned) => orphaned,
        Err(e) => {
            tracing::error!("looking for interrupted jobs failed: {e}");
            return;
        }
    };
    for job in orphaned {
        if let Some(pid) = i32::try_from(job.pid).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let error = "interrupted: the engine that ran it stopped".to_owned();
        let body = EventBody::JobFailed(JobFailedData { job_id: job.job_id.clone(), error });
        if let Err(e) = engine.record_for_tool(&job.session_id, body) {
            tracing::error!(session = %job.session_id, "recording interrupted job {}: {e}", job.job_id);
        }
    }
}
