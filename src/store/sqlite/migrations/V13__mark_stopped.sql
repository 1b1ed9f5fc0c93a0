-- MarkConnectorStopped's fence (see the PostgreSQL migration V16).
ALTER TABLE connectors ADD COLUMN fenced_below INTEGER NOT NULL DEFAULT 0;
