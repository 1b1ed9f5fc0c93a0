//! Command-line interface: every flag also reads an environment variable.

use crate::server::{self, ServeOptions};
use crate::store::PgStore;
use crate::store::postgres::DEFAULT_POOL_SIZE;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::info;

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
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, for example postgres://postgres@127.0.0.1:5432/connector_control.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Maximum database connections of this process.
    #[arg(long, env = "CONNECTOR_CONTROL_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE)]
    pub pool_size: usize,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "CONNECTOR_CONTROL_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Longest a `wait: true` Start or Pause is held when the caller sets no
    /// deadline, for example 30s or 2m.
    #[arg(long, env = "CONNECTOR_CONTROL_MAX_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,

    /// How often agents send heartbeats, for example 10s. An agent that
    /// misses four is offline and its connectors show UNKNOWN.
    #[arg(long, env = "CONNECTOR_CONTROL_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
}

impl DatabaseArgs {
    async fn connect(&self) -> anyhow::Result<PgStore> {
        let Some(url) = self.database_url.as_deref() else {
            bail!(
                "no database configured: pass --database-url or set DATABASE_URL \
                 (for example postgres://postgres@127.0.0.1:5432/postgres)"
            );
        };
        if self.pool_size == 0 {
            bail!("--pool-size must be at least 1");
        }
        let store = PgStore::connect(url, self.pool_size).await?;
        let applied = store.migrate().await?;
        info!(database = %store.redacted_url(), applied, "database ready");
        Ok(store)
    }
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Migrate(database) => {
                database.connect().await?;
                Ok(())
            }
            Command::Serve(args) => {
                let store = args.database.connect().await?;
                let listener = TcpListener::bind(args.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", args.listen))?;
                if args.heartbeat_interval.is_zero() {
                    bail!("--heartbeat-interval must be longer than zero");
                }
                let options = ServeOptions {
                    max_wait: args.max_wait,
                    heartbeat_interval: args.heartbeat_interval,
                };
                server::serve(listener, store, options, shutdown_signal()).await
            }
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
        _ = terminate.recv() => info!("received SIGTERM"),
    }
}
