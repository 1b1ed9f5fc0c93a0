-- Who opened each agent's current session and from where, so that a
-- session ended elsewhere (superseded by a newer one, swept by the leader
-- after its replica died, or left by an earlier run of its replica) is
-- audited with them.
ALTER TABLE agents ADD COLUMN principal text NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN peer text NOT NULL DEFAULT '';
