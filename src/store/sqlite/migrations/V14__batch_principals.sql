-- Who used a batch's request id (see the PostgreSQL migration V18).
ALTER TABLE batches ADD COLUMN principal TEXT NOT NULL DEFAULT '';
