-- Repeated identical refusals (same principal, action, outcome and reason)
-- are recorded as one event per window with how many it stands for, so
-- that a flood of denied calls can neither fill the table nor bury the
-- events that matter.
ALTER TABLE audit_events ADD COLUMN count bigint NOT NULL DEFAULT 1 CHECK (count >= 1);
