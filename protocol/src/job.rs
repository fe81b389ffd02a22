//! Background jobs: commands the model starts with `bash {background: true}` that outlive its turn. Their start
//! and end are durable events of the session; their output goes to a file of the session's output store; their end
//! is delivered into the session as input, which wakes it even when idle.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method;

/// `job.started` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStartedData {
    pub job_id: String,
    /// The tool call that started it.
    pub call_id: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The machine and the engine process that run it, so that an engine starting after a crash knows it is gone.
    pub host: String,
    pub owner_pid: i64,
    /// The job's process group.
    pub pid: i64,
}

/// `job.completed` (version 1): the command exited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCompletedData {
    pub job_id: String,
    /// `null` when a signal ended it.
    pub exit_code: Option<i32>,
    /// The end of its output; the whole is paged with `job/output`.
    pub output: String,
    pub truncated: bool,
}

/// `job.failed` (version 1): it could not run to its end (the engine running it stopped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFailedData {
    pub job_id: String,
    pub error: String,
}

/// `job.cancelled` (version 1): `job/cancel` killed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCancelledData {
    pub job_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub session_id: String,
    pub command: String,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobListParams {
    /// Only this session's jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Only running jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobListResult {
    /// Newest first.
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobOutputParams {
    pub job_id: String,
    /// The byte offset to read from; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Bytes to read, 1..=1048576, default 65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobOutputResult {
    pub text: String,
    /// Where the next page starts.
    pub next_offset: u64,
    /// Nothing more to read now (a running job may still write more).
    pub end: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobIdParams {
    pub job_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCancelResult {
    /// False when the job had already ended.
    pub cancelled: bool,
}

method!(JobList, "job/list", Option<JobListParams>, JobListResult);
method!(JobOutput, "job/output", JobOutputParams, JobOutputResult);
method!(
    /// Kills the job's process group; `job.cancelled` follows.
    JobCancel,
    "job/cancel",
    JobIdParams,
    JobCancelResult
);
