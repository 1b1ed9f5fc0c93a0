-- The W3C trace context of the call that issued a command (JSON object of
-- `traceparent` and `tracestate`; empty when the caller's trace was not
-- exported), handed to the agent with the command.
ALTER TABLE commands ADD COLUMN trace_context text NOT NULL DEFAULT '';
