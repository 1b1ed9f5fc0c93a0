-- Region agents and their sessions. One row per agent id; each new session
-- bumps session_epoch, and writes made for an older epoch are refused
-- (fencing).

CREATE TABLE agents (
    id                   text COLLATE "C" PRIMARY KEY,
    region               text COLLATE "C" NOT NULL,
    server_ip            text COLLATE "C" NOT NULL CHECK (server_ip = lower(server_ip)),
    instance_id          text NOT NULL,
    version              text NOT NULL DEFAULT '',
    session_id           text NOT NULL,
    session_epoch        bigint NOT NULL,
    connect_time         timestamptz NOT NULL,
    -- Flushed in batches from memory, at most one heartbeat interval behind.
    last_heartbeat_time  timestamptz NOT NULL,
    -- Set when the session's stream ends; NULL while connected.
    disconnect_time      timestamptz
);
CREATE INDEX agents_region ON agents (region, id);

-- Which connectors an agent runs: placement of unowned commands, agent load.
CREATE INDEX connectors_agent_id ON connectors (agent_id) WHERE agent_id <> '';
-- Commands delivered to an agent and not yet answered.
CREATE INDEX commands_delivered ON commands (agent_id) WHERE status = 'DELIVERED';
