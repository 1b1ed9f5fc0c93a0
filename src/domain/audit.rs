//! The audit trail: who did what, to which connector, from where, and how
//! it ended.

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
    AgentSessionStart,
    AgentSessionEnd,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CreateConnector => "CREATE_CONNECTOR",
            AuditAction::StartConnector => "START_CONNECTOR",
            AuditAction::PauseConnector => "PAUSE_CONNECTOR",
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

/// How long identical refusals are gathered into one event: the first of a
/// kind is recorded at once, the rest of the window as one event with a
/// count.
pub const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Kinds of refusal tracked at once; past it, refusals of new kinds are
/// counted together (memory stays bounded whatever a flood varies).
const MAX_REFUSAL_KINDS: usize = 10_000;

/// Connector ids and peers named in an aggregated event.
const SAMPLES: usize = 5;

/// What makes two refusals identical: who, what, and how it was refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RefusalKind {
    principal: String,
    action: AuditAction,
    outcome: String,
    reason: String,
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
    connectors: std::collections::BTreeSet<String>,
    peers: std::collections::BTreeSet<String>,
}

/// Aggregates refused calls for the audit trail: per window, each kind's
/// first refusal is written at once, and the others as one event whose
/// `count` says how many. A flood costs two rows per kind per window.
#[derive(Debug, Default)]
pub struct RefusalAggregator {
    tallies: std::collections::HashMap<RefusalKind, Tally>,
    /// Refusals of kinds beyond `MAX_REFUSAL_KINDS`, since the last drain.
    untracked: u64,
}

impl RefusalAggregator {
    /// The event to record now: a refusal whose kind is new in this
    /// window. Others are counted, for `drain`.
    pub fn admit(&mut self, event: NewAuditEvent, now: DateTime<Utc>) -> Option<NewAuditEvent> {
        let kind = RefusalKind {
            principal: event.actor.principal.clone(),
            action: event.action,
            outcome: event.outcome.clone(),
            reason: event.reason.clone(),
        };
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
        if self.tallies.len() >= MAX_REFUSAL_KINDS {
            self.untracked += 1;
            return None;
        }
        let tally = Tally {
            first: event.clone(),
            since: now,
            until: now,
            more: 0,
            connectors: std::collections::BTreeSet::from([event.connector_id.clone()]),
            peers: std::collections::BTreeSet::from([event.actor.peer.clone()]),
        };
        self.tallies.insert(kind, tally);
        Some(event)
    }

    /// Ends the window: one event per kind refused again since its first,
    /// with the count; every kind starts afresh.
    pub fn drain(&mut self) -> Vec<NewAuditEvent> {
        let mut events: Vec<NewAuditEvent> = self
            .tallies
            .drain()
            .filter(|(_, tally)| tally.more > 0)
            .map(|(_, tally)| {
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
                NewAuditEvent {
                    actor: Actor {
                        principal: tally.first.actor.principal.clone(),
                        peer: single(&tally.peers),
                    },
                    connector_id: single(&tally.connectors),
                    request_id: String::new(),
                    detail: format!(
                        "{} more refusals like the one recorded at {}, until {}; connectors: \
                         {}{}; peers: {}{}",
                        tally.more,
                        tally.since.to_rfc3339(),
                        tally.until.to_rfc3339(),
                        several(&tally.connectors),
                        if tally.connectors.len() >= SAMPLES {
                            ", ..."
                        } else {
                            ""
                        },
                        several(&tally.peers),
                        if tally.peers.len() >= SAMPLES {
                            ", ..."
                        } else {
                            ""
                        },
                    ),
                    count: tally.more,
                    ..tally.first
                }
            })
            .collect();
        if self.untracked > 0 {
            events.push(NewAuditEvent {
                actor: Actor {
                    principal: "various".to_owned(),
                    peer: String::new(),
                },
                action: AuditAction::StartConnector,
                connector_id: String::new(),
                request_id: String::new(),
                outcome: "REFUSED".to_owned(),
                reason: "TOO_MANY_KINDS".to_owned(),
                detail: format!(
                    "{} refused calls of more than {MAX_REFUSAL_KINDS} kinds in one window, \
                     not itemized",
                    self.untracked
                ),
                count: self.untracked,
            });
            self.untracked = 0;
        }
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
            summary[0].detail.contains("c0, c1, c2, c3, c4, ..."),
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
    fn kinds_beyond_the_bound_are_counted_together() {
        let mut aggregator = RefusalAggregator::default();
        let now = Utc::now();
        for i in 0..MAX_REFUSAL_KINDS + 5 {
            aggregator.admit(refusal(&format!("p{i}"), "c", "R"), now);
        }
        let drained = aggregator.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].count, 5);
    }
}
