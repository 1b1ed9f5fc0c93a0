-- Who opened each agent's current session (see the PostgreSQL migration
-- V7).
ALTER TABLE agents ADD COLUMN principal TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN peer TEXT NOT NULL DEFAULT '';
