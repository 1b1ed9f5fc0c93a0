//! Which heartbeat reports are written. An agent reports each connector
//! in every heartbeat, and a running connector's checkpoint moves every
//! time: written as they come, 100,000 connectors reporting every 10 s
//! would be 10,000 row updates, and as many changes in the watch feed, a
//! second. So a report is written at once only when it says something new
//! (its state, generation, message, a latency that appears, disappears,
//! crosses the alert threshold or moves by more than max(1 s, 10%)); its
//! progress alone (checkpoint, store range, small latency moves) is written
//! at most every `refresh`: 100,000 connectors cost 100,000 / refresh
//! changes a second (1,667 at the default 60 s), whatever the heartbeat
//! interval.

use super::fleet::ObservedStatus;
use std::time::Duration;

/// A latency move that shows: at least this much...
const LATENCY_STEP: Duration = Duration::from_secs(1);
/// ...and at least this part of the latency written.
const LATENCY_SHARE: u32 = 10;

/// Whether `new` is written, given the report written last (`None`: none
/// yet) and how long ago.
pub fn worth_writing(
    last: Option<(&ObservedStatus, Duration)>,
    new: &ObservedStatus,
    alert: Duration,
    refresh: Duration,
) -> bool {
    let Some((last, age)) = last else {
        return true;
    };
    if last == new {
        return false;
    }
    let progress_only = ObservedStatus {
        checkpoint_time: last.checkpoint_time,
        latency: last.latency,
        store_range: last.store_range,
        ..new.clone()
    } == *last;
    !progress_only || latency_moved(last.latency, new.latency, alert) || age >= refresh
}

/// Whether a latency moved enough to show: appeared or disappeared,
/// crossed the alert threshold (the `lagging` filter and flag change), or
/// moved by more than max(1 s, 10%).
fn latency_moved(last: Option<Duration>, new: Option<Duration>, alert: Duration) -> bool {
    match (last, new) {
        (Some(last), Some(new)) => {
            (last > alert) != (new > alert)
                || last.abs_diff(new) >= LATENCY_STEP.max(last / LATENCY_SHARE)
        }
        (None, None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConnectorState, sample};

    const ALERT: Duration = Duration::from_secs(60);
    const REFRESH: Duration = Duration::from_secs(60);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn running(latency: Option<Duration>) -> ObservedStatus {
        ObservedStatus {
            latency,
            checkpoint_time: chrono::DateTime::from_timestamp(1_800_000_000, 0),
            ..sample::status(ConnectorState::Running, 1)
        }
    }

    fn written(last: &ObservedStatus, new: &ObservedStatus, age: Duration) -> bool {
        worth_writing(Some((last, age)), new, ALERT, REFRESH)
    }

    #[test]
    fn the_first_report_is_written_and_the_same_again_is_not() {
        let report = running(Some(secs(2)));
        assert!(worth_writing(None, &report, ALERT, REFRESH));
        assert!(!written(&report, &report, secs(3600)));
    }

    #[test]
    fn progress_alone_waits_for_the_refresh() {
        let last = running(Some(secs(2)));
        let mut moved = last.clone();
        moved.checkpoint_time = moved
            .checkpoint_time
            .map(|t| t + chrono::TimeDelta::seconds(10));
        moved.latency = Some(Duration::from_millis(2500));
        assert!(!written(&last, &moved, secs(59)));
        assert!(written(&last, &moved, secs(60)));
    }

    #[test]
    fn what_changes_the_connector_is_written_at_once() {
        let last = running(Some(secs(2)));
        let stopped = ObservedStatus {
            state: ConnectorState::Stopped,
            ..last.clone()
        };
        let newer = ObservedStatus {
            generation: 2,
            ..last.clone()
        };
        let said = ObservedStatus {
            message: "slow destination".into(),
            ..last.clone()
        };
        for new in [stopped, newer, said] {
            assert!(written(&last, &new, secs(0)), "{new:?}");
        }
    }

    #[test]
    fn a_latency_that_shows_is_written_at_once() {
        let at = |s: f64| running(Some(Duration::from_secs_f64(s)));
        // Under a second apart: waits; one second or more: written.
        assert!(!written(&at(2.0), &at(2.9), secs(0)));
        assert!(written(&at(2.0), &at(3.0), secs(0)));
        // Ten per cent of a large latency.
        assert!(!written(&at(600.0), &at(545.0), secs(0)));
        assert!(written(&at(600.0), &at(540.0), secs(0)));
        // Over the alert threshold or back under it, however little.
        assert!(written(&at(59.9), &at(60.1), secs(0)));
        assert!(written(&at(60.1), &at(59.9), secs(0)));
        // Appearing or disappearing.
        assert!(written(&running(None), &at(0.1), secs(0)));
        assert!(written(&at(0.1), &running(None), secs(0)));
    }
}
