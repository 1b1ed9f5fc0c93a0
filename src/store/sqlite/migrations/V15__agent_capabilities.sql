-- What an agent's connector runtime can do (see the PostgreSQL migration V19).
ALTER TABLE agents ADD COLUMN driver TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN pull_back INTEGER NOT NULL DEFAULT 1;
