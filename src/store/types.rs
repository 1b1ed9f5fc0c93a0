//! The values the store traits take and give, shared by both backends.

use super::StoreError;
use crate::domain::{Command, CommandStatus, Connector, ConnectorState, LagCause, Session};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// One page of a connector search.
#[derive(Clone, Debug)]
pub struct Page {
    pub connectors: Vec<Connector>,
    /// Whether more connectors follow the last one returned.
    pub more: bool,
    /// Connectors matching the filters, across all pages.
    pub total: i64,
}

/// Whether `Connectors::transitions` writes what it decided or only shows
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Commit,
    Preview,
}

/// The result of an accepted start or pause, or of its retry.
#[derive(Clone, Debug)]
pub struct CommandOutcome {
    pub connector: Connector,
    pub command: Command,
    /// True when `request_id` matched an earlier call and nothing changed.
    pub replayed: bool,
}

/// What `Connectors::transitions` answers: each change's outcome, in the
/// order of the changes (a refusal or a missing connector is that
/// change's).
pub type Outcomes = Vec<Result<CommandOutcome, StoreError>>;

/// A change of a connector: its position in the feed, the connector's
/// version it made, and what a search saw before it (None: the connector
/// is new).
#[derive(Clone, Debug)]
pub struct ChangeEntry {
    pub seq: i64,
    pub connector_id: String,
    /// 0 for changes recorded before versions were (PostgreSQL migration
    /// V20, SQLite V16).
    pub version: i64,
    pub before: Option<crate::domain::watch::Searchable>,
}

/// What a round of automatic starts did.
#[derive(Clone, Debug, Default)]
pub struct RestartRound {
    pub scheduled: usize,
    pub cancelled: usize,
    pub reset: usize,
    /// The automatic starts issued (their commands wait for delivery).
    pub started: Vec<CommandOutcome>,
}

/// A batch call recorded under its request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    /// What the call asked, hashed: a retry must ask the same.
    pub fingerprint: String,
    /// Who made the call: a retry must be theirs (empty for batches
    /// recorded before this was kept).
    pub principal: String,
    /// The connectors it chose, in the order it processes them.
    pub connector_ids: Vec<String>,
    /// Its encoded answer, once it finished.
    pub response: Option<Vec<u8>>,
}

/// A batch call to record (`Batches::begin_batch`): under its request id,
/// what it asked (hashed), who made it and the connectors it chose.
#[derive(Clone, Copy, Debug)]
pub struct NewBatch<'a> {
    pub request_id: &'a str,
    pub fingerprint: &'a str,
    pub principal: &'a str,
    pub connector_ids: &'a [String],
}

/// What `Dispatch::claim_commands` is asked: pending commands of
/// `region` for these local sessions, each with how many more commands
/// its queue takes; an agent silent for `offline_after` is offline.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub region: &'a str,
    pub sessions: &'a [(Session, usize)],
    pub offline_after: Duration,
}

impl Claim<'_> {
    /// How many commands the sessions take in all.
    pub fn room(&self) -> usize {
        self.sessions.iter().map(|(_, room)| room).sum()
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
    crate::domain::watch::fold(text)
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
pub struct PendingHeartbeat {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_match_literally() {
        assert_eq!(escape_like(r"10.0_1%\"), r"10.0\_1\%\\");
        assert_eq!(fold("ÄPFEL"), "äpfel");
    }
}
