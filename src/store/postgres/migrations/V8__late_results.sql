-- A newer command supersedes every older unanswered one of its connector,
-- delivered or not, so that an agent (reconnecting, say) is handed what the
-- newest generation asks and converges in one step. An agent may still
-- answer a command it received before it was superseded: that late result
-- is kept here ('SUCCEEDED' or 'FAILED', with error_reason and
-- error_message), and changes nothing the newer command decided.
-- No CHECK constraint: validating one would scan the table under an
-- exclusive lock; the store writes only these values.
ALTER TABLE commands ADD COLUMN late_result text NOT NULL DEFAULT '';
ALTER TABLE commands ADD COLUMN late_result_time timestamptz;

-- Rows written before this rule: an older open command beside a newer one
-- is superseded now.
UPDATE commands c SET status = 'SUPERSEDED', complete_time = now()
WHERE c.status IN ('PENDING', 'DELIVERED')
  AND EXISTS (SELECT 1 FROM commands n
              WHERE n.connector_id = c.connector_id AND n.generation > c.generation);
