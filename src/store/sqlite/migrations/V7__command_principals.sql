-- Who issued each command (see the PostgreSQL migration V10).
ALTER TABLE commands ADD COLUMN principal TEXT NOT NULL DEFAULT '';
