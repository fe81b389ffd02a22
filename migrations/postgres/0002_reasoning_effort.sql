-- A session's own reasoning effort; 'default' follows its agent's and the config's.
ALTER TABLE sessions ADD COLUMN reasoning_effort TEXT NOT NULL DEFAULT 'default';
