-- Execution ownership: which engine instance may run a session's agent loop, until when, and the fencing token
-- that refuses the writes of an owner that lost the lease (paused, partitioned) after another took it.

CREATE TABLE leases (
    session_id TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,  -- an engine instance id
    host       TEXT    NOT NULL,  -- where the owner runs, and its process id: a crashed owner on this host
    pid        INTEGER NOT NULL,  --   is seen dead at once instead of at expiry
    token      INTEGER NOT NULL,  -- grows with every acquisition of the session; never reused
    expires_at INTEGER NOT NULL   -- epoch milliseconds; 0 once released
) STRICT, WITHOUT ROWID;
