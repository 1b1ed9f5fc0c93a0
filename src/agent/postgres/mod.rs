//! `--driver postgres`: each connector is a native PostgreSQL logical-
//! replication subscription on its destination (`spec.rs` says which).
//! Start is `ALTER SUBSCRIPTION ... ENABLE`, done once its apply worker
//! runs; pause is `DISABLE`, done once the worker has exited. Each writes,
//! in the same transaction, the start or pause and its generation in the
//! subscription's comment, so that an agent restarted (even by kill -9)
//! reports what PostgreSQL runs at the generation it applied.
//!
//! What it observes comes from PostgreSQL (`status.rs`): the destination's
//! `pg_subscription`, `pg_stat_subscription` and
//! `pg_stat_subscription_stats`, and the publisher's replication slot and
//! walsender (`pg_stat_replication.replay_lag`). Each connector is looked
//! at by a task of its own, so that an unreachable destination holds up no
//! other connector.
//!
//! Native subscriptions cannot replay from a time: the driver says so
//! (`pull_back: false`), and the control plane refuses pull-backs at the
//! call. A start resumes from the subscription's replication slot, where it
//! stopped: nothing is skipped and nothing applied twice.
//!
//! The agent stopping does not stop the subscriptions: they are
//! PostgreSQL's, and replicate on without it.

pub mod spec;
mod status;

use super::driver::{Capabilities, Driver, Observation, Refusal, Start};
use chrono::Utc;
use spec::{SubscriptionSpec, describe};
use status::{Destination, Lag, Mark, Memory};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often each subscription is looked at.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole of a connection's making (TCP, start-up, authentication).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that vanished (no RST) fails a query within this, not the
/// kernel's 15 minutes.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// No statement of the driver waits longer (on a lock an operator's open
/// transaction holds on the subscription, say).
const SESSION_OPTIONS: &str = "-c statement_timeout=10s -c lock_timeout=5s";
/// How long a pause waits for the publisher's lag before it disables.
const LAG_BEFORE_PAUSE: Duration = Duration::from_secs(2);
/// How often a start or pause looks for the apply worker.
const SETTLE_POLL: Duration = Duration::from_millis(100);

const DESTINATION: &str = "
    SELECT s.subenabled,
           EXISTS (SELECT 1 FROM pg_stat_subscription w
                   WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL),
           COALESCE((SELECT t.apply_error_count + t.sync_error_count
                     FROM pg_stat_subscription_stats t WHERE t.subid = s.oid), 0),
           obj_description(s.oid, 'pg_subscription'),
           s.subslotname::text
    FROM pg_subscription s
    WHERE s.subname = $1
      AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())";

const CONNINFO: &str = "
    SELECT subconninfo FROM pg_subscription
    WHERE subname = $1
      AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())";

const LAG: &str = "
    SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::int8,
           EXTRACT(epoch FROM r.replay_lag)::float8,
           r.pid IS NOT NULL,
           r.state IS NOT NULL
    FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
    WHERE s.slot_name = $1";

/// The driver: one link per configured connector.
pub struct Subscriptions {
    links: BTreeMap<String, Arc<Link>>,
    stop: CancellationToken,
}

impl Subscriptions {
    /// Looks at every subscription once (so that hello says what runs),
    /// then keeps looking every `poll`.
    pub async fn new(specs: BTreeMap<String, SubscriptionSpec>, poll: Duration) -> Self {
        let links: BTreeMap<String, Arc<Link>> = specs
            .into_iter()
            .map(|(id, spec)| {
                let link = Link {
                    id: id.clone(),
                    observation: Mutex::new((0, Observation::stopped(&id))),
                    looks: AtomicU64::new(0),
                    lag: Mutex::new(Err("not read yet".to_owned())),
                    spec,
                    destination: tokio::sync::Mutex::default(),
                    publisher: tokio::sync::Mutex::default(),
                    memory: Mutex::default(),
                };
                (id, Arc::new(link))
            })
            .collect();
        futures_util::future::join_all(links.values().map(|link| link.refresh(true))).await;
        let stop = CancellationToken::new();
        for link in links.values() {
            let (link, stop) = (link.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(poll) => link.refresh(true).await,
                    }
                }
            });
        }
        Subscriptions { links, stop }
    }

    /// From a connectors file (`spec.rs`).
    pub async fn from_file(path: &std::path::Path, poll: Duration) -> anyhow::Result<Self> {
        Ok(Self::new(spec::load(path)?, poll).await)
    }

    fn link(&self, connector_id: &str) -> Result<&Arc<Link>, Refusal> {
        self.links.get(connector_id).ok_or_else(|| {
            Refusal::new(
                "CONNECTOR_NOT_CONFIGURED",
                format!(
                    "connector {connector_id} is not in this agent's connectors file: add its \
                     destination and subscription there and restart the agent"
                ),
            )
            .not_retriable()
        })
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Driver for Subscriptions {
    fn name(&self) -> &str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { pull_back: false }
    }

    async fn start(&self, start: Start) -> Result<(), Refusal> {
        // The checkpoint is the slot's: where the subscription stopped.
        self.link(&start.connector_id)?
            .switch(true, start.generation)
            .await
    }

    async fn pause(&self, connector_id: &str, generation: i64) -> Result<(), Refusal> {
        self.link(connector_id)?.switch(false, generation).await
    }

    fn observe(&self) -> Vec<Observation> {
        self.links
            .values()
            .map(|link| link.observation.lock().unwrap().1.clone())
            .collect()
    }

    fn observe_connector(&self, connector_id: &str) -> Option<Observation> {
        let link = self.links.get(connector_id)?;
        Some(link.observation.lock().unwrap().1.clone())
    }
}

/// One connector: its subscription, the connections it is seen through,
/// and what was last seen.
struct Link {
    id: String,
    spec: SubscriptionSpec,
    destination: tokio::sync::Mutex<Option<Arc<Client>>>,
    publisher: tokio::sync::Mutex<Option<Arc<Client>>>,
    memory: Mutex<Memory>,
    /// The publisher's lag as last read (a start or pause does not wait for
    /// the publisher).
    lag: Mutex<Result<Lag, String>>,
    /// Looks taken so far: a look stores what it saw only if no later one
    /// stored already (the poller and a start race).
    looks: AtomicU64,
    /// The newest look stored, and what it saw.
    observation: Mutex<(u64, Observation)>,
}

impl Link {
    fn subscription(&self) -> &str {
        &self.spec.subscription
    }

    fn where_(&self) -> String {
        format!(
            "subscription {} on {}",
            self.subscription(),
            describe(&self.spec.destination)
        )
    }

    /// A connection to the destination, made again if it broke.
    async fn destination(&self) -> Result<Arc<Client>, String> {
        let mut held = self.destination.lock().await;
        if let Some(client) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = connect(&self.spec.destination).await.map_err(|error| {
            format!(
                "cannot connect to the destination {}: {error}",
                describe(&self.spec.destination)
            )
        })?;
        *held = Some(client.clone());
        Ok(client)
    }

    /// A connection to the publisher: as the connectors file says, else
    /// the subscription's own connection string.
    async fn publisher(&self, destination: &Client) -> Result<Arc<Client>, String> {
        let mut held = self.publisher.lock().await;
        if let Some(client) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let config = match &self.spec.publisher {
            Some(config) => config.clone(),
            None => {
                let row = destination
                    .query_one(CONNINFO, &[&self.subscription()])
                    .await
                    .map_err(|error| {
                        format!(
                            "reading the subscription's connection string needs a superuser \
                             ({}): name the publisher in the connectors file",
                            pg_error(&error)
                        )
                    })?;
                let conninfo: String = row.get(0);
                conninfo
                    .parse::<Config>()
                    .map_err(|_| "the subscription's connection string cannot be read here: name the publisher in the connectors file".to_owned())?
            }
        };
        let client = connect(&config).await.map_err(|error| {
            format!(
                "cannot connect to the publisher {}: {error}",
                describe(&config)
            )
        })?;
        *held = Some(client.clone());
        Ok(client)
    }

    /// The subscription as the destination says (None: it does not exist).
    async fn look(&self, client: &Client) -> Result<Option<Destination>, String> {
        let row = client
            .query_opt(DESTINATION, &[&self.subscription()])
            .await
            .map_err(|error| format!("reading {}: {}", self.where_(), pg_error(&error)))?;
        Ok(row.map(|row| Destination {
            enabled: row.get(0),
            worker: row.get(1),
            errors: row.get(2),
            mark: row
                .get::<_, Option<String>>(3)
                .and_then(|comment| Mark::parse(&comment, &self.id)),
            comment: row.get(3),
            slot: row.get(4),
        }))
    }

    async fn lag(&self, destination: &Client, slot: Option<&str>) -> Result<Lag, String> {
        let slot = slot.ok_or("the subscription has no replication slot")?;
        let publisher = self.publisher(destination).await?;
        let row = publisher
            .query_opt(LAG, &[&slot])
            .await
            .map_err(|error| format!("reading the publisher's slot {slot}: {}", pg_error(&error)))?
            .ok_or_else(|| format!("the publisher has no replication slot {slot}"))?;
        let (streaming, readable): (bool, bool) = (row.get(2), row.get(3));
        if streaming && !readable {
            return Err(format!(
                "the publisher's user cannot read the lag in pg_stat_replication (grant it \
                 pg_read_all_stats) for slot {slot}"
            ));
        }
        Ok(Lag {
            behind_bytes: row.get::<_, Option<i64>>(0).unwrap_or(0),
            replay_lag: row
                .get::<_, Option<f64>>(1)
                .map(|seconds| Duration::from_secs_f64(seconds.max(0.0))),
            streaming,
        })
    }

    /// Looks at the subscription and keeps what it saw; at the publisher's
    /// lag too with `publisher`, else the lag last read counts.
    async fn refresh(&self, publisher: bool) {
        let look = self.looks.fetch_add(1, Ordering::SeqCst) + 1;
        let mut missing = false;
        let (destination, lag) = match self.destination().await {
            Err(why) => (Err(why), Err(String::new())),
            Ok(client) => match self.look(&client).await {
                Err(why) => (Err(why), Err(String::new())),
                Ok(None) => {
                    missing = true;
                    (Err(self.missing()), Err(String::new()))
                }
                Ok(Some(d)) if publisher => {
                    let lag = self.lag(&client, d.slot.as_deref()).await;
                    *self.lag.lock().unwrap() = lag.clone();
                    (Ok(d), lag)
                }
                Ok(Some(d)) => (Ok(d), self.lag.lock().unwrap().clone()),
            },
        };
        let mut observation = {
            let mut memory = self.memory.lock().unwrap();
            status::observe(
                &self.id,
                self.subscription(),
                &destination,
                &lag,
                &mut memory,
                Utc::now(),
            )
        };
        if missing {
            observation.retriable = Some(false);
        }
        let mut stored = self.observation.lock().unwrap();
        if look > stored.0 {
            *stored = (look, observation);
        }
    }

    fn missing(&self) -> String {
        format!(
            "{} does not exist: create it (CREATE SUBSCRIPTION ... WITH (disable_on_error = \
             true)), or correct the connectors file",
            self.where_()
        )
    }

    /// Enables (`start`) or disables the subscription and waits until its
    /// apply worker runs, or has exited. A start that does not come up is
    /// undone: the subscription and its comment as they were.
    async fn switch(&self, start: bool, generation: i64) -> Result<(), Refusal> {
        let unreachable = |why| Refusal::new("DESTINATION_UNREACHABLE", why);
        let client = self.destination().await.map_err(unreachable)?;
        let before = self
            .look(&client)
            .await
            .map_err(unreachable)?
            .ok_or_else(|| {
                Refusal::new("SUBSCRIPTION_NOT_FOUND", self.missing()).not_retriable()
            })?;
        if !start {
            // Where it stops: the lag while it still streams (the publisher
            // may hold up a pause this long at most).
            let _ = tokio::time::timeout(LAG_BEFORE_PAUSE, self.refresh(true)).await;
        }
        let mark = Mark {
            start,
            generation,
            errors: before.errors,
        };
        self.write(start, Some(mark.text(&self.id))).await?;
        info!(connector_id = %self.id, subscription = %self.subscription(), start, generation,
              "subscription switched");
        let settled = self.settle(start).await;
        if let (Err(_), true) = (&settled, start) {
            let mut undone = self.write(before.enabled, before.comment.clone()).await;
            if undone.is_err() {
                // Once more, on a connection made again.
                undone = self.write(before.enabled, before.comment).await;
            }
            if let Err(error) = undone {
                warn!(connector_id = %self.id, message = %error.message,
                      "undoing a start that did not come up failed: the subscription stays \
                       enabled, and its comment says so");
            }
        }
        self.refresh(false).await;
        settled
    }

    /// ENABLE or DISABLE, and the comment (a mark), in one transaction:
    /// two statements in one message run as one.
    async fn write(&self, enable: bool, comment: Option<String>) -> Result<(), Refusal> {
        let client = self
            .destination()
            .await
            .map_err(|why| Refusal::new("DESTINATION_UNREACHABLE", why))?;
        let name = identifier(self.subscription());
        let comment = comment.map_or("NULL".to_owned(), |text| literal(&text));
        let action = if enable { "ENABLE" } else { "DISABLE" };
        let written = client
            .batch_execute(&format!(
                "ALTER SUBSCRIPTION {name} {action}; COMMENT ON SUBSCRIPTION {name} IS {comment}"
            ))
            .await;
        if written.is_err() {
            // Whatever state the connection is in now, the next call makes
            // a fresh one.
            *self.destination.lock().await = None;
        }
        written.map_err(|error| {
            let denied =
                error.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
            let refusal = Refusal::new(
                if denied {
                    "PERMISSION_DENIED"
                } else {
                    "POSTGRES_ERROR"
                },
                format!(
                    "ALTER SUBSCRIPTION {action} of {}: {}{}",
                    self.where_(),
                    pg_error(&error),
                    if denied {
                        ": the destination's user must own the subscription (or be a superuser)"
                    } else {
                        ""
                    }
                ),
            );
            if denied {
                refusal.not_retriable()
            } else {
                refusal
            }
        })
    }

    /// Waits until the apply worker runs (`start`) or has exited.
    async fn settle(&self, start: bool) -> Result<(), Refusal> {
        let deadline = tokio::time::Instant::now() + self.spec.readiness;
        loop {
            let looked = match self.destination().await {
                Ok(client) => self.look(&client).await,
                Err(why) => Err(why),
            };
            match looked {
                Ok(Some(d)) if start && d.enabled && d.worker => return Ok(()),
                Ok(Some(d)) if !start && !d.worker => return Ok(()),
                Ok(Some(d)) if start && !d.enabled => {
                    return Err(Refusal::new(
                        "APPLY_ERROR",
                        format!(
                            "PostgreSQL disabled {} as it started ({} errors counted in \
                             pg_stat_subscription_stats): the destination's server log names the \
                             error and the row; fix it, then start again",
                            self.where_(),
                            d.errors
                        ),
                    ));
                }
                Ok(None) => {
                    return Err(
                        Refusal::new("SUBSCRIPTION_NOT_FOUND", self.missing()).not_retriable()
                    );
                }
                // Not yet, or a passing error: until the deadline.
                Ok(Some(_)) | Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let (reason, what) = if start {
                    ("WORKER_NOT_STARTED", "no apply worker ran")
                } else {
                    ("WORKER_STILL_RUNNING", "its apply worker still ran")
                };
                return Err(Refusal::new(
                    reason,
                    format!(
                        "{what} {:?} after ALTER SUBSCRIPTION on {} (readiness in the connectors \
                         file): see max_logical_replication_workers and the destination's log",
                        self.spec.readiness,
                        self.where_()
                    ),
                ));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
}

/// A connection whose making, statements, locks and dead peers are
/// bounded; an error says why in PostgreSQL's words.
async fn connect(config: &Config) -> Result<Arc<Client>, String> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    let options = match config.get_options() {
        Some(theirs) => format!("{theirs} {SESSION_OPTIONS}"),
        None => SESSION_OPTIONS.to_owned(),
    };
    config.options(options);
    config.application_name("connector-control agent");
    let (client, connection) = tokio::time::timeout(HANDSHAKE_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| format!("no answer within {HANDSHAKE_TIMEOUT:?}"))?
        .map_err(|error| pg_error(&error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            warn!(%error, "a PostgreSQL connection of the postgres driver ended");
        }
    });
    Ok(Arc::new(client))
}

/// PostgreSQL's own words: its message, detail and hint, or the error.
fn pg_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; {hint}"));
            }
            text
        }
        None => error.to_string(),
    }
}

/// A quoted SQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal (standard_conforming_strings, the default).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_are_quoted() {
        assert_eq!(identifier("orders"), "\"orders\"");
        assert_eq!(identifier("a\"; DROP"), "\"a\"\"; DROP\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
