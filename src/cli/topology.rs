//! `agents list`, `replicas list` and `regions list`: who serves where.

use super::client::{ClientArgs, print_answer};
use super::render;
use crate::proto::v1;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents, ONLINE or OFFLINE.
    List {
        /// Only agents of this region.
        #[arg(long, default_value = "")]
        region: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReplicasCommand {
    /// List the control-plane replicas: alive, draining or dead, the
    /// leader, and how many agents each holds.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegionsCommand {
    /// List regions with their online agents and connectors.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl AgentsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let AgentsCommand::List { region, client } = self;
        let answer = client
            .agents()
            .await?
            .list_agents(v1::ListAgentsRequest { region })
            .await;
        print_answer(answer, render::agents, client.output)
    }
}

impl ReplicasCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let ReplicasCommand::List { client } = self;
        let answer = client
            .agents()
            .await?
            .list_replicas(v1::ListReplicasRequest {})
            .await;
        print_answer(answer, render::replicas, client.output)
    }
}

impl RegionsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let RegionsCommand::List { client } = self;
        let answer = client
            .connectors()
            .await?
            .list_regions(v1::ListRegionsRequest {})
            .await;
        print_answer(answer, render::regions, client.output)
    }
}
