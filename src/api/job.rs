//! `job/list`, `job/output` and `job/cancel`.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use keel_protocol::job::{
    Job, JobCancelResult, JobIdParams, JobListParams, JobListResult, JobOutputParams, JobOutputResult, JobState,
};

use super::ApiError;
use crate::engine::Engine;
use crate::engine::jobs::Jobs;
use crate::rpc::Call;
use crate::store::jobs::JobRow;

const DEFAULT_PAGE: u64 = 64 * 1024;
const MAX_PAGE: u64 = 1024 * 1024;

pub(super) fn to_wire(row: JobRow) -> Job {
    Job {
        job_id: row.job_id,
        session_id: row.session_id,
        command: row.command,
        state: row.state,
        exit_code: row.exit_code,
        started_at: row.started_at,
        ended_at: row.ended_at,
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn unknown(job_id: &str) -> ApiError {
    ApiError::invalid("jobId", format!("no job {job_id:?}"))
}

pub async fn list(engine: Arc<Engine>, p: Option<JobListParams>, _: Call) -> Result<JobListResult, ApiError> {
    let p = p.unwrap_or_default();
    let rows = engine.jobs(p.session_id.as_deref(), p.running.unwrap_or(false)).map_err(internal)?;
    Ok(JobListResult { jobs: rows.into_iter().map(to_wire).collect() })
}

pub async fn output(engine: Arc<Engine>, p: JobOutputParams, _: Call) -> Result<JobOutputResult, ApiError> {
    engine.job(&p.job_id).map_err(internal)?.ok_or_else(|| unknown(&p.job_id))?;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1..={MAX_PAGE}")));
    }
    let offset = p.offset.unwrap_or(0);
    let mut file = std::fs::File::open(Jobs::log_path(&engine.paths().data_dir, &p.job_id)).map_err(internal)?;
    let size = file.metadata().map_err(internal)?.len();
    file.seek(SeekFrom::Start(offset.min(size))).map_err(internal)?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).map_err(internal)?;
    // A page ends on a character boundary; the cut character starts the next page.
    let valid = match std::str::from_utf8(&bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
    let next_offset = offset.min(size) + valid as u64;
    Ok(JobOutputResult { text, next_offset, end: next_offset >= size })
}

pub async fn cancel(engine: Arc<Engine>, p: JobIdParams, _: Call) -> Result<JobCancelResult, ApiError> {
    let job = engine.job(&p.job_id).map_err(internal)?.ok_or_else(|| unknown(&p.job_id))?;
    if job.state != JobState::Running {
        return Ok(JobCancelResult { cancelled: false });
    }
    if !engine.cancel_job(&p.job_id) {
        return Err(ApiError::Unavailable(format!("job {} runs in another engine process", p.job_id)));
    }
    Ok(JobCancelResult { cancelled: true })
}
