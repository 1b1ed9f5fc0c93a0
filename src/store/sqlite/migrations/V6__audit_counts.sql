-- Aggregated refusals (see the PostgreSQL migration V9).
ALTER TABLE audit_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1);
