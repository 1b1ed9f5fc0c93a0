-- Automatic starts (restart policies). Constant defaults add the columns
-- without rewriting the table: every connector, old or new, restarts on
-- failure without limit, after 10 s doubling up to 5 min, and its count
-- resets after 10 min of running.
ALTER TABLE connectors
    ADD COLUMN restart_mode text NOT NULL DEFAULT 'ON_FAILURE',
    ADD COLUMN max_restarts bigint NOT NULL DEFAULT 0,
    ADD COLUMN initial_backoff_ms bigint NOT NULL DEFAULT 10000,
    ADD COLUMN max_backoff_ms bigint NOT NULL DEFAULT 300000,
    ADD COLUMN reset_after_ms bigint NOT NULL DEFAULT 600000,
    ADD COLUMN restart_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN next_restart_time timestamptz;
-- Whether the agent's failure may be retried (CommandResult.retriable, or
-- the control plane's list of reasons that retries never fix).
ALTER TABLE commands ADD COLUMN error_retriable boolean NOT NULL DEFAULT true;
-- What the leader looks at each round: connectors due or waiting.
CREATE INDEX connectors_next_restart ON connectors (next_restart_time)
    WHERE next_restart_time IS NOT NULL;
CREATE INDEX connectors_meant_to_run_failed ON connectors (id)
    WHERE desired_state = 'RUNNING' AND state IN ('FAILED', 'STOPPED');
