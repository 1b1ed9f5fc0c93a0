//! Where a start or a pause is written on PostgreSQL: `transitions`, for
//! one change (StartConnector, PauseConnector) or a chunk of a batch call,
//! the same statements either way, each over arrays of connectors.

use super::PgStore;
use super::conn::{Db, column};
use super::rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS, command_from_row, connector_from_row};
use crate::domain::rules;
use crate::domain::{Change, Command, Connector, Transition, trace_context_to_text};
use crate::store::{CommandOutcome, Outcomes, StoreError, Write};
use chrono::Utc;
use std::collections::HashMap;

/// The statements `transitions` runs, in order: the benchmark harness runs
/// the same ones as its raw-SQL baseline.
#[doc(hidden)]
pub mod sql {
    use super::{COMMAND_COLUMNS, CONNECTOR_COLUMNS};

    /// $1 connector ids. Locked in id order, so that concurrent batches
    /// never wait on each other in a circle.
    pub fn lock_connectors() -> String {
        format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        )
    }

    /// The commands retried request ids produced: $1 connector ids, $2
    /// their request ids.
    pub fn replayed_commands() -> String {
        format!(
            "SELECT {COMMAND_COLUMNS} FROM commands
             WHERE (connector_id, request_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        )
    }

    /// Pauses: where the starts they supersede came from ($1 connector
    /// ids); the newest per connector counts (FOR UPDATE allows no
    /// DISTINCT ON; a connector has at most one open command anyway).
    pub const UNDELIVERED_STARTS: &str = "SELECT connector_id, previous_region FROM commands
         WHERE connector_id = ANY($1) AND kind = 'START' AND status = 'PENDING'
         ORDER BY connector_id, generation DESC
         FOR UPDATE";

    /// Every older unanswered command, delivered or not: the agent is
    /// handed what the newest generation asks, never an older one first.
    /// $1 connector ids.
    pub const SUPERSEDE: &str = "UPDATE commands SET status = 'SUPERSEDED', complete_time = now()
         WHERE connector_id = ANY($1) AND status IN ('PENDING', 'DELIVERED')";

    /// Arrays, one element per command: $1 id, $2 connector id, $3 kind,
    /// $4 pull-back time, $5 region, $6 previous region, $7 generation, $8
    /// request id, $9 reason, $10 trace context, $11 principal, $12 skip
    /// to earliest.
    pub fn insert_commands() -> String {
        format!(
            "INSERT INTO commands
               (id, connector_id, kind, pull_back_time, region, previous_region, generation,
                request_id, reason, trace_context, principal, skip_to_earliest, status)
             SELECT *, 'PENDING' FROM unnest($1::text[], $2::text[], $3::text[],
                 $4::timestamptz[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[],
                 $10::text[], $11::text[], $12::boolean[])
             RETURNING {COMMAND_COLUMNS}"
        )
    }

    /// Arrays: $1 id, $2 state, $3 desired state, $4 generation, $5 region,
    /// $6 the automatic starts' count after the change (NULL keeps it).
    /// Every change cancels a scheduled automatic start.
    pub fn update_connectors() -> String {
        format!(
            "UPDATE connectors
             SET state = u_state, desired_state = u_desired, generation = u_generation,
                 region = u_region, update_time = now(), next_restart_time = NULL,
                 restart_count = COALESCE(u_count, restart_count)
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                         $6::bigint[])
                  AS u (u_id, u_state, u_desired, u_generation, u_region, u_count)
             WHERE id = u_id
             RETURNING {CONNECTOR_COLUMNS}"
        )
    }

    /// Arrays: $1 principal, $2 action, $3 connector id, $4 request id, $5
    /// outcome, $6 reason, $7 peer, $8 detail, $9 count.
    pub const INSERT_AUDITS: &str = "INSERT INTO audit_events
           (principal, action, connector_id, request_id, outcome, reason, peer, detail, count)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::text[], $9::bigint[])";

    /// A region is known when some connector reads from, writes to or runs
    /// in it, or some agent serves it. $1 region.
    pub const REGION_EXISTS: &str =
        "SELECT EXISTS (SELECT 1 FROM connectors WHERE destination_region = $1)
             OR EXISTS (SELECT 1 FROM connectors WHERE source_region = $1)
             OR EXISTS (SELECT 1 FROM connectors WHERE region = $1)
             OR EXISTS (SELECT 1 FROM agents WHERE region = $1)";
}

/// A change decided, to be written.
struct Planned {
    at: usize,
    transition: Transition,
    command_id: String,
}

impl PgStore {
    /// `Connectors::transitions` (each connector at most once), once: the
    /// connectors are locked, retried request ids answered with their
    /// commands, `Change::decide` asked for each, and the transitions, their
    /// PENDING commands (superseding the unanswered ones) and their audit
    /// events written together.
    pub(super) async fn transitions_once(
        &self,
        changes: &[Change],
        write: Write,
    ) -> Result<Outcomes, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcomes = transitions_in(&tx, changes, write).await?;
        if write == Write::Commit {
            tx.commit().await?;
        }
        Ok(outcomes)
    }
}

pub(super) async fn transitions_in(
    tx: &super::conn::Tx<'_>,
    changes: &[Change],
    write: Write,
) -> Result<Outcomes, StoreError> {
    let ids: Vec<&str> = changes.iter().map(Change::connector_id).collect();
    if ids.iter().collect::<std::collections::HashSet<_>>().len() != ids.len() {
        return Err(StoreError::Internal(
            "a connector appears twice among the changes of one transaction".into(),
        ));
    }
    let mut connectors: HashMap<String, Connector> = HashMap::with_capacity(ids.len());
    for row in tx.query(&sql::lock_connectors(), &[&ids]).await? {
        let connector = connector_from_row(&row)?;
        connectors.insert(connector.id.clone(), connector);
    }
    let replays = replayed(tx, changes).await?;
    let undelivered = undelivered_starts(tx, changes).await?;
    let mut regions: HashMap<String, bool> = HashMap::new();
    let now = Utc::now();

    let mut outcomes: Vec<Option<Result<CommandOutcome, StoreError>>> = Vec::new();
    let mut planned = Vec::new();
    for (at, change) in changes.iter().enumerate() {
        let Some(connector) = connectors.get(change.connector_id()) else {
            outcomes.push(Some(Err(StoreError::ConnectorNotFound(
                change.connector_id().to_owned(),
            ))));
            continue;
        };
        if let Some(command) = replays.get(change.connector_id()) {
            let outcome = change
                .check_replay(connector, command)
                .map(|()| CommandOutcome {
                    connector: connector.clone(),
                    command: command.clone(),
                    replayed: true,
                });
            outcomes.push(Some(outcome.map_err(StoreError::from)));
            continue;
        }
        let region_known = match change.region_to_verify(connector) {
            None => true,
            Some(region) => match regions.get(region) {
                Some(known) => *known,
                None => {
                    let known = region_exists(tx, region).await?;
                    regions.insert(region.to_owned(), known);
                    known
                }
            },
        };
        let from = undelivered.get(change.connector_id()).map(String::as_str);
        let mut decided = change.decide(connector, region_known, from, now);
        if let (Ok(_), Some(region)) = (&decided, change.pull_back_region(connector)) {
            let agents = agents_without_pull_back(tx, region).await?;
            if let Err(rejection) = rules::check_pull_back_capable(connector, region, agents) {
                decided = Err(rejection);
            }
        }
        match decided {
            Err(rejection) => outcomes.push(Some(Err(rejection.into()))),
            Ok(transition) if write == Write::Preview => {
                let (connector, command) = change.preview(connector, &transition, now);
                outcomes.push(Some(Ok(CommandOutcome {
                    connector,
                    command,
                    replayed: false,
                })));
            }
            Ok(transition) => {
                outcomes.push(None);
                planned.push(Planned {
                    at,
                    transition,
                    command_id: uuid::Uuid::now_v7().to_string(),
                });
            }
        }
    }
    if !planned.is_empty() {
        for (at, outcome) in write_all(tx, changes, &connectors, &planned).await? {
            outcomes[at] = Some(Ok(outcome));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every change decided"))
        .collect())
}

/// The commands that changes with a used request id produced, by
/// connector id.
async fn replayed(
    tx: &impl Db,
    changes: &[Change],
) -> Result<HashMap<String, Command>, StoreError> {
    let (ids, request_ids): (Vec<&str>, Vec<&str>) = changes
        .iter()
        .filter_map(|change| Some((change.connector_id(), change.request_id()?)))
        .unzip();
    let mut replays = HashMap::new();
    if ids.is_empty() {
        return Ok(replays);
    }
    for row in tx
        .query(&sql::replayed_commands(), &[&ids, &request_ids])
        .await?
    {
        let command = command_from_row(&row)?;
        replays.insert(command.connector_id.clone(), command);
    }
    Ok(replays)
}

/// For the pauses among `changes`: the region before the start each
/// supersedes, when no agent received that start.
async fn undelivered_starts(
    tx: &impl Db,
    changes: &[Change],
) -> Result<HashMap<String, String>, StoreError> {
    let pauses: Vec<&str> = changes
        .iter()
        .filter(|change| matches!(change, Change::Pause(_)))
        .map(Change::connector_id)
        .collect();
    let mut from = HashMap::new();
    if pauses.is_empty() {
        return Ok(from);
    }
    for row in tx.query(sql::UNDELIVERED_STARTS, &[&pauses]).await? {
        from.entry(row.get(0)).or_insert_with(|| row.get(1));
    }
    Ok(from)
}

/// The connected agents of `region` whose driver cannot pull back.
async fn agents_without_pull_back(
    client: &impl Db,
    region: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = client
        .query(
            "SELECT id, driver FROM agents
             WHERE region = $1 AND NOT pull_back AND disconnect_time IS NULL ORDER BY id",
            &[&region],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

async fn region_exists(client: &impl Db, region: &str) -> Result<bool, StoreError> {
    let row = client.query_one(sql::REGION_EXISTS, &[&region]).await?;
    Ok(row.get(0))
}

/// Writes the planned transitions: four statements over arrays, sent
/// together (executed in order, one round trip's wait); a failure aborts
/// the transaction and the first error is the one reported. Returns each
/// change's outcome with its index.
async fn write_all(
    tx: &super::conn::Tx<'_>,
    changes: &[Change],
    connectors: &HashMap<String, Connector>,
    planned: &[Planned],
) -> Result<Vec<(usize, CommandOutcome)>, StoreError> {
    let change = |p: &Planned| &changes[p.at];
    let ids = column(planned, |p| change(p).connector_id());
    let command_ids = column(planned, |p| p.command_id.as_str());
    let kinds = column(planned, |p| p.transition.command_kind.as_str());
    let pull_backs = column(planned, |p| p.transition.pull_back_time);
    let regions = column(planned, |p| p.transition.region.as_str());
    let previous = column(planned, |p| {
        connectors[change(p).connector_id()].region.as_str()
    });
    let generations = column(planned, |p| p.transition.generation);
    let request_ids = column(planned, |p| change(p).request_id());
    let reasons = column(planned, |p| change(p).reason());
    let traces = column(planned, |p| {
        trace_context_to_text(change(p).trace_context())
    });
    let principals = column(planned, |p| change(p).actor().principal.as_str());
    let skips = column(planned, |p| p.transition.skip_to_earliest);
    let states = column(planned, |p| p.transition.state.as_str());
    let counts = column(planned, |p| change(p).restart_count().map(i64::from));
    let desired = column(planned, |p| p.transition.desired_state.as_str());
    let audits = column(planned, |p| {
        change(p).audit_event(&p.command_id, &p.transition)
    });
    let audit = |field: fn(&crate::domain::NewAuditEvent) -> &str| column(&audits, field);
    let (a_principal, a_action, a_connector) = (
        audit(|e| &e.actor.principal),
        audit(|e| e.action.as_str()),
        audit(|e| &e.connector_id),
    );
    let (a_request, a_outcome, a_reason, a_peer, a_detail) = (
        audit(|e| &e.request_id),
        audit(|e| &e.outcome),
        audit(|e| &e.reason),
        audit(|e| &e.actor.peer),
        audit(|e| &e.detail),
    );
    let a_count = column(&audits, |e| {
        i64::try_from(e.count).unwrap_or(i64::MAX).max(1)
    });

    let supersede = tx.prepare_cached(sql::SUPERSEDE).await?;
    let insert = tx.prepare_cached(&sql::insert_commands()).await?;
    let update = tx.prepare_cached(&sql::update_connectors()).await?;
    let insert_audits = tx.prepare_cached(sql::INSERT_AUDITS).await?;
    let (_, command_rows, connector_rows, _) = tokio::try_join!(
        async { tx.execute(&supersede, &[&ids]).await },
        async {
            tx.query(
                &insert,
                &[
                    &command_ids,
                    &ids,
                    &kinds,
                    &pull_backs,
                    &regions,
                    &previous,
                    &generations,
                    &request_ids,
                    &reasons,
                    &traces,
                    &principals,
                    &skips,
                ],
            )
            .await
        },
        async {
            tx.query(
                &update,
                &[&ids, &states, &desired, &generations, &regions, &counts],
            )
            .await
        },
        async {
            tx.execute(
                &insert_audits,
                &[
                    &a_principal,
                    &a_action,
                    &a_connector,
                    &a_request,
                    &a_outcome,
                    &a_reason,
                    &a_peer,
                    &a_detail,
                    &a_count,
                ],
            )
            .await
        },
    )?;
    let mut commands: HashMap<String, Command> = HashMap::with_capacity(planned.len());
    for row in &command_rows {
        let command = command_from_row(row)?;
        commands.insert(command.connector_id.clone(), command);
    }
    let mut updated: HashMap<String, Connector> = HashMap::with_capacity(planned.len());
    for row in &connector_rows {
        let connector = connector_from_row(row)?;
        updated.insert(connector.id.clone(), connector);
    }
    planned
        .iter()
        .map(|p| {
            let id = change(p).connector_id();
            match (updated.remove(id), commands.remove(id)) {
                (Some(connector), Some(command)) => Ok((
                    p.at,
                    CommandOutcome {
                        connector,
                        command,
                        replayed: false,
                    },
                )),
                _ => Err(StoreError::Internal(
                    format!("connector {id}'s change was not written back").into(),
                )),
            }
        })
        .collect()
}
