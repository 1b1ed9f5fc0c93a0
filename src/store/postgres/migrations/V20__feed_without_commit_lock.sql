-- The change feed without a commit lock (replaces V14's ordering).
--
-- V14 gave each change its position at commit, under one advisory lock
-- held through the commit's WAL flush: transactions that changed
-- connectors committed one at a time. Now a writer only appends its change
-- to `connector_changes_pending` (no index, no lock); positions are given
-- afterwards, by `connector_changes_sequence()`, which any replica calls a
-- few dozen times a second. It moves the pending changes it can see into
-- `connector_changes`, numbered after the last, in one transaction under a
-- lock only sequencers take. Why this is enough:
-- - A reader never misses a position: positions are given by one sequencer
--   at a time, each numbering after the last committed one, so they become
--   visible in order.
-- - A change is sequenced once: the sequencer deletes what it numbers.
-- - A connector's changes keep their order: `change` is drawn when the
--   change is made, while the writer holds the connector's row lock, so a
--   later change of a connector has a larger one; and a sequencer that sees
--   a change of a connector also sees every earlier one (the later writer
--   waited for the earlier one's commit to become visible before it could
--   lock the row). Numbering by `change` keeps them in order.
-- `connectors.version` counts each connector's changes (1 when created),
-- so that a watcher can tell it saw each change once, in order.

ALTER TABLE connectors ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE connector_changes ADD COLUMN version bigint;

-- Changes made and not yet given a position. Only appended to by writers,
-- and emptied by the sequencer; no index (the sequencer reads it whole).
-- `name` NULL: a new connector (no before-image); the other columns are
-- what a search saw before the change.
CREATE TABLE connector_changes_pending (
    change            bigint GENERATED ALWAYS AS IDENTITY,
    connector_id      text NOT NULL,
    version           bigint NOT NULL,
    name              text,
    project_id        text,
    project_name      text,
    server_ip         text,
    region            text,
    state             text,
    desired_state     text,
    latency_us        bigint,
    awaiting_restart  boolean
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

DROP TRIGGER connectors_changed ON connectors;
DROP FUNCTION connector_changed();
DROP TRIGGER connector_changes_sequenced ON connector_changes;
DROP FUNCTION connector_changes_sequenced();
DROP INDEX connector_changes_unsequenced;
ALTER TABLE connector_changes DROP COLUMN xid;
ALTER TABLE connector_changes ALTER COLUMN seq SET NOT NULL;
DROP SEQUENCE connector_change_seq;

-- An update: the next version, and the row as a search saw it before.
CREATE FUNCTION connector_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    INSERT INTO connector_changes_pending
        (connector_id, version, name, project_id, project_name, server_ip, region, state,
         desired_state, latency_us, awaiting_restart)
    VALUES (NEW.id, NEW.version, OLD.name, OLD.project_id, OLD.project_name, OLD.server_ip,
            OLD.region, OLD.state, OLD.desired_state, OLD.latency_us,
            OLD.next_restart_time IS NOT NULL);
    RETURN NEW;
END $$;

CREATE TRIGGER connectors_updated BEFORE UPDATE ON connectors
    FOR EACH ROW EXECUTE FUNCTION connector_updated();

-- A new connector (no before-image), or a deleted one (one version more).
CREATE FUNCTION connector_inserted_or_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO connector_changes_pending (connector_id, version)
        VALUES (NEW.id, NEW.version);
    ELSE
        INSERT INTO connector_changes_pending
            (connector_id, version, name, project_id, project_name, server_ip, region, state,
             desired_state, latency_us, awaiting_restart)
        VALUES (OLD.id, OLD.version + 1, OLD.name, OLD.project_id, OLD.project_name,
                OLD.server_ip, OLD.region, OLD.state, OLD.desired_state, OLD.latency_us,
                OLD.next_restart_time IS NOT NULL);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER connectors_inserted_or_deleted AFTER INSERT OR DELETE ON connectors
    FOR EACH ROW EXECUTE FUNCTION connector_inserted_or_deleted();

-- Gives the pending changes this transaction can see their positions, at
-- most `up_to` of them (the oldest), and returns how many. Callers may run
-- it at any time from any replica; one runs at a time. Each statement of a
-- (volatile) function sees what was committed when it began, so the move
-- below sees everything the previous sequencer committed.
CREATE FUNCTION connector_changes_sequence(up_to bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    sequenced bigint;
BEGIN
    -- An arbitrary constant naming this lock ("cc-seq" + 1).
    PERFORM pg_advisory_xact_lock(6363736572);
    WITH taken AS (
             DELETE FROM connector_changes_pending
             WHERE change IN (SELECT change FROM connector_changes_pending
                              ORDER BY change LIMIT up_to)
             RETURNING *),
         head AS (
             SELECT greatest((SELECT max(seq) FROM connector_changes),
                             (SELECT pruned_through FROM connector_changes_horizon)) AS seq),
         added AS (
             INSERT INTO connector_changes (seq, connector_id, version, before)
             SELECT head.seq + row_number() OVER (ORDER BY t.change), t.connector_id, t.version,
                    CASE WHEN t.name IS NULL THEN NULL ELSE jsonb_build_object(
                        'id', t.connector_id, 'name', t.name, 'project_id', t.project_id,
                        'project_name', t.project_name, 'server_ip', t.server_ip,
                        'region', t.region, 'state', t.state, 'desired_state', t.desired_state,
                        'latency_us', t.latency_us, 'awaiting_restart', t.awaiting_restart) END
             FROM taken t, head
             RETURNING 1)
    SELECT count(*) INTO sequenced FROM added;
    RETURN sequenced;
END $$;
