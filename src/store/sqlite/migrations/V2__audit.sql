-- The audit trail (see the PostgreSQL migration V4).
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time          TEXT NOT NULL,
    principal     TEXT NOT NULL,
    action        TEXT NOT NULL,
    connector_id  TEXT NOT NULL DEFAULT '',
    request_id    TEXT NOT NULL DEFAULT '',
    outcome       TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    peer          TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_connector ON audit_events (connector_id, id);
CREATE INDEX audit_events_principal ON audit_events (principal, id);
CREATE INDEX audit_events_time ON audit_events (time);
