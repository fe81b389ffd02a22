-- Durable approvals and the allow rules that `always` answers store per project.

CREATE TABLE approvals (
    session_id    TEXT    NOT NULL,
    approval_id   TEXT    NOT NULL,
    call_id       TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    resources     TEXT    NOT NULL,  -- JSON string[]
    title         TEXT    NOT NULL,
    requested_seq INTEGER NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending',  -- 'pending' | 'resolved'
    decision      TEXT,              -- 'once' | 'always' | 'reject' | 'cancelled'
    message       TEXT,
    PRIMARY KEY (session_id, approval_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX approvals_by_call ON approvals (session_id, call_id);
CREATE UNIQUE INDEX approvals_by_id ON approvals (approval_id);

-- Allow rules for a project (the session's workspace), from `always` answers.
CREATE TABLE project_rules (
    project    TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    pattern    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, action, pattern)
) STRICT, WITHOUT ROWID;
