-- A start's explicit choice to resume from the store's earliest data when
-- the store no longer holds the connector's checkpoint (skipping what is
-- gone). Sent to the agent with the command; only starts carry it.
ALTER TABLE commands ADD COLUMN skip_to_earliest boolean NOT NULL DEFAULT false
    CHECK (kind = 'START' OR NOT skip_to_earliest);
