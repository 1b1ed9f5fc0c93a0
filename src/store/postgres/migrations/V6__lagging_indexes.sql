-- The lagging filter (ListConnectors `lagging: true`, and the lagging
-- gauge): connectors meant to run that report latency over the threshold,
-- or are UNKNOWN because their agent is offline. Each arm of the search's
-- OR has its partial index, so that finding and counting the few lagging
-- connectors of a large fleet costs in proportion to them, not to the
-- fleet.
CREATE INDEX connectors_running_latency ON connectors (latency_us)
    WHERE desired_state = 'RUNNING' AND state = 'RUNNING';
CREATE INDEX connectors_wanted_unknown ON connectors (name, id)
    WHERE desired_state = 'RUNNING' AND state = 'UNKNOWN';
