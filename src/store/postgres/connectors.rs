//! Connectors on PostgreSQL: create, read, and `issue_command`, where a
//! start or a pause is written.

use super::PgStore;
use super::audit::insert_audit;
use super::error::{is_unique_violation, translate};
use super::rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS, command_from_row, connector_from_row};
use crate::domain::{
    AuditAction, Change, Command, Connector, NewAuditEvent, NewConnector, Transition,
    trace_context_to_text,
};
use crate::store::{BatchRecord, CommandOutcome, Connectors, StoreError, fold};
use deadpool_postgres::GenericClient;
use tracing::instrument;

/// The statements `issue_command` runs, in order: the benchmark harness
/// runs the same ones as its raw-SQL baseline.
#[doc(hidden)]
pub mod sql {
    use super::{COMMAND_COLUMNS, CONNECTOR_COLUMNS};

    /// $1 connector id.
    pub fn lock_connector() -> String {
        format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1 FOR UPDATE")
    }

    /// A pause: where the start it supersedes came from ($1 connector id).
    pub const UNDELIVERED_START: &str = "SELECT previous_region FROM commands
         WHERE connector_id = $1 AND kind = 'START' AND status = 'PENDING'
         ORDER BY generation DESC LIMIT 1
         FOR UPDATE";

    /// Every older unanswered command, delivered or not: the agent is
    /// handed what the newest generation asks, never an older one first.
    /// $1 connector id.
    pub const SUPERSEDE: &str = "UPDATE commands SET status = 'SUPERSEDED', complete_time = now()
         WHERE connector_id = $1 AND status IN ('PENDING', 'DELIVERED')";

    /// $1 id, $2 connector id, $3 kind, $4 pull-back time, $5 region, $6
    /// previous region, $7 generation, $8 request id, $9 reason, $10 trace
    /// context, $11 principal.
    pub fn insert_command() -> String {
        format!(
            "INSERT INTO commands
               (id, connector_id, kind, pull_back_time, region, previous_region, generation,
                request_id, reason, status, trace_context, principal)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PENDING', $10, $11)
             RETURNING {COMMAND_COLUMNS}"
        )
    }

    /// $1 id, $2 state, $3 desired state, $4 generation, $5 region.
    pub fn update_connector() -> String {
        format!(
            "UPDATE connectors
             SET state = $2, desired_state = $3, generation = $4, region = $5, update_time = now()
             WHERE id = $1
             RETURNING {CONNECTOR_COLUMNS}"
        )
    }

    pub use super::super::audit::INSERT_AUDIT;
}

/// Whether `transition` writes what it decided or only shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Commit,
    Preview,
}

impl PgStore {
    /// Runs `decide` on the locked connector, then persists the transition
    /// and its command in the same transaction; a `Write::Preview` stops
    /// after the decision and writes nothing.
    async fn transition(
        &self,
        change: &Change,
        write: Write,
    ) -> Result<CommandOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        let outcome = transition_in(&tx, change, write).await?;
        if write == Write::Commit {
            tx.commit().await.map_err(translate)?;
        }
        Ok(outcome)
    }

    /// Several changes in one transaction, each as `transition` makes it.
    /// A change the domain refuses (or whose connector does not exist) is
    /// that change's error and writes nothing; any other failure rolls the
    /// whole transaction back and is the call's.
    async fn transitions(
        &self,
        changes: &[Change],
        write: Write,
    ) -> Result<Vec<Result<CommandOutcome, StoreError>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            match transition_in(&tx, change, write).await {
                Err(error @ (StoreError::Rejected(_) | StoreError::ConnectorNotFound(_))) => {
                    outcomes.push(Err(error))
                }
                Err(error) => return Err(error),
                Ok(outcome) => outcomes.push(Ok(outcome)),
            }
        }
        if write == Write::Commit {
            tx.commit().await.map_err(translate)?;
        }
        Ok(outcomes)
    }
}

/// `PgStore::transition` inside an open transaction, which the caller
/// commits (or, for a preview, drops).
async fn transition_in(
    tx: &deadpool_postgres::Transaction<'_>,
    change: &Change,
    write: Write,
) -> Result<CommandOutcome, StoreError> {
    let (connector_id, request_id) = (change.connector_id(), change.request_id());

    let lock = tx
        .prepare_cached(&sql::lock_connector())
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
            return Ok(CommandOutcome {
                connector,
                command,
                replayed: true,
            });
        }
    }

    let transition = decide(change, tx, &connector).await?;
    if write == Write::Preview {
        // Dropping the transaction rolls it back: only reads ran.
        let (connector, command) = change.preview(&connector, &transition, chrono::Utc::now());
        return Ok(CommandOutcome {
            connector,
            command,
            replayed: false,
        });
    }

    // Every older unanswered command, delivered or not: the agent is
    // handed what the newest generation asks, never an older one first.
    let supersede = tx.prepare_cached(sql::SUPERSEDE).await.map_err(translate)?;
    let insert = tx
        .prepare_cached(&sql::insert_command())
        .await
        .map_err(translate)?;
    let update = tx
        .prepare_cached(&sql::update_connector())
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
                    &change.actor().principal,
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
        insert_audit(tx, &audit),
    )?;
    let command = command_from_row(&command_row)?;
    let connector = connector_from_row(&connector_row)?;
    Ok(CommandOutcome {
        connector,
        command,
        replayed: false,
    })
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
                .prepare_cached(sql::UNDELIVERED_START)
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

impl Connectors for PgStore {
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
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::ConnectorAlreadyExists(new.id.clone())
                } else {
                    translate(e)
                }
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

    #[instrument(skip_all, fields(connector_id = %change.connector_id(), kind = change.kind().as_str()))]
    async fn issue_command(&self, change: &Change) -> Result<CommandOutcome, StoreError> {
        self.retrying(|| self.transition(change, Write::Commit))
            .await
    }

    #[instrument(skip_all, fields(connector_id = %change.connector_id(), kind = change.kind().as_str()))]
    async fn preview_command(&self, change: &Change) -> Result<CommandOutcome, StoreError> {
        self.retrying(|| self.transition(change, Write::Preview))
            .await
    }

    #[instrument(skip_all, fields(changes = changes.len()))]
    async fn issue_commands(
        &self,
        changes: &[Change],
    ) -> Result<Vec<Result<CommandOutcome, StoreError>>, StoreError> {
        self.retrying(|| self.transitions(changes, Write::Commit))
            .await
    }

    #[instrument(skip_all, fields(changes = changes.len()))]
    async fn preview_commands(
        &self,
        changes: &[Change],
    ) -> Result<Vec<Result<CommandOutcome, StoreError>>, StoreError> {
        self.retrying(|| self.transitions(changes, Write::Preview))
            .await
    }

    async fn begin_batch(
        &self,
        request_id: &str,
        fingerprint: &str,
        connector_ids: &[String],
    ) -> Result<BatchRecord, StoreError> {
        self.begin_batch_row(request_id, fingerprint, connector_ids)
            .await
    }

    async fn find_batch(&self, request_id: &str) -> Result<Option<BatchRecord>, StoreError> {
        self.find_batch_row(request_id).await
    }

    async fn finish_batch(&self, request_id: &str, response: &[u8]) -> Result<(), StoreError> {
        self.finish_batch_row(request_id, response).await
    }

    #[instrument(skip_all, fields(connector_id = %connector_id))]
    async fn list_commands(
        &self,
        connector_id: &str,
        before_generation: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<Command>, bool), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands
                 WHERE connector_id = $1 AND generation < $2
                 ORDER BY generation DESC LIMIT $3"
            ))
            .await
            .map_err(translate)?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let rows = client
            .query(
                &statement,
                &[
                    &connector_id,
                    &before_generation.unwrap_or(i64::MAX),
                    &fetch,
                ],
            )
            .await
            .map_err(translate)?;
        if rows.is_empty() {
            // None at all: is there a connector?
            self.get_connector(connector_id).await?;
        }
        let more = rows.len() > limit;
        let commands = rows
            .iter()
            .take(limit)
            .map(command_from_row)
            .collect::<Result<_, _>>()?;
        Ok((commands, more))
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
}
