-- Repeated identical refusals (same principal, action, outcome and reason)
-- are recorded as one event per window with how many it stands for, so
-- that a flood of denied calls can neither fill the table nor bury the
-- events that matter.
-- A constant default adds the column without rewriting the table (and no
-- CHECK constraint, whose validation would scan it under an exclusive
-- lock); the store writes counts of at least 1.
ALTER TABLE audit_events ADD COLUMN count bigint NOT NULL DEFAULT 1;
