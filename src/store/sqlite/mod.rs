//! The embedded backend: one SQLite file (bundled SQLite, WAL journal), one
//! writer. For a control plane that needs no database server: a laptop, a
//! demo, a small single-replica deployment. A second process on the same
//! file is refused: an exclusive `flock` on the database file itself, so
//! that it holds for the file (its inode), whatever path, symbolic or hard
//! link reaches it.
//!
//! Every operation runs on a blocking thread holding the one connection, so
//! operations are serialised; the domain rules are the same as PostgreSQL's
//! (`crate::domain`), only the SQL differs. The files are PostgreSQL's:
//! one per store trait.

mod audit;
mod batches;
mod connectors;
mod dispatch;
mod error;
mod feed;
mod leader;
mod reads;
mod restarts;
mod rows;
mod search;
mod sessions;

use super::{Store, StoreError};
use anyhow::Context;
use chrono::{DateTime, Utc};
use error::translate;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

refinery::embed_migrations!("src/store/sqlite/migrations");

/// The replica id of the embedded store's one process.
pub(super) const EMBEDDED: &str = "embedded";

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    path: PathBuf,
    opened: DateTime<Utc>,
}

/// The connection and the lock, released in this order: the lock's file
/// descriptor is closed only after SQLite closed its own (closing another
/// descriptor of the file while SQLite's is open would drop SQLite's POSIX
/// locks).
struct Inner {
    connection: Mutex<Connection>,
    /// Held for the store's lifetime: the single-replica guarantee.
    _lock: std::fs::File,
    /// The lock earlier versions took (`<file>.lock`), held too, so that
    /// an older binary cannot open the file during an upgrade. To be
    /// dropped once no such binary runs.
    _legacy_lock: std::fs::File,
}

/// The lock earlier versions took: `<canonical path>.lock`.
fn legacy_lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let canonical = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let lock_path = PathBuf::from(format!("{}.lock", canonical.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by an older connector-control process (it holds {}); stop it first",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Now, to the microsecond, as stored.
pub(super) fn now() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and applies its
    /// migrations. Fails if another process holds the file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        // The lock is on the database file itself (flock, which SQLite's
        // own fcntl locks do not interact with on Linux): a second server
        // reaching it through another path, a symbolic or a hard link, is
        // refused, instead of opening it with a WAL of its own.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot create the embedded store {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "{} is in use by another connector-control process; the embedded store serves \
                 one process at a time (use PostgreSQL, --database-url, for several replicas)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        let legacy = legacy_lock(path)?;
        let mut connection = Connection::open(path)
            .with_context(|| format!("cannot open the embedded store {}", path.display()))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .with_context(|| format!("configuring {}", path.display()))?;
        // The server filter compares addresses, not text (10.2.1.0/24
        // must not pick 10.2.13.9): by a key in address order.
        connection
            .create_scalar_function(
                "server_ip_key",
                1,
                rusqlite::functions::FunctionFlags::SQLITE_UTF8
                    | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
                |context| {
                    let ip: String = context.get(0)?;
                    Ok(crate::domain::server_net::key_of(&ip))
                },
            )
            .with_context(|| format!("configuring {}", path.display()))?;
        migrations::runner()
            .set_abort_divergent(true)
            .run(&mut connection)
            .with_context(|| format!("migrating {}", path.display()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection: Mutex::new(connection),
                _lock: lock,
                _legacy_lock: legacy,
            }),
            path: path.to_owned(),
            opened: now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on a blocking thread with the connection.
    pub(super) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A panic mid-operation rolled its transaction back when the
            // transaction was dropped: the connection is still sound.
            let mut connection = inner
                .connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|e| StoreError::Internal(e.into()))?
    }

    /// Runs `work` as `with` does, in an IMMEDIATE transaction (the write
    /// lock taken at its start) that is committed when `work` succeeds and
    /// rolled back when it fails.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            let done = work(&tx)?;
            tx.commit().map_err(translate)?;
            Ok(done)
        })
        .await
    }
}

impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(translate)
        })
        .await
    }
}
