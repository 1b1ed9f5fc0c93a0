-- Batch calls with a request id (see the PostgreSQL migration V11).
CREATE TABLE batches (
    request_id    TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    -- A JSON array of connector ids.
    connector_ids TEXT NOT NULL,
    response      BLOB,
    create_time   TEXT NOT NULL
);
