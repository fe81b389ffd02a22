-- Background jobs, projected from job.started and their end events.
CREATE TABLE jobs (
    job_id TEXT NOT NULL,
    -- A fork copies its source's jobs; the process belongs to the source.
    session_id TEXT NOT NULL,
    command TEXT NOT NULL,
    -- 'running' | 'completed' | 'failed' | 'cancelled'
    state TEXT NOT NULL,
    host TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    -- The job's process group.
    pid INTEGER NOT NULL,
    exit_code INTEGER,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    PRIMARY KEY (session_id, job_id)
) STRICT;
CREATE INDEX jobs_running ON jobs (state) WHERE state = 'running';
