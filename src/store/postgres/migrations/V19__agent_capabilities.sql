-- What an agent's connector runtime can do, as its last hello said
-- (AgentCapabilities). An agent that says nothing can do everything.
ALTER TABLE agents ADD COLUMN driver text NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN pull_back boolean NOT NULL DEFAULT true;
