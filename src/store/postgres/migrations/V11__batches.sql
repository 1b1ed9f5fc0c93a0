-- Batch calls with a request id: what they chose (so that a retry after a
-- crash finishes the same connectors) and, once done, their answer (so that
-- a retry returns it and issues nothing new).
CREATE TABLE batches (
    request_id    text PRIMARY KEY,
    -- What the call asked, hashed: a retry must ask the same.
    fingerprint   text NOT NULL,
    connector_ids text[] NOT NULL,
    -- The encoded BatchConnectorsResponse; NULL until the call finished.
    response      bytea,
    create_time   timestamptz NOT NULL DEFAULT now()
);
