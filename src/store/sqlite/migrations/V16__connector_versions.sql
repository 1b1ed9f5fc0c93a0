-- Each connector's changes counted (`version`, 1 when created) and each
-- recorded change with the version it made, so that a watcher can tell it
-- saw each change once, in order (PostgreSQL: migration V20). The version
-- is set by an update inside the update trigger; recursive triggers are
-- off (SQLite's default), so that update records nothing more.
ALTER TABLE connectors ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE connector_changes ADD COLUMN version INTEGER;

DROP TRIGGER connectors_inserted;
DROP TRIGGER connectors_updated;
DROP TRIGGER connectors_deleted;

CREATE TRIGGER connectors_inserted AFTER INSERT ON connectors BEGIN
    INSERT INTO connector_changes (connector_id, version, before) VALUES (NEW.id, NEW.version, NULL);
END;
CREATE TRIGGER connectors_updated AFTER UPDATE ON connectors BEGIN
    UPDATE connectors SET version = OLD.version + 1 WHERE rowid = NEW.rowid;
    INSERT INTO connector_changes (connector_id, version, before) VALUES (NEW.id, OLD.version + 1,
        json_object(
            'id', OLD.id, 'name', OLD.name, 'project_id', OLD.project_id,
            'project_name', OLD.project_name, 'server_ip', OLD.server_ip,
            'region', OLD.region, 'state', OLD.state, 'desired_state', OLD.desired_state,
            'latency_us', OLD.latency_us,
            'awaiting_restart',
            json(CASE WHEN OLD.next_restart_time IS NULL THEN 'false' ELSE 'true' END)));
END;
CREATE TRIGGER connectors_deleted AFTER DELETE ON connectors BEGIN
    INSERT INTO connector_changes (connector_id, version, before) VALUES (OLD.id, OLD.version + 1,
        json_object(
            'id', OLD.id, 'name', OLD.name, 'project_id', OLD.project_id,
            'project_name', OLD.project_name, 'server_ip', OLD.server_ip,
            'region', OLD.region, 'state', OLD.state, 'desired_state', OLD.desired_state,
            'latency_us', OLD.latency_us,
            'awaiting_restart',
            json(CASE WHEN OLD.next_restart_time IS NULL THEN 'false' ELSE 'true' END)));
END;
