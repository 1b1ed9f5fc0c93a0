//! The PostgreSQL backend: a deadpool pool of tokio-postgres connections,
//! cached prepared statements, one transaction per change, migrations
//! embedded with refinery.

mod error;
mod fleet;
mod listen;
mod rows;

/// The columns the store reads, for the benchmark harness's raw-SQL
/// baselines (the same statements without the service around them).
#[doc(hidden)]
pub use rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS};

use super::{CommandOutcome, Page, PoolStatus, Store, StoreError, escape_like, fold};
use crate::domain::{
    AuditAction, AuditEvent, AuditFilter, Change, Command, Connector, Cursor, NewAuditEvent,
    NewConnector, SearchFilter, Transition, trace_context_to_text,
};
use anyhow::Context;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use error::translate;
use rows::{command_from_row, connector_from_row};
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use tracing::instrument;

/// Appends `event` inside the caller's transaction (or on its own).
pub(super) async fn insert_audit(
    client: &impl GenericClient,
    event: &NewAuditEvent,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO audit_events
               (principal, action, connector_id, request_id, outcome, reason, peer, detail,
                count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
        .map_err(translate)?;
    client
        .execute(
            &statement,
            &[
                &event.actor.principal,
                &event.action.as_str(),
                &event.connector_id,
                &event.request_id,
                &event.outcome,
                &event.reason,
                &event.actor.peer,
                &event.detail,
                &i64::try_from(event.count).unwrap_or(i64::MAX).max(1),
            ],
        )
        .await
        .map_err(translate)?;
    Ok(())
}

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

/// Arbitrary constant naming the advisory lock that serialises migrations
/// when several replicas start at once.
const MIGRATION_LOCK: i64 = 0x636f_6e6e_6374_726c;

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
        let options = match config.get_options() {
            Some(existing) => format!("{existing} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_owned(),
        };
        config.options(&options);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("building the connection pool")?;
        let store = Self {
            pool,
            config,
            redacted_url,
            replica_id: "".into(),
            lease_holder: "".into(),
        }
        .with_replica_id(&default_replica_id());
        // Probe with a plain connection: its errors say what went wrong
        // (refused, unknown database, authentication) without pool wording.
        let (probe, connection) = store
            .config
            .connect(NoTls)
            .await
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
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
    /// run from several replicas at once.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let context = || format!("migrating database {}", self.redacted_url);
        let (mut client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
            .with_context(context)?;
        let driver = tokio::spawn(connection);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .with_context(context)?;
        let report = migrations::runner()
            .set_abort_divergent(true)
            .run_async(&mut client)
            .await
            .with_context(context)?;
        // The lock dies with the session; closing the client ends it.
        drop(client);
        let _ = driver.await;
        Ok(report.applied_migrations().len())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Runs `decide` on the locked connector, then persists the transition
    /// and its command in the same transaction.
    async fn transition(&self, change: &Change) -> Result<CommandOutcome, StoreError> {
        let (connector_id, request_id) = (change.connector_id(), change.request_id());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;

        let lock = tx
            .prepare_cached(&format!(
                "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1 FOR UPDATE"
            ))
            .await
            .map_err(translate)?;
        let connector = match tx
            .query_opt(&lock, &[&connector_id])
            .await
            .map_err(translate)?
        {
            Some(row) => connector_from_row(&row)?,
            None => return Err(StoreError::ConnectorNotFound(connector_id.to_owned())),
        };

        if let Some(request_id) = request_id {
            let previous = tx
                .prepare_cached(&format!(
                    "SELECT {COMMAND_COLUMNS} FROM commands WHERE connector_id = $1 AND request_id = $2"
                ))
                .await
                .map_err(translate)?;
            if let Some(row) = tx
                .query_opt(&previous, &[&connector_id, &request_id])
                .await
                .map_err(translate)?
            {
                let command = command_from_row(&row)?;
                change.check_replay(&connector, &command)?;
                tx.commit().await.map_err(translate)?;
                return Ok(CommandOutcome {
                    connector,
                    command,
                    replayed: true,
                });
            }
        }

        let transition = decide(change, &tx, &connector).await?;

        // Every older unanswered command, delivered or not: the agent is
        // handed what the newest generation asks, never an older one first.
        let supersede = tx
            .prepare_cached(
                "UPDATE commands SET status = 'SUPERSEDED', complete_time = now()
                 WHERE connector_id = $1 AND status IN ('PENDING', 'DELIVERED')",
            )
            .await
            .map_err(translate)?;
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO commands
                   (id, connector_id, kind, pull_back_time, region, previous_region, generation,
                    request_id, reason, status, trace_context)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PENDING', $10)
                 RETURNING {COMMAND_COLUMNS}"
            ))
            .await
            .map_err(translate)?;
        let update = tx
            .prepare_cached(&format!(
                "UPDATE connectors
                 SET state = $2, desired_state = $3, generation = $4, region = $5, update_time = now()
                 WHERE id = $1
                 RETURNING {CONNECTOR_COLUMNS}"
            ))
            .await
            .map_err(translate)?;
        let command_id = uuid::Uuid::now_v7().to_string();
        let trace_context = trace_context_to_text(change.trace_context());
        let audit = change.audit_event(&command_id);
        // The four writes are pipelined: sent together, executed in order,
        // one round trip's wait instead of four. A failure aborts the
        // transaction, and the first error is the one reported.
        let (_, command_row, connector_row, ()) = tokio::try_join!(
            async {
                tx.execute(&supersede, &[&connector_id])
                    .await
                    .map_err(translate)
            },
            async {
                tx.query_one(
                    &insert,
                    &[
                        &command_id,
                        &connector_id,
                        &transition.command_kind.as_str(),
                        &transition.pull_back_time,
                        &transition.region,
                        &connector.region,
                        &transition.generation,
                        &request_id,
                        &change.reason(),
                        &trace_context,
                    ],
                )
                .await
                .map_err(translate)
            },
            async {
                tx.query_one(
                    &update,
                    &[
                        &connector_id,
                        &transition.state.as_str(),
                        &transition.desired_state.as_str(),
                        &transition.generation,
                        &transition.region,
                    ],
                )
                .await
                .map_err(translate)
            },
            insert_audit(&tx, &audit),
        )?;
        let command = command_from_row(&command_row)?;
        let connector = connector_from_row(&connector_row)?;
        tx.commit().await.map_err(translate)?;
        Ok(CommandOutcome {
            connector,
            command,
            replayed: false,
        })
    }
}

/// Applies the domain rule inside the transaction; a start may first need
/// to ask the database whether its region override exists, a pause where a
/// start it supersedes came from.
async fn decide(
    change: &Change,
    client: &impl GenericClient,
    connector: &Connector,
) -> Result<Transition, StoreError> {
    match change {
        Change::Start(_) => {
            let region_known = match change.region_to_verify(connector) {
                Some(region) => region_exists(client, region).await?,
                None => true,
            };
            Ok(change.decide(connector, region_known, None, chrono::Utc::now())?)
        }
        Change::Pause(_) => {
            let statement = client
                .prepare_cached(
                    "SELECT previous_region FROM commands
                         WHERE connector_id = $1 AND kind = 'START' AND status = 'PENDING'
                         ORDER BY generation DESC LIMIT 1
                         FOR UPDATE",
                )
                .await
                .map_err(translate)?;
            let undelivered_start_from: Option<String> = client
                .query_opt(&statement, &[&connector.id])
                .await
                .map_err(translate)?
                .map(|row| row.get(0));
            Ok(change.decide(
                connector,
                true,
                undelivered_start_from.as_deref(),
                chrono::Utc::now(),
            )?)
        }
    }
}

/// A region is known when some connector reads from, writes to or runs in
/// it, or some agent serves it.
async fn region_exists(client: &impl GenericClient, region: &str) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM connectors WHERE destination_region = $1)
                 OR EXISTS (SELECT 1 FROM connectors WHERE source_region = $1)
                 OR EXISTS (SELECT 1 FROM connectors WHERE region = $1)
                 OR EXISTS (SELECT 1 FROM agents WHERE region = $1)",
        )
        .await
        .map_err(translate)?;
    let row = client
        .query_one(&statement, &[&region])
        .await
        .map_err(translate)?;
    Ok(row.get(0))
}

impl Store for PgStore {
    #[instrument(skip_all, fields(connector_id = %new.id))]
    async fn create_connector(&self, new: NewConnector) -> Result<Connector, StoreError> {
        let mut client = self.client().await?;
        let client = client.transaction().await.map_err(translate)?;
        let statement = client
            .prepare_cached(&format!(
                "INSERT INTO connectors
                   (id, name, project_id, project_name, name_folded, project_name_folded, kind,
                    source_type, source_region, source_address,
                    destination_type, destination_region, destination_address,
                    region, state, desired_state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12,
                         'STOPPED', 'STOPPED')
                 RETURNING {CONNECTOR_COLUMNS}"
            ))
            .await
            .map_err(translate)?;
        let row = client
            .query_one(
                &statement,
                &[
                    &new.id,
                    &new.name,
                    &new.project_id,
                    &new.project_name,
                    &fold(&new.name),
                    &fold(&new.project_name),
                    &new.kind.as_str(),
                    &new.source.kind,
                    &new.source.region,
                    &new.source.address,
                    &new.destination.kind,
                    &new.destination.region,
                    &new.destination.address,
                ],
            )
            .await
            .map_err(|e| match e.code() {
                Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    StoreError::ConnectorAlreadyExists(new.id.clone())
                }
                _ => translate(e),
            })?;
        let connector = connector_from_row(&row)?;
        insert_audit(
            &client,
            &NewAuditEvent::ok(&new.actor, AuditAction::CreateConnector, &connector.id),
        )
        .await?;
        client.commit().await.map_err(translate)?;
        Ok(connector)
    }

    #[instrument(skip_all, fields(connector_id = %id))]
    async fn get_connector(&self, id: &str) -> Result<Connector, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1"
            ))
            .await
            .map_err(translate)?;
        match client
            .query_opt(&statement, &[&id])
            .await
            .map_err(translate)?
        {
            Some(row) => connector_from_row(&row),
            None => Err(StoreError::ConnectorNotFound(id.to_owned())),
        }
    }

    #[instrument(skip_all, fields(query = %filter.query, region = %filter.region))]
    async fn list_connectors(
        &self,
        filter: &SearchFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let search = SearchSql::new(filter);
        let client = self.client().await?;

        let mut sql = format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE {}",
            search.condition
        );
        let mut params = search.params();
        if let Some(after) = after {
            sql.push_str(&format!(
                " AND (name, id) > (${}, ${})",
                params.len() + 1,
                params.len() + 2
            ));
            params.push(&after.name);
            params.push(&after.id);
        }
        // One extra row tells whether another page follows.
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        // With a text query the trigram index can serve (3+ characters),
        // order by an expression the (name, id) index cannot provide: the
        // planner then collects the matches through the trigram and prefix
        // indexes and keeps the top rows in a small heap. Walking the
        // (name, id) index and filtering looks cheap to it, but scans the
        // whole table when the matches sort late. Shorter queries match
        // densely, so walking the index in order finds a page quickly.
        let order = if search.selective_query {
            "name || '', id"
        } else {
            "name, id"
        };
        sql.push_str(&format!(" ORDER BY {order} LIMIT ${}", params.len() + 1));
        params.push(&fetch);

        let statement = client.prepare_cached(&sql).await.map_err(translate)?;
        // The page and the count are pipelined on the connection: one
        // round trip's wait instead of two.
        let page = async { client.query(&statement, &params).await.map_err(translate) };
        let (rows, total) = tokio::try_join!(page, count_matches(&client, &search))?;
        let more = rows.len() > limit;
        let connectors = rows
            .iter()
            .take(limit)
            .map(connector_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            connectors,
            more,
            total,
        })
    }

    #[instrument(skip_all, fields(connector_id = %change.connector_id(), kind = change.kind().as_str()))]
    async fn issue_command(&self, change: &Change) -> Result<CommandOutcome, StoreError> {
        self.transition(change).await
    }

    #[instrument(skip_all, fields(command_id = %id))]
    async fn get_command(&self, id: &str) -> Result<Command, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1"
            ))
            .await
            .map_err(translate)?;
        match client
            .query_opt(&statement, &[&id])
            .await
            .map_err(translate)?
        {
            Some(row) => command_from_row(&row),
            None => Err(StoreError::CommandNotFound(id.to_owned())),
        }
    }

    async fn page_token_key(&self) -> Result<Vec<u8>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT key FROM server_keys WHERE name = 'page_token'", &[])
            .await
            .map_err(translate)?;
        Ok(row.get(0))
    }

    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
        insert_audit(&self.client().await?, event).await
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, bool), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, time, principal, action, connector_id, request_id, outcome, reason,
                        peer, detail, count
                 FROM audit_events
                 WHERE ($1::text IS NULL OR connector_id = $1)
                   AND ($2::text IS NULL OR principal = $2)
                   AND ($3::timestamptz IS NULL OR time >= $3)
                   AND ($4::timestamptz IS NULL OR time < $4)
                   AND ($5::int8 IS NULL OR id < $5)
                 ORDER BY id DESC
                 LIMIT $6",
            )
            .await
            .map_err(translate)?;
        let rows = client
            .query(
                &statement,
                &[
                    &filter.connector_id,
                    &filter.principal,
                    &filter.start_time,
                    &filter.end_time,
                    &filter.before_id,
                    &(i64::try_from(limit).unwrap_or(i64::MAX) + 1),
                ],
            )
            .await
            .map_err(translate)?;
        let mut events: Vec<AuditEvent> = rows
            .iter()
            .map(|row| AuditEvent {
                id: row.get("id"),
                time: row.get("time"),
                principal: row.get("principal"),
                action: row.get("action"),
                connector_id: row.get("connector_id"),
                request_id: row.get("request_id"),
                outcome: row.get("outcome"),
                reason: row.get("reason"),
                peer: row.get("peer"),
                detail: row.get("detail"),
                count: row.get("count"),
            })
            .collect();
        let more = events.len() > limit;
        events.truncate(limit);
        Ok((events, more))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(translate)?;
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

/// The rule of `domain::lag` in SQL; `$n` is the alert threshold in µs.
pub(super) fn lagging_condition(n: usize) -> String {
    // Each arm of the OR matches a partial index (migration V6).
    format!(
        "((state = 'UNKNOWN' AND desired_state = 'RUNNING')
          OR (state = 'RUNNING' AND desired_state = 'RUNNING' AND latency_us > ${n}))"
    )
}

/// Matches are counted exactly up to this many; past it, the planner's
/// estimate is reported (as AIP-158 allows for `total_size`), so that a broad
/// search over a million connectors does not pay for counting them all.
pub const EXACT_COUNT_LIMIT: i64 = 10_000;

async fn count_matches(client: &impl GenericClient, search: &SearchSql) -> Result<i64, StoreError> {
    let params = search.params();
    let count = client
        .prepare_cached(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM connectors WHERE {} LIMIT {}) AS capped",
            search.condition,
            EXACT_COUNT_LIMIT + 1
        ))
        .await
        .map_err(translate)?;
    let exact: i64 = client
        .query_one(&count, &params)
        .await
        .map_err(translate)?
        .get(0);
    if exact <= EXACT_COUNT_LIMIT {
        return Ok(exact);
    }
    let explain = client
        .prepare_cached(&format!(
            "EXPLAIN SELECT 1 FROM connectors WHERE {}",
            search.condition
        ))
        .await
        .map_err(translate)?;
    let plan = client.query(&explain, &params).await.map_err(translate)?;
    let estimate = plan
        .first()
        .and_then(|row| row.try_get::<_, String>(0).ok())
        .and_then(|line| estimated_rows(&line))
        .unwrap_or(exact);
    Ok(estimate.max(exact))
}

/// The `rows=N` estimate of the top line of a text-format plan.
fn estimated_rows(plan_line: &str) -> Option<i64> {
    let rest = &plan_line[plan_line.find(" rows=")? + " rows=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The WHERE clause of a search and the values it binds, built so that each
/// predicate can use its index (no `$1 = '' OR ...` catch-alls, which defeat
/// the planner).
struct SearchSql {
    condition: String,
    substring: String,
    prefix: String,
    region: String,
    states: Vec<&'static str>,
    lagging_over_us: Option<i64>,
    has_query: bool,
    /// Matches are few and found through an index other than (name, id).
    selective_query: bool,
}

impl SearchSql {
    fn new(filter: &SearchFilter) -> Self {
        let folded = fold(&filter.query);
        let needle = escape_like(&folded);
        let has_query = !filter.query.is_empty();
        // A text query long enough for trigram lookups, or the lagging
        // filter (its partial indexes find the few lagging connectors;
        // walking the name index instead reads half a million rows at a
        // million connectors when the lagging ones sort late).
        let selective_query = folded.chars().count() >= 3 || filter.lagging_over.is_some();
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if has_query {
            let (sub, pre) = (next(), next());
            conditions.push(format!(
                "(name_folded LIKE ${sub} OR project_name_folded LIKE ${sub}
                  OR lower(id) LIKE ${pre} OR lower(project_id) LIKE ${pre}
                  OR server_ip LIKE ${pre})"
            ));
        }
        if !filter.region.is_empty() {
            conditions.push(format!("region = ${}", next()));
        }
        // One state is bound as a plain equality: the planner can then read
        // the (region, state, name, id) index in order, which it does not do
        // for `= ANY(array)`.
        match filter.states.len() {
            0 => {}
            1 => conditions.push(format!("state = ${}", next())),
            _ => conditions.push(format!("state = ANY(${})", next())),
        }
        if filter.lagging_over.is_some() {
            conditions.push(lagging_condition(next()));
        }
        if conditions.is_empty() {
            conditions.push("TRUE".to_owned());
        }
        Self {
            condition: conditions.join(" AND "),
            substring: format!("%{needle}%"),
            prefix: format!("{needle}%"),
            region: filter.region.clone(),
            states: filter.states.iter().map(|s| s.as_str()).collect(),
            lagging_over_us: filter.lagging_over.map(crate::domain::micros),
            has_query,
            selective_query,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if self.has_query {
            params.push(&self.substring);
            params.push(&self.prefix);
        }
        if !self.region.is_empty() {
            params.push(&self.region);
        }
        match self.states.as_slice() {
            [] => {}
            [state] => params.push(state),
            _ => params.push(&self.states),
        }
        if let Some(alert) = &self.lagging_over_us {
            params.push(alert);
        }
        params
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
    }

    #[test]
    fn plan_estimates_are_read_from_the_top_line() {
        assert_eq!(
            estimated_rows("Seq Scan on connectors  (cost=0.00..4.43 rows=166667 width=4)"),
            Some(166_667)
        );
        assert_eq!(estimated_rows("Result"), None);
    }
}
