-- The event log and the first read model.

CREATE TABLE events (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,  -- gapless per session, from 1
    type       TEXT    NOT NULL,  -- dotted, e.g. 'session.created'
    version    INTEGER NOT NULL,  -- shape version of data for this type
    data       TEXT    NOT NULL,  -- JSON
    at         INTEGER NOT NULL,  -- epoch milliseconds
    PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID;

-- Projection of session.* events; head_seq is where the next append continues.
CREATE TABLE sessions (
    id                 TEXT    PRIMARY KEY,
    cwd                TEXT    NOT NULL,
    title              TEXT    NOT NULL,
    agent              TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    parent_id          TEXT,
    status             TEXT    NOT NULL DEFAULT 'idle',
    head_seq           INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX sessions_by_update ON sessions (updated_at DESC, id DESC);
CREATE INDEX sessions_by_cwd ON sessions (cwd, updated_at DESC, id DESC);
