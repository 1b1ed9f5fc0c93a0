-- MarkConnectorStopped: reports and results for generations below this
-- change nothing (they come from an agent that was away when an operator
-- marked the connector stopped). 0: nothing is fenced.
ALTER TABLE connectors ADD COLUMN fenced_below bigint NOT NULL DEFAULT 0;
