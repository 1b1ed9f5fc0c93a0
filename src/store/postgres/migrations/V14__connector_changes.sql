-- Every change of a connector row, in commit order, for WatchConnectors.
-- A trigger records each change with what a search saw before it
-- (`before`, NULL for a new connector); at commit, a deferred trigger gives
-- the transaction's changes their `seq` while holding a transaction lock,
-- so that seq order is commit order: a reader that has seen seq n has
-- seen every change before it, from any replica.
CREATE SEQUENCE connector_change_seq;

CREATE TABLE connector_changes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Commit order; NULL only inside the writing transaction.
    seq           bigint UNIQUE,
    xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    connector_id  text NOT NULL,
    before        jsonb,
    change_time   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connector_changes_unsequenced ON connector_changes (xid) WHERE seq IS NULL;
-- The leader prunes by age.
CREATE INDEX connector_changes_time ON connector_changes (change_time);

-- Changes up to this seq were pruned: a resume token before it expired.
CREATE TABLE connector_changes_horizon (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    pruned_through  bigint NOT NULL
);
INSERT INTO connector_changes_horizon (pruned_through) VALUES (0);

CREATE FUNCTION connector_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO connector_changes (connector_id, before)
    VALUES (
        CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE jsonb_build_object(
            'id', OLD.id, 'name', OLD.name, 'project_id', OLD.project_id,
            'project_name', OLD.project_name, 'server_ip', OLD.server_ip,
            'region', OLD.region, 'state', OLD.state, 'desired_state', OLD.desired_state,
            'latency_us', OLD.latency_us,
            'awaiting_restart', OLD.next_restart_time IS NOT NULL) END);
    RETURN NULL;
END $$;

CREATE TRIGGER connectors_changed AFTER INSERT OR UPDATE OR DELETE ON connectors
    FOR EACH ROW EXECUTE FUNCTION connector_changed();

-- At commit: the transaction's changes get consecutive seqs, in the order
-- they were made, under a lock held until the commit is visible. Once per
-- transaction (the first of its deferred firings does it all).
CREATE FUNCTION connector_changes_sequenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pending bigint;
    first bigint;
BEGIN
    IF current_setting('connector_control.sequenced', true) = pg_current_xact_id()::text THEN
        RETURN NULL;
    END IF;
    -- An arbitrary constant naming this lock ("cc-seq").
    PERFORM pg_advisory_xact_lock(6363736571);
    SELECT count(*) INTO pending FROM connector_changes
        WHERE xid = pg_current_xact_id() AND seq IS NULL;
    IF pending > 0 THEN
        first := nextval('connector_change_seq');
        PERFORM setval('connector_change_seq', first + pending - 1);
        UPDATE connector_changes c SET seq = first + o.n - 1
        FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM connector_changes
              WHERE xid = pg_current_xact_id() AND seq IS NULL) o
        WHERE c.id = o.id;
    END IF;
    PERFORM set_config('connector_control.sequenced', pg_current_xact_id()::text, true);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER connector_changes_sequenced AFTER INSERT ON connector_changes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION connector_changes_sequenced();
