-- The W3C trace context of the call that issued a command (see the
-- PostgreSQL migration V5).
ALTER TABLE commands ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
