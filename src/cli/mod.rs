//! Command-line interface: every flag also reads an environment variable.
//! `serve`, `migrate` and `agent` run the system; `connectors`, `agents`,
//! `regions` and `replicas` are the people's CLI, talking to a running
//! control plane: tables for people, `-o json` (the proto JSON mapping) for
//! scripts, and a failed call prints its reason and message and exits with
//! a code that says what kind of failure it was (see `failure`).
//!
//! The files: `serve` (with `database` and `signals`) and `agent` run the
//! system. `connectors` hands each verb to its file: `inspect` (list, get,
//! history), `watch`, `start_pause` (one path for both verbs; `batch` for
//! their form without an id), `mark_stopped`, `restart_policy`; `topology`
//! lists agents, replicas and regions. They share `client` (address, token,
//! TLS, the connected clients), `filters` (which connectors), `failure`
//! (exit codes) and `render` (tables and JSON).

mod agent;
mod batch;
mod client;
mod conformance;
mod connectors;
mod database;
mod failure;
mod filters;
mod inspect;
mod mark_stopped;
mod render;
mod restart_policy;
mod serve;
mod signals;
mod start_pause;
mod topology;
mod watch;

pub use agent::AgentArgs;
pub use database::DatabaseArgs;
pub use failure::Failure;
pub use serve::{ConsoleListen, ServeArgs};

use clap::{Parser, Subcommand};

/// Control plane for the connectors of a data-replication system: list,
/// start and pause connectors over gRPC.
#[derive(Debug, Parser)]
#[command(name = "connector-control", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations, then serve the gRPC API until
    /// SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Run the reference agent: connects to the control plane and runs
    /// simulated connectors for one server of one region.
    Agent(AgentArgs),
    /// Check an agent (any language) against the protocol: serve Connect,
    /// wait for it, script a control plane, print a table of checks; exit
    /// non-zero if any failed.
    AgentConformance(conformance::ConformanceArgs),
    /// Find, inspect, start and pause connectors.
    #[command(subcommand)]
    Connectors(connectors::ConnectorsCommand),
    /// List the region agents.
    #[command(subcommand)]
    Agents(topology::AgentsCommand),
    /// List the regions.
    #[command(subcommand)]
    Regions(topology::RegionsCommand),
    /// List the control-plane replicas.
    #[command(subcommand)]
    Replicas(topology::ReplicasCommand),
}

impl Cli {
    /// What this invocation logs and exports. The log level when RUST_LOG
    /// is unset: services log their work, the people's CLI only its
    /// warnings.
    pub fn telemetry_options(&self) -> crate::telemetry::Options<'static> {
        let default_level = match self.command {
            Command::Serve(_) | Command::Migrate(_) | Command::Agent(_) => "info",
            _ => "warn",
        };
        crate::telemetry::Options {
            default_level,
            service_name: match self.command {
                Command::Agent(_) => "connector-control-agent",
                _ => "connector-control",
            },
            prometheus: matches!(&self.command, Command::Serve(args) if args.metrics_listen.is_some()),
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Connectors(command) => command.run().await,
            Command::Agents(command) => command.run().await,
            Command::Regions(command) => command.run().await,
            Command::Replicas(command) => command.run().await,
            Command::Migrate(database) => {
                database.connect().await?;
                Ok(())
            }
            Command::Agent(args) => agent::run(args).await,
            Command::AgentConformance(args) => conformance::run(args).await,
            Command::Serve(args) => serve::run(args).await,
        }
    }
}
