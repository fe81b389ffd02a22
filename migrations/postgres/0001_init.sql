-- keel's schema on PostgreSQL: the same tables and columns as SQLite's migrations 0001 to 0007 (see ../), with
-- PostgreSQL's types. Event data stays text: it is sent on as stored, never queried.

CREATE TABLE events (
    session_id TEXT   NOT NULL,
    seq        BIGINT NOT NULL,  -- gapless per session, from 1
    type       TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    data       TEXT   NOT NULL,  -- JSON
    at         BIGINT NOT NULL,  -- epoch milliseconds
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE sessions (
    id                 TEXT   PRIMARY KEY,
    cwd                TEXT   NOT NULL,
    title              TEXT   NOT NULL,
    agent              TEXT   NOT NULL,
    model              TEXT   NOT NULL,
    parent_id          TEXT,
    status             TEXT   NOT NULL DEFAULT 'idle',
    head_seq           BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    queue_paused       BIGINT NOT NULL DEFAULT 0,
    active_activity    TEXT,
    checkpoint_seq     BIGINT NOT NULL DEFAULT 0,
    summary            TEXT,
    context_tokens     BIGINT NOT NULL DEFAULT 0,
    context_seq        BIGINT NOT NULL DEFAULT 0,
    turn_seq           BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX sessions_by_update ON sessions (updated_at DESC, id DESC);
CREATE INDEX sessions_by_cwd ON sessions (cwd, updated_at DESC, id DESC);
CREATE INDEX sessions_open ON sessions (id) WHERE active_activity IS NOT NULL;

CREATE TABLE inputs (
    session_id   TEXT   NOT NULL,
    input_id     TEXT   NOT NULL,
    admitted_seq BIGINT NOT NULL,
    delivery     TEXT   NOT NULL,
    disposition  TEXT   NOT NULL,
    content      TEXT   NOT NULL,
    agent        TEXT,
    model        TEXT,
    fingerprint  TEXT   NOT NULL,
    state        TEXT   NOT NULL DEFAULT 'pending',
    promoted_seq BIGINT,
    kind         TEXT   NOT NULL DEFAULT 'prompt',
    PRIMARY KEY (session_id, input_id)
);

CREATE INDEX inputs_pending ON inputs (session_id, state, admitted_seq);
CREATE INDEX inputs_waiting ON inputs (session_id) WHERE state = 'pending';

CREATE TABLE parts (
    session_id TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    idx        BIGINT NOT NULL,
    message_id TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    part_id    TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    status     TEXT,
    PRIMARY KEY (session_id, seq, idx)
);

CREATE INDEX parts_by_id ON parts (session_id, part_id);

CREATE TABLE approvals (
    session_id    TEXT   NOT NULL,
    approval_id   TEXT   NOT NULL,
    call_id       TEXT   NOT NULL,
    tool          TEXT   NOT NULL,
    action        TEXT   NOT NULL,
    resources     TEXT   NOT NULL,
    title         TEXT   NOT NULL,
    requested_seq BIGINT NOT NULL,
    state         TEXT   NOT NULL DEFAULT 'pending',
    decision      TEXT,
    message       TEXT,
    PRIMARY KEY (session_id, approval_id)
);

CREATE INDEX approvals_by_call ON approvals (session_id, call_id);
CREATE UNIQUE INDEX approvals_by_id ON approvals (approval_id);

CREATE TABLE project_rules (
    project    TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    pattern    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, action, pattern)
);

CREATE TABLE leases (
    session_id TEXT   PRIMARY KEY,
    owner      TEXT   NOT NULL,
    host       TEXT   NOT NULL,
    pid        BIGINT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    job_id     TEXT   NOT NULL,
    session_id TEXT   NOT NULL,
    command    TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    host       TEXT   NOT NULL,
    owner_pid  BIGINT NOT NULL,
    pid        BIGINT NOT NULL,
    exit_code  BIGINT,
    started_at BIGINT NOT NULL,
    ended_at   BIGINT,
    PRIMARY KEY (session_id, job_id)
);
CREATE INDEX jobs_running ON jobs (state) WHERE state = 'running';
