-- The embedded store: the same model as the PostgreSQL schema, for one
-- process. Times are UTC RFC 3339 text with microseconds
-- (2026-11-24T12:00:00.000000Z), so that text order is time order; text
-- compares bytewise (BINARY), like PostgreSQL's "C" collation.

CREATE TABLE connectors (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    project_id           TEXT NOT NULL,
    project_name         TEXT NOT NULL,
    name_folded          TEXT NOT NULL,
    project_name_folded  TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('INCREMENTAL_SYNC', 'FULL_MIGRATION')),
    source_type          TEXT NOT NULL,
    source_region        TEXT NOT NULL,
    source_address       TEXT NOT NULL,
    destination_type     TEXT NOT NULL,
    destination_region   TEXT NOT NULL,
    destination_address  TEXT NOT NULL,
    region               TEXT NOT NULL,
    server_ip            TEXT NOT NULL DEFAULT '' CHECK (server_ip = lower(server_ip)),
    agent_id             TEXT NOT NULL DEFAULT '',
    state                TEXT NOT NULL CHECK (state IN
                           ('STOPPED', 'STARTING', 'RUNNING', 'PAUSING', 'FAILED', 'UNKNOWN')),
    desired_state        TEXT NOT NULL CHECK (desired_state IN ('STOPPED', 'RUNNING')),
    generation           INTEGER NOT NULL DEFAULT 0 CHECK (generation >= 0),
    checkpoint_time      TEXT,
    latency_us           INTEGER CHECK (latency_us >= 0),
    store_earliest_time  TEXT,
    store_latest_time    TEXT,
    status_message       TEXT NOT NULL DEFAULT '',
    create_time          TEXT NOT NULL,
    update_time          TEXT NOT NULL,
    CHECK ((store_earliest_time IS NULL) = (store_latest_time IS NULL))
);
CREATE INDEX connectors_name_id ON connectors (name, id);
CREATE INDEX connectors_region_name_id ON connectors (region, name, id);
CREATE INDEX connectors_state_name_id ON connectors (state, name, id);
CREATE INDEX connectors_agent_id ON connectors (agent_id);

CREATE TABLE commands (
    id                 TEXT PRIMARY KEY,
    connector_id       TEXT NOT NULL REFERENCES connectors (id),
    kind               TEXT NOT NULL CHECK (kind IN ('START', 'PAUSE')),
    pull_back_time     TEXT,
    region             TEXT NOT NULL,
    previous_region    TEXT NOT NULL,
    generation         INTEGER NOT NULL,
    request_id         TEXT,
    reason             TEXT NOT NULL DEFAULT '',
    status             TEXT NOT NULL CHECK (status IN
                         ('PENDING', 'DELIVERED', 'SUCCEEDED', 'FAILED', 'SUPERSEDED')),
    agent_id           TEXT NOT NULL DEFAULT '',
    error_reason       TEXT NOT NULL DEFAULT '',
    error_message      TEXT NOT NULL DEFAULT '',
    delivery_attempts  INTEGER NOT NULL DEFAULT 0,
    create_time        TEXT NOT NULL,
    deliver_time       TEXT,
    complete_time      TEXT,
    UNIQUE (connector_id, generation),
    UNIQUE (connector_id, request_id),
    CHECK (kind = 'START' OR pull_back_time IS NULL)
);
CREATE INDEX commands_open ON commands (region, status, connector_id, generation);
CREATE INDEX commands_agent ON commands (agent_id, status);

CREATE TABLE server_keys (
    name  TEXT PRIMARY KEY,
    key   BLOB NOT NULL
);
INSERT INTO server_keys (name, key) VALUES ('page_token', randomblob(32));

CREATE TABLE agents (
    id                   TEXT PRIMARY KEY,
    region               TEXT NOT NULL,
    server_ip            TEXT NOT NULL CHECK (server_ip = lower(server_ip)),
    instance_id          TEXT NOT NULL,
    version              TEXT NOT NULL DEFAULT '',
    session_id           TEXT NOT NULL,
    session_epoch        INTEGER NOT NULL,
    connect_time         TEXT NOT NULL,
    last_heartbeat_time  TEXT NOT NULL,
    disconnect_time      TEXT
);
CREATE INDEX agents_region ON agents (region, id);
