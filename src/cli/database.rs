//! The database flags of `serve` and `migrate`: PostgreSQL (optionally
//! behind a transaction-pooling proxy) or the embedded store, migrated.

use crate::store::postgres::DEFAULT_POOL_SIZE;
use crate::store::{PgStore, Pooling, SqliteStore};
use anyhow::bail;
use clap::Args;
use tracing::info;

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, for example postgres://postgres@127.0.0.1:5432/connector_control.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Maximum database connections of this process.
    #[arg(long, env = "CONNECTOR_CONTROL_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE)]
    pub pool_size: usize,

    /// The database URL leads to a transaction-pooling proxy (PgBouncer
    /// with pool_mode = transaction): statements run unnamed instead of
    /// prepared and cached per connection, nothing relies on session state,
    /// and replicas wake each other by polling (implies --poll-only: LISTEN
    /// needs a session of its own).
    #[arg(long, env = "CONNECTOR_CONTROL_TRANSACTION_POOLING")]
    pub transaction_pooling: bool,

    /// Without --database-url: the embedded store's file (SQLite, one
    /// process at a time).
    #[arg(
        long,
        env = "CONNECTOR_CONTROL_DATA_FILE",
        default_value = "connector-control.db"
    )]
    pub data_file: std::path::PathBuf,
}

/// The store a command runs on.
pub(super) enum Backend {
    Postgres(Box<PgStore>),
    Embedded(SqliteStore),
}

impl DatabaseArgs {
    /// PostgreSQL when a URL is given, else the embedded store; migrated.
    pub(super) async fn connect(&self) -> anyhow::Result<Backend> {
        let Some(url) = self.database_url.as_deref() else {
            let store = SqliteStore::open(&self.data_file)?;
            info!(
                store = "embedded",
                file = %store.path().display(),
                "using the embedded store (pass --database-url for PostgreSQL)"
            );
            return Ok(Backend::Embedded(store));
        };
        if self.pool_size == 0 {
            bail!("--pool-size must be at least 1");
        }
        let pooling = if self.transaction_pooling {
            Pooling::Transaction
        } else {
            Pooling::Session
        };
        let store = PgStore::connect_with(url, self.pool_size, pooling).await?;
        let applied = store.migrate().await?;
        info!(
            store = "postgres",
            database = %store.redacted_url(),
            applied,
            transaction_pooling = self.transaction_pooling,
            "database ready"
        );
        Ok(Backend::Postgres(Box::new(store)))
    }
}
