-- Late results of superseded commands (see the PostgreSQL migration V8).
ALTER TABLE commands ADD COLUMN late_result TEXT NOT NULL DEFAULT ''
    CHECK (late_result IN ('', 'SUCCEEDED', 'FAILED'));
ALTER TABLE commands ADD COLUMN late_result_time TEXT;

UPDATE commands SET status = 'SUPERSEDED',
                    complete_time = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')
WHERE status IN ('PENDING', 'DELIVERED')
  AND EXISTS (SELECT 1 FROM commands n
              WHERE n.connector_id = commands.connector_id
                AND n.generation > commands.generation);
