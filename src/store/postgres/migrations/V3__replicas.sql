-- Several control-plane replicas on one database: who is alive, which
-- replica holds each agent's session, and the lease that elects the one
-- replica doing leader-only work.

-- One row per running replica, refreshed every heartbeat interval. A
-- replica whose row goes stale has died; the leader then treats the agent
-- sessions it held as ended.
CREATE TABLE replicas (
    id              text COLLATE "C" PRIMARY KEY,
    address         text NOT NULL,
    start_time      timestamptz NOT NULL DEFAULT now(),
    heartbeat_time  timestamptz NOT NULL DEFAULT now(),
    draining        boolean NOT NULL DEFAULT false
);

-- The replica holding the agent's current session (recorded with the
-- session epoch by the same write).
ALTER TABLE agents ADD COLUMN replica_id text COLLATE "C" NOT NULL DEFAULT '';
CREATE INDEX agents_replica_id ON agents (replica_id) WHERE disconnect_time IS NULL;

-- Leases: a holder until expire_time. term grows by one whenever the lease
-- changes hands (or lapses), and leader-only writes check holder and term in
-- the same statement: a replica that lost the lease cannot act (fencing).
CREATE TABLE leases (
    name          text PRIMARY KEY,
    holder        text COLLATE "C" NOT NULL DEFAULT '',
    term          bigint NOT NULL DEFAULT 0,
    acquire_time  timestamptz,
    expire_time   timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO leases (name) VALUES ('leader');

-- Leader-only expiry of deliveries that were never answered.
CREATE INDEX commands_deliver_time ON commands (deliver_time) WHERE status = 'DELIVERED';
