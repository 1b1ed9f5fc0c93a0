-- Automatic starts (see the PostgreSQL migration V12).
ALTER TABLE connectors ADD COLUMN restart_mode TEXT NOT NULL DEFAULT 'ON_FAILURE';
ALTER TABLE connectors ADD COLUMN max_restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connectors ADD COLUMN initial_backoff_ms INTEGER NOT NULL DEFAULT 10000;
ALTER TABLE connectors ADD COLUMN max_backoff_ms INTEGER NOT NULL DEFAULT 300000;
ALTER TABLE connectors ADD COLUMN reset_after_ms INTEGER NOT NULL DEFAULT 600000;
ALTER TABLE connectors ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connectors ADD COLUMN next_restart_time TEXT;
ALTER TABLE commands ADD COLUMN error_retriable INTEGER NOT NULL DEFAULT 1;
CREATE INDEX connectors_next_restart ON connectors (next_restart_time)
    WHERE next_restart_time IS NOT NULL;
