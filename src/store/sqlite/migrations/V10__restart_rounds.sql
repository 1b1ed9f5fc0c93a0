-- What the round of automatic starts looks at (see the PostgreSQL
-- migrations V12 and V13).
CREATE INDEX connectors_failed_meant_to_run ON connectors (id)
    WHERE desired_state = 'RUNNING' AND state = 'FAILED';
CREATE INDEX connectors_restarted ON connectors (id) WHERE restart_count > 0;
