-- Connectors, the commands that start and pause them, and the key page
-- tokens are signed with. Forward-only: later changes come as new files.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Identifiers and names use the "C" collation: byte order, identical on every
-- server and in every backend, and usable by LIKE 'prefix%' index scans.
CREATE TABLE connectors (
    id                   text COLLATE "C" PRIMARY KEY,
    name                 text COLLATE "C" NOT NULL,
    project_id           text COLLATE "C" NOT NULL,
    project_name         text COLLATE "C" NOT NULL,
    -- Unicode lower-case forms of name and project_name, written by the
    -- application (lower() under the "C" collation folds ASCII only); what
    -- case-insensitive search matches against.
    name_folded          text COLLATE "C" NOT NULL,
    project_name_folded  text COLLATE "C" NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('INCREMENTAL_SYNC', 'FULL_MIGRATION')),
    source_type          text NOT NULL,
    source_region        text COLLATE "C" NOT NULL,
    source_address       text NOT NULL,
    destination_type     text NOT NULL,
    destination_region   text COLLATE "C" NOT NULL,
    destination_address  text NOT NULL,
    -- Where it runs, or will run once started.
    region               text COLLATE "C" NOT NULL,
    -- Observed: reported by the agent running it; '' until then. Stored in
    -- lower case so that IPv6 prefixes match whatever case was reported.
    server_ip            text COLLATE "C" NOT NULL DEFAULT '' CHECK (server_ip = lower(server_ip)),
    agent_id             text COLLATE "C" NOT NULL DEFAULT '',
    state                text NOT NULL CHECK (state IN
                           ('STOPPED', 'STARTING', 'RUNNING', 'PAUSING', 'FAILED', 'UNKNOWN')),
    desired_state        text NOT NULL CHECK (desired_state IN ('STOPPED', 'RUNNING')),
    generation           bigint NOT NULL DEFAULT 0 CHECK (generation >= 0),
    checkpoint_time      timestamptz,
    latency_us           bigint CHECK (latency_us >= 0),
    store_earliest_time  timestamptz,
    store_latest_time    timestamptz,
    status_message       text NOT NULL DEFAULT '',
    create_time          timestamptz NOT NULL DEFAULT now(),
    update_time          timestamptz NOT NULL DEFAULT now(),
    CHECK ((store_earliest_time IS NULL) = (store_latest_time IS NULL))
);

-- List order and keyset pagination, overall and per region / state.
CREATE INDEX connectors_name_id ON connectors (name, id);
CREATE INDEX connectors_region_name_id ON connectors (region, name, id);
CREATE INDEX connectors_state_name_id ON connectors (state, name, id);
CREATE INDEX connectors_region_state_name_id ON connectors (region, state, name, id);
-- Search: case-insensitive substrings of names, prefixes of ids and IPs.
CREATE INDEX connectors_name_trgm ON connectors USING gin (name_folded gin_trgm_ops);
CREATE INDEX connectors_project_name_trgm ON connectors USING gin (project_name_folded gin_trgm_ops);
CREATE INDEX connectors_lower_id ON connectors (lower(id) text_pattern_ops);
CREATE INDEX connectors_lower_project_id ON connectors (lower(project_id) text_pattern_ops);
CREATE INDEX connectors_server_ip ON connectors (server_ip text_pattern_ops);
-- "Is this region known?" for region overrides.
CREATE INDEX connectors_destination_region ON connectors (destination_region);
CREATE INDEX connectors_source_region ON connectors (source_region);

-- Every accepted start and pause, kept as the connector's history. Agents
-- receive PENDING commands; at most one per connector is open at a time
-- because a new command supersedes the undelivered ones.
CREATE TABLE commands (
    id                 text COLLATE "C" PRIMARY KEY,
    connector_id       text COLLATE "C" NOT NULL REFERENCES connectors (id),
    kind               text NOT NULL CHECK (kind IN ('START', 'PAUSE')),
    pull_back_time     timestamptz,
    region             text COLLATE "C" NOT NULL,
    -- The connector's region before this command: where a pause must go
    -- when it supersedes a start that moved the connector but never ran.
    previous_region    text COLLATE "C" NOT NULL,
    generation         bigint NOT NULL,
    request_id         text COLLATE "C",
    reason             text NOT NULL DEFAULT '',
    status             text NOT NULL CHECK (status IN
                         ('PENDING', 'DELIVERED', 'SUCCEEDED', 'FAILED', 'SUPERSEDED')),
    agent_id           text COLLATE "C" NOT NULL DEFAULT '',
    error_reason       text NOT NULL DEFAULT '',
    error_message      text NOT NULL DEFAULT '',
    delivery_attempts  integer NOT NULL DEFAULT 0,
    create_time        timestamptz NOT NULL DEFAULT now(),
    deliver_time       timestamptz,
    complete_time      timestamptz,
    UNIQUE (connector_id, generation),
    UNIQUE (connector_id, request_id),
    CHECK (kind = 'START' OR pull_back_time IS NULL)
);

-- Dispatch reads the open commands of a region in generation order.
CREATE INDEX commands_open ON commands (region, connector_id, generation)
    WHERE status IN ('PENDING', 'DELIVERED');

-- Secrets shared by every replica. page_token: the HMAC key of page tokens.
CREATE TABLE server_keys (
    name  text PRIMARY KEY,
    key   bytea NOT NULL
);
INSERT INTO server_keys (name, key)
VALUES ('page_token', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
