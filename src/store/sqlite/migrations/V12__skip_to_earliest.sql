-- A start's choice to skip data the store no longer holds (see the
-- PostgreSQL migration V15).
ALTER TABLE commands ADD COLUMN skip_to_earliest INTEGER NOT NULL DEFAULT 0
    CHECK (kind = 'START' OR skip_to_earliest = 0);
