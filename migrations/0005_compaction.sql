-- Compaction: where the model's context starts, and what the next request's size is estimated from.

-- The latest compaction's checkpoint: the summary stands for the transcript up to checkpoint_seq.
ALTER TABLE sessions ADD COLUMN checkpoint_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN summary TEXT;
-- The anchor of the size estimate: a measured context size (the last request's reported prompt tokens, or a
-- compaction's result) and the seq after which parts were added to it since.
ALTER TABLE sessions ADD COLUMN context_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN context_seq INTEGER NOT NULL DEFAULT 0;
-- The seq of the latest turn.started: a turn's parts come after it.
ALTER TABLE sessions ADD COLUMN turn_seq INTEGER NOT NULL DEFAULT 0;

-- 'prompt' | 'compact'
ALTER TABLE inputs ADD COLUMN kind TEXT NOT NULL DEFAULT 'prompt';
