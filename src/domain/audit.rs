//! The audit trail: who did what, to which connector, from where, and how
//! it ended.

use super::validate::{MAX_ID_LEN, MAX_REASON_LEN, MAX_REQUEST_ID_LEN};
use chrono::{DateTime, Utc};

/// Who makes a change, and from where: recorded with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The principal's name (`anonymous` without an auth file).
    pub principal: String,
    /// The caller's address, as the server saw it.
    pub peer: String,
}

impl Default for Actor {
    /// Changes the control plane makes by itself (the demo seed, tests).
    fn default() -> Self {
        Actor {
            principal: "system".to_owned(),
            peer: String::new(),
        }
    }
}

/// What was done. Stored by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    CreateConnector,
    StartConnector,
    PauseConnector,
    UpdateRestartPolicy,
    MarkConnectorStopped,
    AgentSessionStart,
    AgentSessionEnd,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CreateConnector => "CREATE_CONNECTOR",
            AuditAction::StartConnector => "START_CONNECTOR",
            AuditAction::PauseConnector => "PAUSE_CONNECTOR",
            AuditAction::UpdateRestartPolicy => "UPDATE_RESTART_POLICY",
            AuditAction::MarkConnectorStopped => "MARK_CONNECTOR_STOPPED",
            AuditAction::AgentSessionStart => "AGENT_SESSION_START",
            AuditAction::AgentSessionEnd => "AGENT_SESSION_END",
        }
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub actor: Actor,
    pub action: AuditAction,
    pub connector_id: String,
    pub request_id: String,
    /// `OK`, or the gRPC code of a refused call (`PERMISSION_DENIED`, ...).
    pub outcome: String,
    /// The refusal's ErrorInfo reason, or the reason an operator gave.
    pub reason: String,
    /// The command created, or the agent session's id and epoch.
    pub detail: String,
    /// How many identical refusals it stands for (1 unless aggregated).
    pub count: u64,
}

impl NewAuditEvent {
    /// A change that was made.
    pub fn ok(actor: &Actor, action: AuditAction, connector_id: &str) -> Self {
        NewAuditEvent {
            actor: actor.clone(),
            action,
            connector_id: connector_id.to_owned(),
            request_id: String::new(),
            outcome: "OK".to_owned(),
            reason: String::new(),
            detail: String::new(),
            count: 1,
        }
    }

    /// A refused call, from the API or the console alike. What the caller
    /// sent is kept only up to the lengths a valid call may have, so that a
    /// refused call cannot make the trail grow without bound; `reason` is
    /// the refusal's own (ErrorInfo) reason, what refusals are aggregated
    /// by, and what the caller wrote goes into the detail.
    pub fn refused(
        actor: &Actor,
        action: AuditAction,
        connector_id: &str,
        request_id: &str,
        refusal: Refused<'_>,
    ) -> Self {
        let mut detail = bounded(refusal.message, MAX_DETAIL_LEN);
        if !refusal.reason_given.is_empty() {
            detail.push_str("; reason given: ");
            detail.push_str(&bounded(refusal.reason_given, MAX_REASON_LEN));
        }
        NewAuditEvent {
            actor: actor.clone(),
            action,
            connector_id: bounded(connector_id, MAX_ID_LEN),
            request_id: bounded(request_id, MAX_REQUEST_ID_LEN),
            outcome: refusal.code.to_owned(),
            reason: refusal.reason.to_owned(),
            detail,
            count: 1,
        }
    }
}

/// How a call was refused, for [`NewAuditEvent::refused`].
#[derive(Clone, Copy, Debug)]
pub struct Refused<'a> {
    /// The gRPC code's name (`PERMISSION_DENIED`, ...).
    pub code: &'a str,
    /// The ErrorInfo reason (`CSRF_CHECK_FAILED`, ...).
    pub reason: &'a str,
    /// What the caller was told.
    pub message: &'a str,
    /// The reason the caller gave for the change, if any.
    pub reason_given: &'a str,
}

/// How much of a refusal's message the trail keeps.
const MAX_DETAIL_LEN: usize = 500;

fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub principal: String,
    pub action: String,
    pub connector_id: String,
    pub request_id: String,
    pub outcome: String,
    pub reason: String,
    pub peer: String,
    pub detail: String,
    /// How many identical refusals it stands for (1 unless aggregated).
    pub count: i64,
}

/// Which events to list: every filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub connector_id: Option<String>,
    pub principal: Option<String>,
    /// Inclusive.
    pub start_time: Option<DateTime<Utc>>,
    /// Exclusive.
    pub end_time: Option<DateTime<Utc>>,
    /// Events older than this id only (the page token): newest first.
    pub before_id: Option<i64>,
}

/// Kinds of refusal tracked at once for one principal, and for all; past
/// them, a principal's refusals of new kinds are counted together (memory
/// stays bounded, and one principal's flood never stops another's
/// refusals from being recorded).
const MAX_KINDS_PER_PRINCIPAL: usize = 64;
const MAX_REFUSAL_KINDS: usize = 10_000;

/// Connector ids and peers named in an aggregated event.
const SAMPLES: usize = 5;

/// What makes two refusals identical: who, what, and how it was refused
/// (the refusal's own reason, never text the caller chose).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RefusalKind {
    principal: String,
    action: AuditAction,
    outcome: String,
    reason: String,
}

impl RefusalKind {
    fn of(event: &NewAuditEvent) -> Self {
        RefusalKind {
            principal: event.actor.principal.clone(),
            action: event.action,
            outcome: event.outcome.clone(),
            reason: event.reason.clone(),
        }
    }
}

/// The refusals of one kind counted in the current window.
#[derive(Debug)]
struct Tally {
    /// The first one, recorded at once; the summary is built from it.
    first: NewAuditEvent,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    /// Counted after the first.
    more: u64,
    /// A few of what the counted ones named.
    connectors: std::collections::BTreeSet<String>,
    peers: std::collections::BTreeSet<String>,
}

/// Aggregates refused calls for the audit trail: per window, each kind's
/// first refusal is written at once, and the others as one event whose
/// `count` says how many. A flood costs two rows per kind per window.
#[derive(Debug, Default)]
pub struct RefusalAggregator {
    tallies: std::collections::HashMap<RefusalKind, Tally>,
    /// Kinds tracked per principal in this window.
    kinds: std::collections::HashMap<String, usize>,
    /// Refusals not itemized since the last drain (kinds beyond the
    /// bounds, or counted behind a first one whose write failed), by
    /// principal, with the first one's action.
    untracked: std::collections::HashMap<String, (AuditAction, u64)>,
}

impl RefusalAggregator {
    /// The event to record now: a refusal whose kind is new in this
    /// window. Others are counted, for `drain`.
    pub fn admit(&mut self, event: NewAuditEvent, now: DateTime<Utc>) -> Option<NewAuditEvent> {
        let kind = RefusalKind::of(&event);
        if let Some(tally) = self.tallies.get_mut(&kind) {
            tally.more += 1;
            tally.until = now;
            if tally.connectors.len() < SAMPLES && !event.connector_id.is_empty() {
                tally.connectors.insert(event.connector_id);
            }
            if tally.peers.len() < SAMPLES {
                tally.peers.insert(event.actor.peer);
            }
            return None;
        }
        let principal_kinds = self.kinds.get(&kind.principal).copied().unwrap_or(0);
        if principal_kinds >= MAX_KINDS_PER_PRINCIPAL || self.tallies.len() >= MAX_REFUSAL_KINDS {
            self.untrack(kind, 1);
            return None;
        }
        *self.kinds.entry(kind.principal.clone()).or_default() += 1;
        let tally = Tally {
            first: event.clone(),
            since: now,
            until: now,
            more: 0,
            connectors: std::collections::BTreeSet::new(),
            peers: std::collections::BTreeSet::from([event.actor.peer.clone()]),
        };
        self.tallies.insert(kind, tally);
        Some(event)
    }

    fn untrack(&mut self, kind: RefusalKind, count: u64) {
        // Bounded too: principals come from the auth file.
        if self.untracked.len() < MAX_REFUSAL_KINDS || self.untracked.contains_key(&kind.principal)
        {
            self.untracked
                .entry(kind.principal)
                .or_insert((kind.action, 0))
                .1 += count;
        }
    }

    /// Forgets the kind of `event`, admitted but not recorded (its write
    /// failed): the next refusal of the kind is recorded at once, and those
    /// counted behind it are in the next drain.
    pub fn forget(&mut self, event: &NewAuditEvent) {
        let kind = RefusalKind::of(event);
        if let Some(tally) = self.tallies.remove(&kind) {
            if let Some(count) = self.kinds.get_mut(&kind.principal) {
                *count = count.saturating_sub(1);
            }
            if tally.more > 0 {
                self.untrack(kind, tally.more);
            }
        }
    }

    /// Ends the window: one event per kind refused again since its first,
    /// with the count; every kind starts afresh.
    pub fn drain(&mut self) -> Vec<NewAuditEvent> {
        let several = |set: &std::collections::BTreeSet<String>| {
            set.iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        let single = |set: &std::collections::BTreeSet<String>| {
            (set.len() == 1)
                .then(|| set.iter().next().cloned())
                .flatten()
                .unwrap_or_default()
        };
        let mut events: Vec<NewAuditEvent> = self
            .tallies
            .drain()
            .filter(|(_, tally)| tally.more > 0)
            .map(|(_, tally)| NewAuditEvent {
                actor: Actor {
                    principal: tally.first.actor.principal.clone(),
                    peer: single(&tally.peers),
                },
                connector_id: single(&tally.connectors),
                request_id: String::new(),
                detail: format!(
                    "{} more refusals like the one recorded at {}, until {}; connectors (up to \
                     {SAMPLES}): {}; peers (up to {SAMPLES}): {}",
                    tally.more,
                    tally.since.to_rfc3339(),
                    tally.until.to_rfc3339(),
                    several(&tally.connectors),
                    several(&tally.peers),
                ),
                count: tally.more,
                ..tally.first
            })
            .collect();
        for (principal, (action, count)) in self.untracked.drain() {
            events.push(NewAuditEvent {
                actor: Actor {
                    principal,
                    peer: String::new(),
                },
                action,
                connector_id: String::new(),
                request_id: String::new(),
                outcome: "REFUSED".to_owned(),
                reason: "NOT_ITEMIZED".to_owned(),
                detail: format!(
                    "{count} refused calls not itemized in this window (more than \
                     {MAX_KINDS_PER_PRINCIPAL} kinds of refusal, or behind a first one that \
                     could not be recorded)"
                ),
                count,
            });
        }
        self.kinds.clear();
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(principal: &str, connector: &str, reason: &str) -> NewAuditEvent {
        NewAuditEvent {
            outcome: "PERMISSION_DENIED".to_owned(),
            reason: reason.to_owned(),
            ..NewAuditEvent::ok(
                &Actor {
                    principal: principal.to_owned(),
                    peer: "10.0.0.9:5000".to_owned(),
                },
                AuditAction::PauseConnector,
                connector,
            )
        }
    }

    #[test]
    fn a_flood_of_identical_refusals_is_one_event_now_and_one_with_the_count() {
        let mut aggregator = RefusalAggregator::default();
        let now = Utc::now();
        assert!(
            aggregator
                .admit(refusal("vera", "c0", "PERMISSION_DENIED"), now)
                .is_some()
        );
        for i in 1..1000 {
            let admitted =
                aggregator.admit(refusal("vera", &format!("c{i}"), "PERMISSION_DENIED"), now);
            assert!(admitted.is_none(), "refusal {i} written");
        }
        // Another principal's refusal is not hidden by the flood.
        assert!(
            aggregator
                .admit(refusal("otto", "c1", "PERMISSION_DENIED"), now)
                .is_some()
        );
        let summary = aggregator.drain();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].count, 999);
        assert_eq!(summary[0].actor.principal, "vera");
        assert_eq!(summary[0].actor.peer, "10.0.0.9:5000");
        assert!(
            summary[0].detail.contains("999 more"),
            "{}",
            summary[0].detail
        );
        assert!(
            summary[0].detail.contains("): c1, c2, c3, c4, c5;"),
            "{}",
            summary[0].detail
        );
        // A new window: the next one is recorded at once again.
        assert!(aggregator.drain().is_empty());
        assert!(
            aggregator
                .admit(refusal("vera", "c0", "PERMISSION_DENIED"), now)
                .is_some()
        );
    }

    #[test]
    fn a_principal_varying_its_refusals_cannot_crowd_out_another() {
        let mut aggregator = RefusalAggregator::default();
        let now = Utc::now();
        let written = (0..1_000)
            .filter(|i| {
                aggregator
                    .admit(refusal("vera", "c", &format!("R{i}")), now)
                    .is_some()
            })
            .count();
        assert_eq!(written, MAX_KINDS_PER_PRINCIPAL);
        // Another principal's refusal is still recorded at once.
        assert!(aggregator.admit(refusal("otto", "c", "R0"), now).is_some());
        let drained = aggregator.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].actor.principal, "vera");
        assert_eq!(drained[0].reason, "NOT_ITEMIZED");
        assert_eq!(drained[0].count, 1_000 - MAX_KINDS_PER_PRINCIPAL as u64);
    }

    #[test]
    fn a_refusal_whose_write_failed_is_not_counted_as_recorded() {
        let mut aggregator = RefusalAggregator::default();
        let now = Utc::now();
        let first = aggregator.admit(refusal("vera", "c0", "R"), now).unwrap();
        assert!(aggregator.admit(refusal("vera", "c1", "R"), now).is_none());
        aggregator.forget(&first);
        assert!(aggregator.admit(refusal("vera", "c2", "R"), now).is_some());
        let counted: u64 = aggregator.drain().iter().map(|e| e.count).sum();
        assert_eq!(counted, 1, "the one counted before the failure");
    }
}
