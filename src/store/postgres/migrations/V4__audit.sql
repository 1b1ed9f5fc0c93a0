-- The audit trail: every create, start, pause and agent session start/end,
-- written in the same transaction as the change; refused calls too.
CREATE TABLE audit_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time          timestamptz NOT NULL DEFAULT now(),
    principal     text COLLATE "C" NOT NULL,
    action        text NOT NULL,
    connector_id  text COLLATE "C" NOT NULL DEFAULT '',
    request_id    text NOT NULL DEFAULT '',
    outcome       text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    peer          text NOT NULL DEFAULT '',
    detail        text NOT NULL DEFAULT ''
);
-- Newest first, overall and per connector / principal.
CREATE INDEX audit_events_connector ON audit_events (connector_id, id) WHERE connector_id <> '';
CREATE INDEX audit_events_principal ON audit_events (principal, id);
CREATE INDEX audit_events_time ON audit_events (time);
