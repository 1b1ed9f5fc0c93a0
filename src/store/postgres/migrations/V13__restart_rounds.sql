-- The leader's round of automatic starts also looks at restarted
-- connectors that run again (their count resets after reset_after): few,
-- found through this index rather than a scan of every connector.
CREATE INDEX connectors_restarted ON connectors (id) WHERE restart_count > 0;
