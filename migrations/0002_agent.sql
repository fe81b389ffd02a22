-- The inbox, the projected transcript, and the session state the agent loop needs.

ALTER TABLE sessions ADD COLUMN queue_paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN active_activity TEXT;

-- Every admitted input, pending until promoted into the transcript (or removed).
CREATE TABLE inputs (
    session_id   TEXT    NOT NULL,
    input_id     TEXT    NOT NULL,
    admitted_seq INTEGER NOT NULL,
    delivery     TEXT    NOT NULL,  -- 'queue' | 'steer'
    disposition  TEXT    NOT NULL,  -- 'started' | 'queued' | 'steered', as first answered
    content      TEXT    NOT NULL,  -- JSON ContentPart[]
    agent        TEXT,
    model        TEXT,
    fingerprint  TEXT    NOT NULL,  -- what makes a repeated inputId the same input
    state        TEXT    NOT NULL DEFAULT 'pending',  -- 'pending' | 'promoted' | 'removed'
    promoted_seq INTEGER,
    PRIMARY KEY (session_id, input_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX inputs_pending ON inputs (session_id, state, admitted_seq);

-- The model-visible transcript, one row per part, in the order the events created them.
CREATE TABLE parts (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,  -- the event that created the part
    idx        INTEGER NOT NULL,  -- position among the parts that event created
    message_id TEXT    NOT NULL,
    role       TEXT    NOT NULL,  -- 'user' | 'assistant'
    part_id    TEXT    NOT NULL,  -- the call id for tool parts
    kind       TEXT    NOT NULL,  -- 'text' | 'reasoning' | 'file' | 'image' | 'tool'
    data       TEXT    NOT NULL,  -- JSON, shaped like the protocol's Part
    PRIMARY KEY (session_id, seq, idx)
) STRICT, WITHOUT ROWID;

CREATE INDEX parts_by_id ON parts (session_id, part_id);
