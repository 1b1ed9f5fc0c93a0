//! How long a connector that is not running can wait: until its store no
//! longer holds the data after its checkpoint (issue 34, part 1). The
//! store's retention is estimated as the span it last reported holding
//! (`latest - earliest`): data from the checkpoint is dropped that long
//! after it was written. A store still filling up holds less than it will,
//! so the estimate errs early, never late. Unknown (None) without a
//! recorded checkpoint or store range; none for a running or starting
//! connector, which reads on.

use super::{Connector, ConnectorState};
use chrono::{DateTime, Utc};

/// When `connector`'s store will no longer hold data from its checkpoint.
pub fn resumable_until(connector: &Connector) -> Option<DateTime<Utc>> {
    if matches!(
        connector.state,
        ConnectorState::Running | ConnectorState::Starting
    ) {
        return None;
    }
    let checkpoint = connector.checkpoint_time?;
    let range = connector.store_range?;
    Some(checkpoint + (range.latest - range.earliest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TimeRange, sample};
    use chrono::TimeDelta;

    /// A store holding the six hours up to `now`.
    fn six_hours_to(now: DateTime<Utc>) -> TimeRange {
        TimeRange {
            earliest: now - TimeDelta::hours(6),
            latest: now,
        }
    }

    #[test]
    fn a_stopped_connector_can_wait_as_long_as_its_store_keeps_data() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut c = sample::connector(ConnectorState::Stopped);
        c.checkpoint_time = Some(now - TimeDelta::hours(1));
        c.store_range = Some(six_hours_to(now));
        assert_eq!(resumable_until(&c), Some(now + TimeDelta::hours(5)));
        for state in [
            ConnectorState::Failed,
            ConnectorState::Pausing,
            ConnectorState::Unknown,
        ] {
            c.state = state;
            assert!(resumable_until(&c).is_some(), "{state:?}");
        }
        for state in [ConnectorState::Running, ConnectorState::Starting] {
            c.state = state;
            assert_eq!(resumable_until(&c), None, "{state:?} reads on");
        }
    }

    #[test]
    fn unknown_without_a_checkpoint_or_a_store_range() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut c = sample::connector(ConnectorState::Stopped);
        c.checkpoint_time = Some(now);
        assert_eq!(resumable_until(&c), None, "no store range");
        c.checkpoint_time = None;
        c.store_range = Some(six_hours_to(now));
        assert_eq!(resumable_until(&c), None, "no checkpoint");
    }

    #[test]
    fn a_checkpoint_the_store_lost_is_past_already() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut c = sample::connector(ConnectorState::Stopped);
        c.checkpoint_time = Some(now - TimeDelta::hours(7));
        c.store_range = Some(six_hours_to(now));
        assert!(resumable_until(&c).unwrap() < now);
    }
}
