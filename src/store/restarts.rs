//! A round of automatic starts, planned once for both backends: each asks
//! `domain::restart::plan` about the connectors that may need something,
//! then writes the marks (schedule, cancel, reset) and issues the starts.

use crate::domain::restart::{Plan, restart_request};
use crate::domain::{Change, Connector};
use chrono::{DateTime, Utc};

/// The candidates a round looks at, as SQL both backends share (the time
/// `$1` / `?1` is the round's `now`): failed connectors meant to run
/// without a schedule, due schedules, schedules of connectors no longer
/// failed, and restarted connectors that run (their count may reset).
/// Each clause is served by a partial index. The rule itself is
/// `domain::restart::plan`; this only narrows what it is asked about.
pub(crate) const CANDIDATES: &str = "(desired_state = 'RUNNING' AND state = 'FAILED' \
         AND next_restart_time IS NULL)
     OR next_restart_time <= {now}
     OR (next_restart_time IS NOT NULL AND NOT (desired_state = 'RUNNING' AND state = 'FAILED'))
     OR (restart_count > 0 AND state = 'RUNNING' AND next_restart_time IS NULL)";

/// When a restarted connector's newest command, its start, succeeded:
/// what "has run for reset_after" counts from (a lateral subquery).
pub(crate) const RUNNING_SINCE: &str = "SELECT k.complete_time FROM commands k
     WHERE k.connector_id = connectors.id AND k.generation = connectors.generation
       AND k.kind = 'START' AND k.status = 'SUCCEEDED'";

/// A write that only the round's plan asked for, made only if the
/// connector is still as the round read it (same generation and update
/// time): anything written since wins, and the next round looks again.
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub id: String,
    pub generation: i64,
    pub update_time: DateTime<Utc>,
    pub kind: MarkKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkKind {
    Schedule(DateTime<Utc>),
    Cancel,
    Reset,
}

impl MarkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkKind::Schedule(_) => "SCHEDULE",
            MarkKind::Cancel => "CANCEL",
            MarkKind::Reset => "RESET",
        }
    }

    pub fn next_time(self) -> Option<DateTime<Utc>> {
        match self {
            MarkKind::Schedule(at) => Some(at),
            _ => None,
        }
    }
}

/// What a round writes.
#[derive(Debug, Default)]
pub(crate) struct RoundPlan {
    pub marks: Vec<Mark>,
    pub starts: Vec<Change>,
}

/// Plans a round over the candidates (each with when its start
/// succeeded, if that is its newest command).
pub(crate) fn plan_round(
    candidates: impl IntoIterator<Item = (Connector, Option<DateTime<Utc>>)>,
    now: DateTime<Utc>,
) -> RoundPlan {
    let mut round = RoundPlan::default();
    for (connector, running_since) in candidates {
        let kind = match crate::domain::restart::plan(&connector, running_since, now) {
            Plan::Nothing => continue,
            Plan::Start(automatic) => {
                round
                    .starts
                    .push(Change::Start(restart_request(&connector.id, automatic)));
                continue;
            }
            Plan::Schedule(at) => MarkKind::Schedule(at),
            Plan::Cancel => MarkKind::Cancel,
            Plan::Reset => MarkKind::Reset,
        };
        round.marks.push(Mark {
            id: connector.id,
            generation: connector.generation,
            update_time: connector.update_time,
            kind,
        });
    }
    round
}

/// Counts the marks of each kind among those written.
pub(crate) fn count(round: &mut crate::store::RestartRound, written: &[&str]) {
    for kind in written {
        match *kind {
            "SCHEDULE" => round.scheduled += 1,
            "CANCEL" => round.cancelled += 1,
            _ => round.reset += 1,
        }
    }
}
