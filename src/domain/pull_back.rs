//! The store's time range against a start: whether a pull-back time is one
//! the store holds, and whether a checkpoint is. One rule for the server's
//! decisions and the agents' own checks.

use super::model::{Connector, ConnectorKind, TimeRange};
use chrono::{DateTime, TimeDelta, Utc};

/// How far a pull-back time may lie after the store's latest reported time
/// or the server's clock: callers', agents' and the server's clocks differ
/// a little, and the store's latest time is reported once per heartbeat.
/// The same allowance as Envoy's JWT `clock_skew_seconds` default.
pub const PULL_BACK_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

fn skew() -> TimeDelta {
    TimeDelta::from_std(PULL_BACK_CLOCK_SKEW).expect("a small duration")
}

pub(super) fn pull_back_message(
    connector_id: &str,
    requested: DateTime<Utc>,
    range: Option<&TimeRange>,
    now: DateTime<Utc>,
) -> String {
    let requested_text = requested.to_rfc3339();
    let skew = PULL_BACK_CLOCK_SKEW.as_secs();
    let holds = |range: &TimeRange| format!("connector {connector_id}'s store holds data {range}");
    match range {
        Some(range) if requested < range.earliest => format!(
            "{}; cannot pull back to {requested_text}, before the earliest data it holds: \
             choose a pull_back_time at or after {}",
            holds(range),
            range.earliest.to_rfc3339()
        ),
        Some(range) if requested > now + self::skew() => format!(
            "{}; cannot pull back to {requested_text}: it is in the future (server time {}, \
             {skew}s of clock skew allowed): choose a pull_back_time between {} and {}",
            holds(range),
            now.to_rfc3339(),
            range.earliest.to_rfc3339(),
            range.latest.to_rfc3339()
        ),
        Some(range) => format!(
            "{}; cannot pull back to {requested_text}, after the latest data it holds \
             ({skew}s of clock skew allowed): choose a pull_back_time between {} and {}, or \
             start without pull_back_time to resume from the checkpoint",
            holds(range),
            range.earliest.to_rfc3339(),
            range.latest.to_rfc3339()
        ),
        None => format!(
            "cannot pull connector {connector_id} back to {requested_text}: it is in the \
             future (server time {}, {skew}s of clock skew allowed); choose a past time",
            now.to_rfc3339()
        ),
    }
}

pub(super) fn checkpoint_message(
    connector_id: &str,
    checkpoint: DateTime<Utc>,
    range: &TimeRange,
) -> String {
    let earliest = range.earliest.to_rfc3339();
    format!(
        "connector {connector_id}'s checkpoint is {}, but its store holds data only from \
         {earliest} to {}: starting it would silently skip the changes between {} and \
         {earliest}. Pull it back to a time the store holds (pull_back_time between {earliest} \
         and {}) to replay from there, or, if losing those changes is acceptable, start it \
         with skip_to_earliest to resume from {earliest} (the skip is audited)",
        checkpoint.to_rfc3339(),
        range.latest.to_rfc3339(),
        checkpoint.to_rfc3339(),
        range.latest.to_rfc3339(),
    )
}

/// The checkpoint a connector would resume from when its store no longer
/// holds it (the store's earliest time is after it), with that range:
/// a start from there would skip data. None when the store holds it, or
/// either is unknown (the agent then checks), or the connector reads no
/// change log (FULL_MIGRATION).
pub fn checkpoint_gone(connector: &Connector) -> Option<(DateTime<Utc>, TimeRange)> {
    if connector.kind != ConnectorKind::IncrementalSync {
        return None;
    }
    let checkpoint = connector.checkpoint_time?;
    let range = connector.store_range?;
    checkpoint_lost(checkpoint, &range).then_some((checkpoint, range))
}

/// Whether a pull-back to `requested` asks for what the store does not
/// hold: before its earliest time, after its latest (the latest reported;
/// the store grows between heartbeats, hence the skew), or in the future.
/// An unknown range leaves only the future to check here; the agent checks
/// the rest with the range it knows.
pub fn pull_back_out_of_range(
    requested: DateTime<Utc>,
    range: Option<&TimeRange>,
    now: DateTime<Utc>,
) -> bool {
    let beyond = |limit: DateTime<Utc>| requested > limit + skew();
    beyond(now) || range.is_some_and(|range| requested < range.earliest || beyond(range.latest))
}

/// Whether resuming from `checkpoint` would skip data: the store no longer
/// holds it.
pub fn checkpoint_lost(checkpoint: DateTime<Utc>, range: &TimeRange) -> bool {
    checkpoint < range.earliest
}
