-- A batch's request id belongs to the principal that used it first: a
-- retry by anyone else is refused, never answered with another's result.
ALTER TABLE batches ADD COLUMN principal text NOT NULL DEFAULT '';
