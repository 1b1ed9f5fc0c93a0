//! `agent`: the reference agent's flags, turned into its configuration.

use super::client::{TlsArgs, TokenArgs};
use super::signals::shutdown_signal;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(mut_arg("token", |token| token.help(
    "Bearer token of an `agent` principal, when the control plane has an auth file"
)))]
pub struct AgentArgs {
    /// The control plane's gRPC address; several, comma-separated, for
    /// several replicas (the agent moves to the next one when its stream
    /// ends).
    #[arg(
        long,
        env = "CONNECTOR_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub control_plane: Vec<String>,

    /// The region this agent serves; it receives only this region's commands.
    #[arg(long, env = "AGENT_REGION")]
    pub region: String,

    /// This server's IP address, reported as its connectors' server_ip.
    #[arg(long, env = "AGENT_SERVER_IP")]
    pub server_ip: String,

    /// Stable id of this agent (one per server).
    #[arg(long, env = "AGENT_ID")]
    pub agent_id: String,

    /// What runs the connectors: `simulated` (connectors whose checkpoints
    /// advance over a store of --store-retention, reporting --latency),
    /// `process` (each connector a supervised process, as
    /// --connectors-file says) or `postgres` (each connector a PostgreSQL
    /// logical-replication subscription, as --connectors-file says).
    #[arg(long, env = "AGENT_DRIVER", value_enum, default_value = "simulated")]
    pub driver: DriverKind,

    /// `--driver process`: the TOML file naming, per connector id, its
    /// command line, environment, working directory, stop signal, grace
    /// period, readiness time and no-retry exit codes. `--driver postgres`:
    /// per connector id, its destination and subscription.
    #[arg(
        long,
        env = "AGENT_CONNECTORS_FILE",
        required_if_eq_any([("driver", "process"), ("driver", "postgres")])
    )]
    pub connectors_file: Option<std::path::PathBuf>,

    /// Replication lag the simulated connectors report, for example 2s or 15m
    /// (to rehearse a high-latency incident).
    #[arg(long, env = "AGENT_LATENCY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub latency: Duration,

    /// How far back the simulated stores hold change data: the limit of a
    /// pull-back.
    #[arg(long, env = "AGENT_STORE_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub store_retention: Duration,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The drivers the reference agent has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// Simulated connectors (the default, what `serve --demo` runs).
    Simulated,
    /// Each connector a supervised child process.
    Process,
    /// Each connector a PostgreSQL logical-replication subscription.
    Postgres,
}

/// Runs the reference agent until SIGTERM or SIGINT.
pub(super) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = crate::agent::AgentConfig {
        control_plane: args.control_plane,
        agent_id: args.agent_id,
        region: args.region,
        server_ip: args.server_ip,
        bearer: args.token.bearer()?,
        tls: args.tls.config()?,
    };
    match args.driver {
        DriverKind::Simulated => {
            let driver = crate::agent::Simulated::new(args.latency, args.store_retention);
            crate::agent::run(config, driver, shutdown_signal()).await
        }
        DriverKind::Process => {
            let file = args
                .connectors_file
                .expect("clap requires --connectors-file with --driver process");
            let driver = crate::agent::Processes::from_file(&file)?;
            // Each supervised process holds two pipes open here.
            crate::connections::raise_open_file_limit();
            crate::agent::run(config, driver, shutdown_signal()).await
        }
        DriverKind::Postgres => {
            let file = args
                .connectors_file
                .expect("clap requires --connectors-file with --driver postgres");
            let driver =
                crate::agent::Subscriptions::from_file(&file, crate::agent::postgres::DEFAULT_POLL)
                    .await?;
            crate::agent::run(config, driver, shutdown_signal()).await
        }
    }
}
