-- A tool part's status as a column, so that finding unsettled calls needs no JSON function (the same SQL runs on
-- PostgreSQL).
ALTER TABLE parts ADD COLUMN status TEXT;
UPDATE parts SET status = json_extract(data, '$.status') WHERE kind = 'tool';
