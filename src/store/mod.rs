//! Persistence: the store traits. Backends load and save,
//! and leave every decision to `crate::domain`. Each trait is one
//! responsibility, and each backend implements it in a file of the same
//! name (`postgres/connectors.rs` and `sqlite/connectors.rs`, ...), so that
//! a diff of the two backends is one command.
//!
//! - `Connectors`: create, read, and issue commands (`transitions`: where
//!   commands are written, the one method each backend writes them in).
//! - `Batches`: the records that make a retried batch call answer as the
//!   first did.
//! - `Search`: ListConnectors.
//! - `AuditLog`: the audit trail.
//! - `Feed`: the change feed, every new version of a connector in commit
//!   order (WatchConnectors).
//! - `Sessions`: agent sessions, their statuses and heartbeats (fenced).
//! - `Dispatch`: handing commands to agents and recording their results.
//! - `Leadership`: replicas, the leader lease and its work, wake-ups.
//! - `Reads`: agents, regions and metrics for operators.
//!
//! `Store` is what the API needs, `FleetStore` what agent sessions need
//! too. Every method that changes something does so in one transaction: it
//! either fully happens or leaves no trace.
//!
//! Shared by both backends: `error.rs` (`StoreError`, what every method
//! fails with), `types.rs` (the values the traits take and give), `rows.rs`
//! (rows to domain values), `restarts.rs` (planning a round of automatic
//! starts), `retries.rs` (recognising a retried call that keeps no
//! command).

mod error;
pub mod postgres;
pub mod refusals;
mod restarts;
mod retries;
mod rows;
pub mod sqlite;
mod types;

use crate::domain::{
    Agent, AuditEvent, AuditFilter, Change, Command, CommandReport, Connector, Cursor, Hello,
    HistoryQuery, MarkStoppedRequest, NewAuditEvent, NewConnector, ObservedStatus, PauseRequest,
    RegionSummary, Replica, RestartPolicyRequest, SearchFilter, Session, SessionEnd, SessionReport,
    StartRequest,
};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

pub use error::{Cause, StoreError};
pub use postgres::{PgStore, Pooling};

/// Every store trait, for code that calls a backend's methods directly.
pub mod prelude {
    pub use super::{
        AuditLog, Batches, Connectors, Dispatch, Feed, FleetStore, Leadership, Reads, Search,
        Sessions, Store,
    };
}
pub use sqlite::SqliteStore;
pub use types::{
    BatchRecord, ChangeEntry, Claim, CommandOutcome, Lease, MetricsSample, NewBatch, OpenCommands,
    Outcomes, Page, PendingHeartbeat, PoolStatus, RestartRound, Wakeup, WakeupHandler, Write,
};
pub(crate) use types::{escape_like, fold};

/// Connectors: create, read, and the one way their desired state changes.
pub trait Connectors: Send + Sync {
    /// Inserts a STOPPED connector at generation 0 in its destination's
    /// region.
    fn create_connector(
        &self,
        new: NewConnector,
    ) -> impl Future<Output = Result<Connector, StoreError>> + Send;

    fn get_connector(&self, id: &str)
    -> impl Future<Output = Result<Connector, StoreError>> + Send;

    /// Where commands are written, the one place per backend: in one
    /// transaction (callers bound how many changes), each change's
    /// connector is loaded under a row lock, a retried `request_id` answered
    /// with the first call's command, `Change::decide` asked, and the
    /// transition, its PENDING command (superseding the unanswered ones)
    /// and its audit event written. Each outcome is that change's, a
    /// refusal or a missing connector included, and writes nothing of it;
    /// any other failure rolls all of them back and is the call's.
    /// `Write::Preview`: the same lookups, locks and decisions, then
    /// nothing is written; an outcome shows the connector as the change
    /// would leave it and the command it would issue (no id), or, for a
    /// used `request_id`, the command that call issued (`replayed`).
    fn transitions(
        &self,
        changes: &[Change],
        write: Write,
    ) -> impl Future<Output = Result<Outcomes, StoreError>> + Send;

    /// `transitions` of one change: its outcome is the call's.
    fn transition(
        &self,
        change: &Change,
        write: Write,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send {
        async move {
            self.transitions(std::slice::from_ref(change), write)
                .await?
                .pop()
                .expect("one outcome per change")
        }
    }

    /// Issues a command (`transition`).
    fn issue_command(
        &self,
        change: &Change,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send {
        let span = tracing::info_span!(
            "issue_command",
            connector_id = %change.connector_id(),
            kind = change.kind().as_str()
        );
        self.transition(change, Write::Commit).instrument(span)
    }

    /// `issue_command` as a dry run (`Write::Preview`).
    fn preview_command(
        &self,
        change: &Change,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send {
        let span = tracing::info_span!(
            "preview_command",
            connector_id = %change.connector_id(),
            kind = change.kind().as_str()
        );
        self.transition(change, Write::Preview).instrument(span)
    }

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

    /// Issues several commands in one transaction (`transitions`).
    fn issue_commands(
        &self,
        changes: &[Change],
    ) -> impl Future<Output = Result<Outcomes, StoreError>> + Send {
        let span = tracing::info_span!("issue_commands", changes = changes.len());
        self.transitions(changes, Write::Commit).instrument(span)
    }

    /// `issue_commands` as a dry run (`Write::Preview`).
    fn preview_commands(
        &self,
        changes: &[Change],
    ) -> impl Future<Output = Result<Outcomes, StoreError>> + Send {
        let span = tracing::info_span!("preview_commands", changes = changes.len());
        self.transitions(changes, Write::Preview).instrument(span)
    }

    /// MarkConnectorStopped, in one transaction: a retry with an audited
    /// `request_id` changes nothing; else the connector is locked, the
    /// online agent holding it (if any) looked up, `domain::mark_stopped::decide_mark_stopped`
    /// asked, and the mark, the superseding of its open commands and the
    /// audit event written (`preview`: decided, nothing written). Returns
    /// the connector as it is (or would be) and whether the call was a
    /// replay.
    fn mark_stopped(
        &self,
        request: &MarkStoppedRequest,
        preview: bool,
    ) -> impl Future<Output = Result<(Connector, bool), StoreError>> + Send;

    /// Sets a connector's restart policy and audits it, in one
    /// transaction; a retry with an audited `request_id` changes nothing.
    fn update_restart_policy(
        &self,
        request: &RestartPolicyRequest,
    ) -> impl Future<Output = Result<Connector, StoreError>> + Send;

    fn get_command(&self, id: &str) -> impl Future<Output = Result<Command, StoreError>> + Send;

    /// The page of a connector's commands `query` asks for (see
    /// `HistoryQuery`), and whether more follow. `ConnectorNotFound` when
    /// there is no such connector.
    fn list_commands(
        &self,
        query: &HistoryQuery,
    ) -> impl Future<Output = Result<(Vec<Command>, bool), StoreError>> + Send;

    /// The key page tokens are signed with, the same for every replica.
    fn page_token_key(&self) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
}

/// The records of batch calls (BatchPauseConnectors,
/// BatchStartConnectors), which make a retried batch return its first
/// answer.
pub trait Batches: Send + Sync {
    /// Records a batch call under its request id with what it chose and
    /// who made it, or, when the id is taken, returns the record already
    /// there (with its answer once the call that wrote it finished).
    fn begin_batch(
        &self,
        batch: NewBatch<'_>,
    ) -> impl Future<Output = Result<BatchRecord, StoreError>> + Send;

    /// The record of a batch call, if one used `request_id`.
    fn find_batch(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<BatchRecord>, StoreError>> + Send;

    /// Stores a batch call's answer.
    fn finish_batch(
        &self,
        request_id: &str,
        response: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// ListConnectors.
pub trait Search: Send + Sync {
    /// Up to `limit` connectors matching `filter`, ordered by (name, id),
    /// strictly after `after`.
    fn list_connectors(
        &self,
        filter: &SearchFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;
}

/// The audit trail.
pub trait AuditLog: Send + Sync {
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
}

/// Changes given their positions per transaction (`Feed::sequence_all`).
const SEQUENCE_BATCH: usize = 100_000;

/// The change feed: every new version of a connector in commit order, for
/// WatchConnectors.
pub trait Feed: Send + Sync {
    /// The newest change's position (the pruned horizon when none is kept),
    /// covering every change committed before the call.
    fn change_head(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Up to `limit` changes after position `after`, in commit order.
    /// `StoreError::ChangesPruned` when some of them were pruned.
    fn changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ChangeEntry>, StoreError>> + Send;

    /// Gives the oldest `up_to` changes committed and not yet in the feed
    /// their positions, and says how many it did. On PostgreSQL writers
    /// only record their changes (no lock: they commit concurrently) and
    /// this orders them (migration V20; any replica may call it at any
    /// time). The embedded store numbers changes as they are written: 0.
    fn sequence_changes(
        &self,
        up_to: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Gives every change committed so far its position, a bounded batch
    /// per transaction, and says how many it did.
    fn sequence_all(&self) -> impl Future<Output = Result<usize, StoreError>> + Send {
        async move {
            let mut total = 0;
            loop {
                let done = self.sequence_changes(SEQUENCE_BATCH).await?;
                total += done;
                if done < SEQUENCE_BATCH {
                    return Ok(total);
                }
            }
        }
    }

    /// Reclaims the space changes took while they waited for their
    /// positions (PostgreSQL: a VACUUM of that table, sooner than
    /// autovacuum would; skipped if one runs already). Nothing elsewhere.
    fn tidy_changes(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The connectors with these ids, as they are now (missing ids are
    /// gone).
    fn connectors_by_id(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Connector>, StoreError>> + Send;
}

/// What the API needs from persistence.
pub trait Store:
    Connectors + Batches + Search + AuditLog + Feed + Clone + Send + Sync + 'static
{
    /// Succeeds when the database answers; drives the health service.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The connection pool's occupancy, for metrics; None without a pool.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
}

/// Agent sessions. Every write on behalf of a session is fenced: it fails
/// with `StoreError::Fenced` once a newer session of the same agent exists.
pub trait Sessions: Send + Sync {
    /// Records a new session (bumping the agent's epoch), makes the
    /// commands delivered to an earlier session pending again, and records
    /// the connectors the hello reports, and those the agent ran before and
    /// no longer lists (`domain::presence::gone_effect`). An agent id registered in another
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

    /// Applies reported statuses (see `domain::reports::status_effect`).
    fn record_statuses(
        &self,
        session: &Session,
        statuses: &[ObservedStatus],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies what several sessions reported in heartbeats (statuses, and
    /// connectors they stopped listing: `domain::presence::gone_effect`), in
    /// one transaction; returns the sessions found superseded, whose
    /// reports were skipped.
    fn record_status_batch(
        &self,
        batch: &[(Session, SessionReport)],
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send;

    /// Writes the last heartbeat times kept in memory, in one statement;
    /// entries of superseded sessions are skipped. Returns the sessions
    /// among them (agent id, epoch) recorded as ended: by the leader, which
    /// took this replica for dead, or by this replica itself a moment ago.
    /// Live streams of those sessions must end.
    fn flush_heartbeats(
        &self,
        seen: &[PendingHeartbeat],
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
}

/// Handing commands to agents and recording what they answer.
/// `offline_after` is how long an agent may stay silent before it counts
/// as offline.
pub trait Dispatch: Send + Sync {
    /// Regions that have pending commands.
    fn pending_regions(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Delivers pending commands of the claim's region to its local
    /// sessions (`Claim`): marks them DELIVERED and returns them with the
    /// session they are for. Each goes to the online agent running its
    /// connector, else to the least loaded online agent of the region
    /// (`domain::assign::assign`); commands whose agent is not among the
    /// sessions stay pending. At most one unanswered command per
    /// connector, oldest generation first.
    fn claim_commands(
        &self,
        claim: Claim<'_>,
    ) -> impl Future<Output = Result<Vec<(Session, Command)>, StoreError>> + Send;

    /// Makes a claimed command pending again (it could not be sent).
    fn release_command(
        &self,
        session: &Session,
        command_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Completes a delivered command with the agent's result (see
    /// `domain::reports::result_effect`). None when the result is a duplicate,
    /// late, or for a command this agent does not hold: nothing changes.
    fn complete_command(
        &self,
        session: &Session,
        report: &CommandReport,
    ) -> impl Future<Output = Result<Option<Command>, StoreError>> + Send;
}

/// This replica among the others: its heartbeat, the leader lease and the
/// leader-only work it fences, and wake-ups between replicas.
pub trait Leadership: Send + Sync {
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

    /// Leader-only. One round of automatic starts at `now`
    /// (`domain::restart::plan` for each connector that may need one):
    /// failed connectors meant to run are scheduled, due ones started (as
    /// ordinary, audited commands, at most once per attempt), schedules
    /// that no longer apply dropped, and counts of connectors that ran
    /// long enough reset. Every write is fenced by the lease.
    fn restart_round(
        &self,
        lease: Lease,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<RestartRound, StoreError>> + Send;

    /// Leader-only. Drops recorded changes older than `keep` (always
    /// keeping the newest); resume tokens before them expire. Returns how
    /// many were dropped.
    fn prune_changes(
        &self,
        lease: Lease,
        keep: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

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
}

/// What operators read about the fleet.
pub trait Reads: Send + Sync {
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

/// What agent sessions and the fleet need from persistence: everything.
pub trait FleetStore: Store + Sessions + Dispatch + Leadership + Reads {}

impl<T: Store + Sessions + Dispatch + Leadership + Reads> FleetStore for T {}
