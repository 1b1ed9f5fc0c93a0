//! The PostgreSQL backend: a deadpool pool of tokio-postgres connections,
//! cached prepared statements, one transaction per change, migrations
//! embedded with refinery. This file opens and migrates; each store trait
//! has the file of its name (the embedded backend's files are the same),
//! SQL beside the code that runs it: `connectors.rs` (create, read;
//! `transitions.rs` issues commands), `batches.rs`, `search.rs`, `audit.rs`,
//! `sessions.rs` (sessions, statuses, heartbeats, fencing), `dispatch.rs`
//! (claim, release, complete), `leader.rs` (replicas, lease, sweep,
//! wake-ups; `listen.rs` the listening connection), `feed.rs`, `reads.rs`,
//! `restarts.rs`, `rows.rs` (row mapping), `conn.rs` (how statements run),
//! `error.rs` (driver errors as store errors).

mod audit;
mod batches;
mod conn;
mod connectors;
mod dispatch;
mod error;
mod feed;
mod leader;
mod listen;
mod reads;
mod restarts;
mod rows;
mod search;
mod sessions;
mod transitions;

pub use restarts::candidates_sql as restart_candidates_sql;
/// The columns the store reads, for the benchmark harness's raw-SQL
/// baselines (the same statements without the service around them).
#[doc(hidden)]
pub use rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS};
pub use search::EXACT_COUNT_LIMIT;
#[doc(hidden)]
pub use transitions::sql as transition_sql;

use super::{PoolStatus, Store, StoreError};
use anyhow::Context;
use conn::Db;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::NoTls;

/// `<host name>-<8 random hex digits>`: readable in logs and in the
/// `replicas` table, unique across restarts.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "replica".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

refinery::embed_migrations!("src/store/postgres/migrations");

/// Default pool size. Each RPC holds a connection for one short transaction,
/// so a small pool serves many concurrent calls; several replicas must stay
/// well under PostgreSQL's default `max_connections` of 100.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long to wait for a connection (new or from the pool) before reporting
/// the database unavailable instead of hanging the call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long sent data may stay unacknowledged before the connection is
/// given up (TCP_USER_TIMEOUT).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// How many more times a transaction that lost a deadlock or
/// serialization conflict is run before `Contention` is reported (as
/// UNAVAILABLE, with a retry delay).
const CONTENTION_RETRIES: u64 = 3;

/// Arbitrary constant naming the advisory lock that serialises migrations
/// when several replicas start at once.
const MIGRATION_LOCK: i64 = 0x636f_6e6e_6374_726c;

/// How the database URL reaches PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooling {
    /// Each connection is one server session: straight to PostgreSQL, or
    /// a pooler in session mode. Statements are prepared and cached per
    /// connection; the listener LISTENs.
    #[default]
    Session,
    /// Through a transaction-pooling proxy (PgBouncer `pool_mode =
    /// transaction`): consecutive transactions of one connection may run on
    /// different server sessions, so statements run unnamed and nothing
    /// relies on session state (LISTEN cannot work: the caller polls).
    Transaction,
}

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    redacted_url: String,
    /// This process among the replicas sharing the database.
    replica_id: std::sync::Arc<str>,
    /// Who holds the leader lease when this process does:
    /// `<replica id>/<random>`, unique per process, so that a restarted
    /// replica (or two started with one id by mistake) never shares a term.
    lease_holder: std::sync::Arc<str>,
    /// Connections made before this instant are not handed out again: the
    /// server they reached stopped taking writes (a demoted primary, a
    /// standby). New ones go through `target_session_attrs` again.
    purged_before: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Under transaction pooling: the statements' parameter types, for
    /// running them unnamed (`conn.rs`).
    param_types: Option<conn::ParamTypes>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.redacted_url)
            .finish()
    }
}

impl PgStore {
    /// Parses `url` and checks that the database answers. Errors name the
    /// URL with its password hidden.
    pub async fn connect(url: &str, pool_size: usize) -> anyhow::Result<Self> {
        Self::connect_with(url, pool_size, Pooling::Session).await
    }

    /// As `connect`, for a URL that reaches PostgreSQL as `pooling` says.
    pub async fn connect_with(
        url: &str,
        pool_size: usize,
        pooling: Pooling,
    ) -> anyhow::Result<Self> {
        // The URL itself is never shown: it may hold a password in places
        // no redaction reliably finds (query string, odd characters).
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            anyhow::anyhow!("invalid database URL (not shown: it may contain a password): {e}")
        })?;
        let redacted_url = describe(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A connection whose peer vanished (host down, network cut, no RST)
        // fails within this instead of hanging a call for the kernel's
        // default of about 15 minutes.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        config.application_name("connector-control");
        // Searches bind their LIKE patterns as parameters; a cached generic
        // plan cannot use the prefix and trigram indexes for an unknown
        // pattern and scans the table. Planning each execution with its real
        // values costs well under a millisecond and keeps searches indexed.
        // Unnamed statements (transaction pooling) are planned with their
        // values anyway; and a pooler may refuse the start-up option.
        if pooling == Pooling::Session {
            let options = match config.get_options() {
                Some(existing) => format!("{existing} -c plan_cache_mode=force_custom_plan"),
                None => "-c plan_cache_mode=force_custom_plan".to_owned(),
            };
            config.options(&options);
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let purged_before = std::sync::Arc::new(std::sync::Mutex::new(None));
        let purged = std::sync::Arc::clone(&purged_before);
        let refusals_seen = std::sync::atomic::AtomicU64::new(error::read_only_refusals());
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .pre_recycle(deadpool_postgres::Hook::sync_fn(move |_, metrics| {
                let mut purged = purged.lock().unwrap();
                // A statement was refused for want of a writable server
                // since the last look: every connection made until now may
                // lead there.
                let refusals = error::read_only_refusals();
                if refusals_seen.swap(refusals, std::sync::atomic::Ordering::Relaxed) != refusals {
                    *purged = Some(std::time::Instant::now());
                }
                match *purged {
                    Some(before) if metrics.created < before => Err(
                        deadpool_postgres::HookError::Message("its server took no writes".into()),
                    ),
                    _ => Ok(()),
                }
            }))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("building the connection pool")?;
        let param_types =
            (pooling == Pooling::Transaction).then(|| conn::ParamTypes::new(config.clone()));
        let store = Self {
            pool,
            config,
            redacted_url,
            replica_id: "".into(),
            lease_holder: "".into(),
            purged_before,
            param_types,
        }
        .with_replica_id(&default_replica_id());
        // Probe with a plain connection: its errors say what went wrong
        // (refused, unknown database, authentication) without pool wording.
        let (probe, connection) = store
            .config
            .connect(NoTls)
            .await
            .map_err(|e| {
                let mut message = error_chain(&e);
                // PgBouncer refuses the start-up option that sets the plan
                // cache mode, which a session of our own would keep.
                if message.contains("unsupported startup parameter") {
                    message.push_str(
                        " (a connection pooler such as PgBouncer? In transaction pooling mode \
                         pass --transaction-pooling)",
                    );
                }
                anyhow::anyhow!(message)
            })
            .with_context(|| format!("cannot connect to database {}", store.redacted_url))?;
        drop(probe);
        let _ = connection.await;
        Ok(store)
    }

    /// Names this process among the replicas (default: host name and a
    /// random suffix).
    pub fn with_replica_id(mut self, id: &str) -> Self {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        self.lease_holder = format!("{id}/{}", &instance[..8]).into();
        self.replica_id = id.into();
        self
    }

    /// The URL this store uses, password hidden: safe to log.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// Applies the embedded forward-only migrations not yet applied. Safe to
    /// run from several replicas at once: a transaction on a connection of
    /// its own holds a transaction-level advisory lock while another
    /// connection migrates (a session-level lock would stay on whichever
    /// server session a transaction-pooling proxy ran it on); the others
    /// try again every 100 ms.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let context = || format!("migrating database {}", self.redacted_url);
        let connect = || async {
            let (client, connection) = self
                .config
                .connect(NoTls)
                .await
                .map_err(|e| anyhow::anyhow!(error_chain(&e)))
                .with_context(context)?;
            anyhow::Ok((client, tokio::spawn(connection)))
        };
        let (mut lock, lock_driver) = connect().await?;
        // Tried, not waited for: a replica waiting here holds no server
        // session a pooler could be short of. Held while idle in its
        // transaction for as long as the migrations take.
        let held = loop {
            let held = lock.transaction().await.with_context(context)?;
            let answer = held
                .simple_query(&format!(
                    "SET LOCAL idle_in_transaction_session_timeout = 0;
                     SELECT pg_try_advisory_xact_lock({MIGRATION_LOCK})"
                ))
                .await
                .with_context(context)?;
            let taken = answer.iter().any(|message| {
                matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
            });
            if taken {
                break held;
            }
            held.rollback().await.with_context(context)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (mut client, driver) = connect().await?;
        let report = migrations::runner()
            .set_abort_divergent(true)
            .run_async(&mut client)
            .await
            .with_context(context)?;
        drop(client);
        let _ = driver.await;
        held.commit().await.with_context(context)?;
        drop(lock);
        let _ = lock_driver.await;
        Ok(report.applied_migrations().len())
    }

    /// Runs `transaction` again, up to `CONTENTION_RETRIES` more times,
    /// when it lost a deadlock or serialization conflict: it was rolled
    /// back, so running it again is safe. Two transactions that take the
    /// same rows in different orders (a start locks its connector, then its
    /// commands; the liveness sweep an agent's commands, then its
    /// connectors) can deadlock; PostgreSQL aborts one of them.
    pub(super) async fn retrying<T, F, Fut>(&self, mut transaction: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match transaction().await {
                Err(error @ StoreError::Contention(_)) if attempt < CONTENTION_RETRIES => {
                    attempt += 1;
                    tracing::debug!(%error, attempt, "transaction conflicted; running it again");
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Drops every connection made until now: idle ones at once, those in
    /// use when they come back.
    fn purge(&self) {
        let now = std::time::Instant::now();
        *self.purged_before.lock().unwrap() = Some(now);
        let removed = self
            .pool
            .retain(|_, metrics| metrics.created >= now)
            .removed
            .len();
        tracing::warn!(
            removed,
            database = %self.redacted_url,
            "the database server takes no writes: its connections are dropped and made again"
        );
    }

    async fn client(&self) -> Result<conn::Conn, StoreError> {
        let inner = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        Ok(conn::Conn {
            inner,
            types: self.param_types.clone(),
        })
    }

    /// Runs one statement on a pooled connection, in a transaction of its
    /// own.
    async fn run(&self, sql: &str, params: conn::Params<'_>) -> Result<(), StoreError> {
        self.client().await?.execute(sql, params).await?;
        Ok(())
    }
}

impl Store for PgStore {
    /// Answers only when the server takes writes: a connection that
    /// reaches a read-only server (a standby, or a primary demoted under
    /// it) fails the ping, and every connection made until now is dropped
    /// from the pool, so the next ones find the current primary.
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let rows = client.simple_query("SHOW transaction_read_only").await?;
        let read_only = rows.iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
        });
        if read_only {
            drop(client);
            self.purge();
            return Err(StoreError::Unavailable(
                "the database server takes no writes (a standby, or a demoted primary); \
                 reconnecting to the primary"
                    .into(),
            ));
        }
        Ok(())
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        let status = self.pool.status();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Some(PoolStatus {
            max: count(status.max_size),
            in_use: count(status.size.saturating_sub(status.available)),
            idle: count(status.available),
            waiting: count(status.waiting),
        })
    }
}

/// A loggable form of the connection settings, `postgres://user:***@host:port/db`,
/// built from the parsed configuration so that no password can slip through.
pub fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let user = config.get_user().unwrap_or("");
    let password = if config.get_password().is_some() {
        ":***"
    } else {
        ""
    };
    let at = if user.is_empty() && password.is_empty() {
        ""
    } else {
        "@"
    };
    let ports = config.get_ports();
    let hosts = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let dbname = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{password}{at}{hosts}/{dbname}")
}

/// An error and its causes on one line, skipping wrapper messages that only
/// repeat their cause ("db error: FATAL: database \"x\" does not exist").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.retain(|part| part != "db error");
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(url: &str) -> String {
        describe(&url.parse().unwrap())
    }

    #[test]
    fn passwords_are_never_described() {
        assert_eq!(
            described("postgres://app:s3cret@db:5432/cc?sslmode=disable"),
            "postgres://app:***@db:5432/cc"
        );
        assert_eq!(
            described("postgres://app@db/cc"),
            "postgres://app@db:5432/cc"
        );
        assert_eq!(
            described("postgres://app:pa%2Fss@db/cc"),
            "postgres://app:***@db:5432/cc"
        );
        assert_eq!(
            described("postgres://db/cc?user=u&password=x"),
            "postgres://u:***@db:5432/cc"
        );
        assert_eq!(
            described("host=db user=app password='a b' dbname=cc"),
            "postgres://app:***@db/cc"
        );
        assert_eq!(
            described("postgres://app:x@db1:5433,db2/cc?target_session_attrs=read-write"),
            "postgres://app:***@db1:5433,db2:5432/cc"
        );
    }
}
