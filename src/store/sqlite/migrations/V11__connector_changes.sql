-- Every change of a connector row, in commit order (one writer: rowid
-- order is commit order), for WatchConnectors; see the PostgreSQL
-- migration V14.
CREATE TABLE connector_changes (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    connector_id  TEXT NOT NULL,
    before        TEXT,
    change_time   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX connector_changes_time ON connector_changes (change_time);
CREATE TABLE connector_changes_horizon (
    one             INTEGER PRIMARY KEY CHECK (one = 1),
    pruned_through  INTEGER NOT NULL
);
INSERT INTO connector_changes_horizon (one, pruned_through) VALUES (1, 0);

CREATE TRIGGER connectors_inserted AFTER INSERT ON connectors BEGIN
    INSERT INTO connector_changes (connector_id, before) VALUES (NEW.id, NULL);
END;
CREATE TRIGGER connectors_updated AFTER UPDATE ON connectors BEGIN
    INSERT INTO connector_changes (connector_id, before) VALUES (NEW.id, json_object(
        'id', OLD.id, 'name', OLD.name, 'project_id', OLD.project_id,
        'project_name', OLD.project_name, 'server_ip', OLD.server_ip,
        'region', OLD.region, 'state', OLD.state, 'desired_state', OLD.desired_state,
        'latency_us', OLD.latency_us,
        'awaiting_restart', json(CASE WHEN OLD.next_restart_time IS NULL THEN 'false' ELSE 'true' END)));
END;
CREATE TRIGGER connectors_deleted AFTER DELETE ON connectors BEGIN
    INSERT INTO connector_changes (connector_id, before) VALUES (OLD.id, json_object(
        'id', OLD.id, 'name', OLD.name, 'project_id', OLD.project_id,
        'project_name', OLD.project_name, 'server_ip', OLD.server_ip,
        'region', OLD.region, 'state', OLD.state, 'desired_state', OLD.desired_state,
        'latency_us', OLD.latency_us,
        'awaiting_restart', json(CASE WHEN OLD.next_restart_time IS NULL THEN 'false' ELSE 'true' END)));
END;
