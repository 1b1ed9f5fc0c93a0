//! Persistence. The `Store` trait is what the API needs; backends load and
//! save, and leave every decision to `crate::domain`.

pub mod postgres;
pub mod refusals;
pub mod sqlite;

use crate::domain::{
    Agent, AuditEvent, AuditFilter, Change, Command, CommandReport, Connector, Cursor, Hello,
    NewAuditEvent, NewConnector, ObservedStatus, PauseRequest, RegionSummary, Rejection, Replica,
    SearchFilter, Session, SessionEnd, StartRequest,
};
use crate::domain::{CommandStatus, ConnectorState, LagCause};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Failures a store reports, already translated from driver errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("connector {0} does not exist")]
    ConnectorNotFound(String),
    #[error("command {0} does not exist")]
    CommandNotFound(String),
    #[error("connector {0} already exists")]
    ConnectorAlreadyExists(String),
    /// The domain refused the change; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The database cannot be reached (connection refused or lost, pool
    /// exhausted, server shutting down). Retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A hello claims an agent id that is registered in another region: an
    /// agent id belongs to one region. Nothing was written.
    #[error("agent {agent_id} is registered in region {registered}, not {claimed}")]
    AgentInOtherRegion {
        agent_id: String,
        registered: String,
        claimed: String,
    },
    /// A newer session of the agent exists; this session's write was refused.
    #[error("session {epoch} of agent {agent_id} was superseded")]
    Fenced { agent_id: String, epoch: i64 },
    /// Leader-only work was refused: the lease of this term lapsed or
    /// another replica holds it now.
    #[error("the leader lease of term {term} is no longer held")]
    NotLeader { term: i64 },
    /// Anything else: a bug or a schema mismatch. Logged, never shown.
    #[error("store failure: {0}")]
    Internal(String),
}

/// One page of a connector search.
#[derive(Clone, Debug)]
pub struct Page {
    pub connectors: Vec<Connector>,
    /// Whether more connectors follow the last one returned.
    pub more: bool,
    /// Connectors matching the filters, across all pages.
    pub total: i64,
}

/// The result of an accepted start or pause, or of its retry.
#[derive(Clone, Debug)]
pub struct CommandOutcome {
    pub connector: Connector,
    pub command: Command,
    /// True when `request_id` matched an earlier call and nothing changed.
    pub replayed: bool,
}

/// What the API layer needs from persistence. Every method that changes
/// something does so in one transaction: it either fully happens or leaves
/// no trace.
pub trait Store: Clone + Send + Sync + 'static {
    /// Inserts a STOPPED connector at generation 0 in its destination's
    /// region.
    fn create_connector(
        &self,
        new: NewConnector,
    ) -> impl Future<Output = Result<Connector, StoreError>> + Send;

    fn get_connector(&self, id: &str)
    -> impl Future<Output = Result<Connector, StoreError>> + Send;

    /// Up to `limit` connectors matching `filter`, ordered by (name, id),
    /// strictly after `after`.
    fn list_connectors(
        &self,
        filter: &SearchFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Issues a command: loads the connector under a row lock, returns the
    /// first call's command to a retried `request_id`, asks
    /// `Change::decide`, and writes the transition, its PENDING command
    /// (superseding the unanswered ones) and its audit event in one
    /// transaction. The one place a command is written, per backend.
    fn issue_command(
        &self,
        change: &Change,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send;

    /// `issue_command` for a start.
    fn start_connector(
        &self,
        request: &StartRequest,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send {
        let change = Change::Start(request.clone());
        async move { self.issue_command(&change).await }
    }

    /// `issue_command` for a pause.
    fn pause_connector(
        &self,
        request: &PauseRequest,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send {
        let change = Change::Pause(request.clone());
        async move { self.issue_command(&change).await }
    }

    fn get_command(&self, id: &str) -> impl Future<Output = Result<Command, StoreError>> + Send;

    /// The key page tokens are signed with, the same for every replica.
    fn page_token_key(&self) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Appends an audit event on its own (a refused call; changes that were
    /// made record theirs in their own transaction).
    fn append_audit(
        &self,
        event: &NewAuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` audit events matching `filter`, newest first, and
    /// whether more follow.
    fn list_audit_events(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<AuditEvent>, bool), StoreError>> + Send;

    /// Succeeds when the database answers; drives the health service.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The connection pool's occupancy, for metrics; None without a pool.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
}

/// A connection pool's occupancy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    pub max: u64,
    pub in_use: u64,
    pub idle: u64,
    /// Callers waiting for a connection.
    pub waiting: u64,
}

/// Unanswered commands of one region and status.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpenCommands {
    pub count: u64,
    pub oldest_age: Duration,
}

impl MetricsSample {
    /// The sample with explicit zeros: every state, lag cause and open
    /// status for each region seen, so that a count falling to zero reads
    /// 0 rather than vanishing.
    pub fn with_zeros(mut self) -> Self {
        let regions: std::collections::BTreeSet<String> = self
            .connectors
            .keys()
            .map(|(region, _)| region.clone())
            .chain(self.open_commands.keys().map(|(region, _)| region.clone()))
            .collect();
        for region in regions {
            for state in ConnectorState::ALL {
                self.connectors.entry((region.clone(), *state)).or_insert(0);
            }
            for cause in [LagCause::Latency, LagCause::AgentOffline] {
                self.lagging.entry((region.clone(), cause)).or_insert(0);
            }
            for status in [CommandStatus::Pending, CommandStatus::Delivered] {
                self.open_commands
                    .entry((region.clone(), status))
                    .or_default();
            }
        }
        self
    }
}

/// The database-wide figures the metrics report, sampled together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSample {
    /// Connectors by (region, state).
    pub connectors: BTreeMap<(String, ConnectorState), u64>,
    /// Lagging connectors by (region, cause).
    pub lagging: BTreeMap<(String, LagCause), u64>,
    /// PENDING and DELIVERED commands by (region, status).
    pub open_commands: BTreeMap<(String, CommandStatus), OpenCommands>,
}

/// The case-insensitive form that search compares, in every backend:
/// Unicode lower case, the same for stored names and for queries.
pub(crate) fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// Makes `text` match itself literally inside a LIKE pattern whose escape
/// character is a backslash (both backends' searches).
pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A heartbeat kept in memory until the next flush.
#[derive(Clone, Debug)]
pub struct Seen {
    pub agent_id: String,
    pub epoch: i64,
    pub time: DateTime<Utc>,
}

/// The leader lease as one replica holds it. Leader-only writes pass it
/// and are refused (`StoreError::NotLeader`) once it lapsed or changed hands:
/// the term is a fencing token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub term: i64,
}

/// A wake-up from another replica: only which region's dispatcher to run,
/// or which command completed; never data, which is read from the tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// A command for this region was committed elsewhere.
    Region(String),
    /// A command completed elsewhere (a `wait: true` call may be waiting).
    Completed(String),
    /// The replica with this id started: there is a peer to wake.
    Joined(String),
    /// The listener (re)connected: wake-ups may have been missed, so look
    /// at everything.
    All,
}

/// Receives wake-ups from other replicas.
pub type WakeupHandler = std::sync::Arc<dyn Fn(Wakeup) + Send + Sync>;

/// What agent sessions need from persistence. Every write on behalf of a
/// session is fenced: it fails with `StoreError::Fenced` once a newer
/// session of the same agent exists. `offline_after` is how long an agent
/// may stay silent before it counts as offline.
pub trait FleetStore: Store {
    /// Records a new session (bumping the agent's epoch), makes the
    /// commands delivered to an earlier session pending again, and records
    /// the connectors the hello reports. An agent id registered in another
    /// region is refused (`StoreError::AgentInOtherRegion`) with nothing
    /// written: the session holding it is left alone.
    fn open_session(
        &self,
        hello: &Hello,
    ) -> impl Future<Output = Result<Session, StoreError>> + Send;

    /// Marks the session's stream ended, audits why (`end`), and makes
    /// what it left unanswered pending again (no-op for a session that a
    /// newer one superseded or that was already ended elsewhere: those
    /// ends were audited where they happened). Returns how many commands
    /// became pending.
    fn close_session(
        &self,
        session: &Session,
        end: &SessionEnd,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// At start-up, before this replica's first heartbeat: sessions
    /// recorded as held by this replica id are left over from an earlier
    /// run of it (this process holds none yet), unless a live process
    /// heartbeats under the same id (within `replica_ttl`). They end,
    /// audited as `REPLICA_RESTARTED`, and what they left unanswered becomes
    /// pending again. Returns how many ended.
    fn end_orphaned_sessions(
        &self,
        replica_ttl: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Applies reported statuses (see `domain::fleet::status_effect`).
    fn record_statuses(
        &self,
        session: &Session,
        statuses: &[ObservedStatus],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies the statuses several sessions reported, in one transaction
    /// where the backend allows; returns the sessions found superseded,
    /// whose statuses were skipped.
    fn record_status_batch(
        &self,
        batch: &[(Session, Vec<ObservedStatus>)],
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send {
        async move {
            let mut fenced = Vec::new();
            for (session, statuses) in batch {
                match self.record_statuses(session, statuses).await {
                    Ok(()) => {}
                    Err(StoreError::Fenced { .. }) => fenced.push(session.clone()),
                    Err(error) => return Err(error),
                }
            }
            Ok(fenced)
        }
    }

    /// Writes the last heartbeat times kept in memory, in one statement;
    /// entries of superseded sessions are skipped. Returns the sessions
    /// among them (agent id, epoch) recorded as ended: by the leader, which
    /// took this replica for dead, or by this replica itself a moment ago.
    /// Live streams of those sessions must end.
    fn flush_heartbeats(
        &self,
        seen: &[Seen],
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;

    /// Regions that have pending commands.
    fn pending_regions(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Delivers pending commands of `region` to the given local sessions
    /// (each with how many more commands its queue takes): marks them
    /// DELIVERED and returns them with the session they are for. Each goes
    /// to the online agent running its connector, else to the least loaded
    /// online agent of the region (`domain::fleet::assign`); commands whose
    /// agent is not among `sessions` stay pending. At most one unanswered
    /// command per connector, oldest generation first.
    fn claim_commands(
        &self,
        region: &str,
        sessions: &[(Session, usize)],
        offline_after: Duration,
    ) -> impl Future<Output = Result<Vec<(Session, Command)>, StoreError>> + Send;

    /// Makes a claimed command pending again (it could not be sent).
    fn release_command(
        &self,
        session: &Session,
        command_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Completes a delivered command with the agent's result (see
    /// `domain::fleet::result_effect`). None when the result is a duplicate,
    /// late, or for a command this agent does not hold: nothing changes.
    fn complete_command(
        &self,
        session: &Session,
        report: &CommandReport,
    ) -> impl Future<Output = Result<Option<Command>, StoreError>> + Send;

    /// Leader-only. Agents silent for `offline_after`, and agents whose
    /// session is held by a replica silent for `replica_ttl` (it died):
    /// their connectors that were running or failed become UNKNOWN, their
    /// unanswered commands pending again. Returns how many rows changed.
    fn sweep_offline(
        &self,
        lease: Lease,
        offline_after: Duration,
        replica_ttl: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Leader-only. Commands delivered longer than `timeout` ago and never
    /// answered become pending again (agents apply a generation once, so a
    /// redelivery is safe). Returns how many.
    fn expire_deliveries(
        &self,
        lease: Lease,
        timeout: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// This replica's identity, recorded with every session it opens.
    fn replica_id(&self) -> &str;

    /// The replicas sharing the database, alive when heard from within
    /// `replica_ttl` (the embedded store's one process is `embedded`).
    fn list_replicas(
        &self,
        replica_ttl: Duration,
    ) -> impl Future<Output = Result<Vec<Replica>, StoreError>> + Send;

    /// Records that this replica is alive (and whether it is draining);
    /// called once per heartbeat interval.
    fn replica_heartbeat(
        &self,
        address: &str,
        draining: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes this replica's row and gives up its lease (clean stop).
    fn retire_replica(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes or renews the leader lease for `ttl`. None while another
    /// replica holds it.
    fn acquire_lease(
        &self,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// Wakes the other replicas (their dispatchers for these regions, or
    /// their waiters for these commands). A no-op where replicas cannot
    /// signal each other; their polling then delivers.
    fn publish(&self, wakeups: &[Wakeup]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Starts listening for other replicas' wake-ups, if the backend can;
    /// the task reconnects by itself and ends with `shutdown`.
    fn listen(
        &self,
        handler: WakeupHandler,
        check_every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>>;

    fn list_agents(
        &self,
        region: Option<&str>,
        offline_after: Duration,
    ) -> impl Future<Output = Result<Vec<Agent>, StoreError>> + Send;

    fn list_regions(
        &self,
        offline_after: Duration,
    ) -> impl Future<Output = Result<Vec<RegionSummary>, StoreError>> + Send;

    /// Connectors by region and state, lagging ones under `latency_alert`
    /// by cause, and unanswered commands: what the metrics gauges show.
    fn metrics_sample(
        &self,
        latency_alert: Duration,
    ) -> impl Future<Output = Result<MetricsSample, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_match_literally() {
        assert_eq!(escape_like(r"10.0_1%\"), r"10.0\_1\%\\");
        assert_eq!(fold("ÄPFEL"), "äpfel");
    }
}
