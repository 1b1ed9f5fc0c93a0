//! The state machine: whether a start or pause is allowed, what it changes,
//! and whether a retried request matches the call it repeats. Pure: the
//! store loads the connector under a row lock, asks here, and persists.

use super::model::{
    CommandKind, Connector, ConnectorKind, ConnectorState, PauseRequest, StartRequest,
};
use super::pull_back::pull_back_out_of_range;
pub use super::pull_back::{PULL_BACK_CLOCK_SKEW, checkpoint_gone};
pub use super::rejection::Rejection;
use chrono::{DateTime, Utc};

/// What an accepted start or pause writes, all in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub state: ConnectorState,
    pub desired_state: ConnectorState,
    pub generation: i64,
    /// The region the connector runs in from now on, and the command's.
    pub region: String,
    pub command_kind: CommandKind,
    pub pull_back_time: Option<DateTime<Utc>>,
    /// START only: resume from the store's earliest data if the
    /// checkpoint is gone (the caller's explicit choice).
    pub skip_to_earliest: bool,
    /// START with `skip_to_earliest` only: the data it skips as the
    /// decision saw it (from the checkpoint to the store's earliest time).
    pub skips: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The region a start targets: the override, else the destination's region.
pub fn start_region<'a>(connector: &'a Connector, request: &'a StartRequest) -> &'a str {
    request
        .region
        .as_deref()
        .unwrap_or(&connector.destination.region)
}

/// The region override the store must confirm exists before `decide_start`
/// (None when the start targets the destination's own region).
pub fn region_to_verify<'a>(connector: &Connector, request: &'a StartRequest) -> Option<&'a str> {
    request
        .region
        .as_deref()
        .filter(|region| *region != connector.destination.region)
}

/// The region whose agents' capabilities a start depends on: where it runs,
/// when it pulls back (any agent there may carry it out).
pub fn pull_back_region<'a>(
    connector: &'a Connector,
    request: &'a StartRequest,
) -> Option<&'a str> {
    request.pull_back_time?;
    Some(
        request
            .region
            .as_deref()
            .unwrap_or(&connector.destination.region),
    )
}

/// A pull-back the agents of its region cannot carry out is refused at call
/// time, not sent: `without_pull_back` are the connected agents of
/// `pull_back_region` whose driver says it cannot pull back, with that
/// driver's name.
pub fn check_pull_back_capable(
    connector: &Connector,
    region: &str,
    without_pull_back: Vec<(String, String)>,
) -> Result<(), Rejection> {
    if without_pull_back.is_empty() {
        return Ok(());
    }
    let (agents, mut drivers): (Vec<String>, Vec<String>) = without_pull_back.into_iter().unzip();
    drivers.sort();
    drivers.dedup();
    Err(Rejection::PullBackNotSupportedByAgents {
        connector_id: connector.id.clone(),
        region: region.to_owned(),
        agents,
        drivers,
    })
}

/// Whether Start accepts a connector in `state` (the console enables its
/// Start button by it; the call decides again).
pub fn may_start(state: ConnectorState) -> bool {
    matches!(state, ConnectorState::Stopped | ConnectorState::Failed)
}

/// Whether Pause accepts a connector in `state`.
pub fn may_pause(state: ConnectorState) -> bool {
    matches!(
        state,
        ConnectorState::Running | ConnectorState::Starting | ConnectorState::Failed
    )
}

/// Decides a start. `region_known` answers `region_to_verify` (true when
/// there was nothing to verify); `now` is the server's clock, which a
/// pull-back time may not pass (beyond `PULL_BACK_CLOCK_SKEW`).
pub fn decide_start(
    connector: &Connector,
    request: &StartRequest,
    region_known: bool,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    if let Some(auto) = &request.automatic
        && !auto.still_applies(connector)
    {
        return Err(Rejection::RestartObsolete {
            connector_id: connector.id.clone(),
            attempt: auto.attempt,
        });
    }
    if !may_start(connector.state) {
        return Err(Rejection::NotStopped {
            connector_id: connector.id.clone(),
            state: connector.state,
        });
    }
    if let Some(requested) = request.pull_back_time {
        if connector.kind != ConnectorKind::IncrementalSync {
            return Err(Rejection::PullBackNotSupported {
                connector_id: connector.id.clone(),
                kind: connector.kind,
            });
        }
        let out_of_range = pull_back_out_of_range(requested, connector.store_range.as_ref(), now);
        if out_of_range {
            return Err(Rejection::PullBackOutOfRange {
                connector_id: connector.id.clone(),
                requested,
                range: connector.store_range,
                now,
            });
        }
    } else if let Some((checkpoint, range)) = checkpoint_gone(connector)
        && !request.skip_to_earliest
    {
        // Resuming from a checkpoint the store no longer holds would skip
        // data silently: only an explicit choice may do that.
        return Err(Rejection::CheckpointOutOfRange {
            connector_id: connector.id.clone(),
            checkpoint,
            range,
        });
    }
    let region = start_region(connector, request);
    if !region_known {
        return Err(Rejection::UnknownRegion {
            region: region.to_owned(),
        });
    }
    Ok(Transition {
        state: ConnectorState::Starting,
        desired_state: ConnectorState::Running,
        generation: connector.generation + 1,
        region: region.to_owned(),
        command_kind: CommandKind::Start,
        pull_back_time: request.pull_back_time,
        skip_to_earliest: request.skip_to_earliest,
        skips: request
            .skip_to_earliest
            .then(|| checkpoint_gone(connector))
            .flatten()
            .map(|(checkpoint, range)| (checkpoint, range.earliest)),
    })
}

/// Decides a pause. It goes where the connector runs: its region, unless the
/// pause supersedes a start that no agent received, whose region change
/// never took effect (`undelivered_start_from` is the region before it).
pub fn decide_pause(
    connector: &Connector,
    _request: &PauseRequest,
    undelivered_start_from: Option<&str>,
) -> Result<Transition, Rejection> {
    if !may_pause(connector.state) {
        return Err(Rejection::NotRunning {
            connector_id: connector.id.clone(),
            state: connector.state,
        });
    }
    Ok(Transition {
        state: ConnectorState::Pausing,
        desired_state: ConnectorState::Stopped,
        generation: connector.generation + 1,
        region: undelivered_start_from
            .unwrap_or(&connector.region)
            .to_owned(),
        command_kind: CommandKind::Pause,
        pull_back_time: None,
        skip_to_earliest: false,
        skips: None,
    })
}

/// Whether `rejection` of a change of `kind` only says the connector is
/// already where the change would take it (a pause of a STOPPED or PAUSING
/// connector, a start of a RUNNING or STARTING one): a batch call reports
/// it as unchanged, not as failed.
pub fn already_there(kind: CommandKind, rejection: &Rejection) -> bool {
    match (kind, rejection) {
        (CommandKind::Pause, Rejection::NotRunning { state, .. }) => {
            matches!(state, ConnectorState::Stopped | ConnectorState::Pausing)
        }
        (CommandKind::Start, Rejection::NotStopped { state, .. }) => {
            matches!(state, ConnectorState::Running | ConnectorState::Starting)
        }
        _ => false,
    }
}

/// What a retried call asks for, to compare with the command its
/// `request_id` already produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    pub kind: CommandKind,
    pub pull_back_time: Option<DateTime<Utc>>,
    pub region: String,
    pub skip_to_earliest: bool,
}

impl Intent {
    pub fn start(connector: &Connector, request: &StartRequest) -> Self {
        Intent {
            kind: CommandKind::Start,
            pull_back_time: request.pull_back_time,
            region: start_region(connector, request).to_owned(),
            skip_to_earliest: request.skip_to_earliest,
        }
    }

    pub fn pause(connector: &Connector) -> Self {
        Intent {
            kind: CommandKind::Pause,
            pull_back_time: None,
            region: connector.region.clone(),
            skip_to_earliest: false,
        }
    }
}

/// Whether a call with `request_id` on `connector_id` repeats one already
/// made (`previous`: the principal that made it, as audited), for calls
/// that keep no command (mark stopped, a restart policy): the same
/// principal's retry is a replay (true), anyone else's is refused.
pub fn replay_of(
    connector_id: &str,
    request_id: &str,
    previous: Option<&str>,
    caller: &str,
) -> Result<bool, Rejection> {
    match previous {
        None => Ok(false),
        Some(principal) if principal.is_empty() || principal == caller => Ok(true),
        Some(_) => Err(Rejection::RequestIdReused {
            connector_id: connector_id.to_owned(),
            request_id: request_id.to_owned(),
            previous: "a call by another principal".to_owned(),
        }),
    }
}

/// Whether a retry with a used `request_id` repeats the original call (then
/// the original command is returned) or asks for something else.
pub fn check_replay(
    connector_id: &str,
    request_id: &str,
    previous: &Intent,
    retry: &Intent,
) -> Result<(), Rejection> {
    // A pause is identified by its kind alone: the connector's region may
    // have been changed by a later start.
    let same = previous.kind == retry.kind
        && (retry.kind == CommandKind::Pause
            || (previous.pull_back_time == retry.pull_back_time
                && previous.region == retry.region
                && previous.skip_to_earliest == retry.skip_to_earliest));
    if same {
        return Ok(());
    }
    let previous = match previous.pull_back_time {
        Some(time) => format!(
            "{} in region {} pulling back to {}",
            previous.kind,
            previous.region,
            time.to_rfc3339()
        ),
        None if previous.skip_to_earliest => format!(
            "{} in region {} with skip_to_earliest",
            previous.kind, previous.region
        ),
        None => format!("{} in region {}", previous.kind, previous.region),
    };
    Err(Rejection::RequestIdReused {
        connector_id: connector_id.to_owned(),
        request_id: request_id.to_owned(),
        previous,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{CommandKind, TimeRange};

    pub(crate) use crate::domain::sample::connector;

    fn pause() -> PauseRequest {
        PauseRequest {
            connector_id: "c1".into(),
            reason: String::new(),
            request_id: None,
            actor: Default::default(),
            trace_context: Default::default(),
        }
    }

    fn start(pull_back: Option<&str>) -> StartRequest {
        StartRequest {
            connector_id: "c1".into(),
            pull_back_time: pull_back.map(|t| t.parse().unwrap()),
            region: None,
            request_id: None,
            skip_to_earliest: false,
            actor: Default::default(),
            trace_context: Default::default(),
            automatic: None,
        }
    }

    fn at(time: &str) -> DateTime<Utc> {
        time.parse().unwrap()
    }

    fn stored(range: (&str, &str)) -> Connector {
        Connector {
            store_range: Some(TimeRange {
                earliest: at(range.0),
                latest: at(range.1),
            }),
            ..connector(ConnectorState::Stopped)
        }
    }

    const NOW: &str = "2026-01-03T12:00:00Z";

    #[test]
    fn a_start_runs_in_the_destination_region_at_the_next_generation() {
        let transition = decide_start(
            &connector(ConnectorState::Failed),
            &start(None),
            true,
            at(NOW),
        )
        .unwrap();
        assert_eq!(transition.state, ConnectorState::Starting);
        assert_eq!(transition.desired_state, ConnectorState::Running);
        assert_eq!(
            (transition.generation, transition.region.as_str()),
            (4, "eu-2")
        );
        assert_eq!(transition.command_kind, CommandKind::Start);
    }

    #[test]
    fn only_stopped_or_failed_connectors_start_and_only_running_ones_pause() {
        use ConnectorState::*;
        for state in [Starting, Running, Pausing, Unknown] {
            assert!(matches!(
                decide_start(&connector(state), &start(None), true, at(NOW)),
                Err(Rejection::NotStopped { .. })
            ));
        }
        let pause = pause();
        for state in [Stopped, Pausing, Unknown] {
            assert!(matches!(
                decide_pause(&connector(state), &pause, None),
                Err(Rejection::NotRunning { .. })
            ));
        }
        for state in [Running, Starting, Failed] {
            let transition = decide_pause(&connector(state), &pause, None).unwrap();
            assert_eq!(transition.desired_state, Stopped);
        }
    }

    #[test]
    fn a_pull_back_must_fall_within_the_store_range_give_or_take_the_skew() {
        let c = stored(("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"));
        let decide = |time: &str| decide_start(&c, &start(Some(time)), true, at(NOW));
        assert!(decide("2026-01-01T00:00:00Z").is_ok(), "the earliest time");
        assert!(decide("2026-01-03T00:01:00Z").is_ok(), "latest + the skew");
        for (time, says) in [
            ("2025-12-31T23:59:59Z", "before the earliest"),
            ("2026-01-03T00:01:01Z", "after the latest"),
            ("2026-01-03T12:01:01Z", "in the future"),
        ] {
            let rejection = decide(time).unwrap_err();
            assert!(
                matches!(
                    rejection,
                    Rejection::PullBackOutOfRange { range: Some(_), .. }
                ),
                "{time}"
            );
            let message = rejection.to_string();
            assert!(message.contains(says), "{time}: {message}");
            assert!(message.contains("2026-01-03T00:00:00+00:00"), "{message}");
        }
    }

    #[test]
    fn without_a_store_range_only_a_future_pull_back_is_refused() {
        let c = connector(ConnectorState::Stopped);
        let decide = |time: &str| decide_start(&c, &start(Some(time)), true, at(NOW));
        assert!(decide("2020-01-01T00:00:00Z").is_ok(), "left to the agent");
        assert!(decide("2026-01-03T12:01:00Z").is_ok(), "within the skew");
        let rejection = decide("2026-01-03T12:01:01Z").unwrap_err();
        assert!(matches!(
            rejection,
            Rejection::PullBackOutOfRange { range: None, .. }
        ));
        assert!(rejection.to_string().contains("future"));
    }

    #[test]
    fn a_full_migration_connector_never_pulls_back() {
        let c = Connector {
            kind: ConnectorKind::FullMigration,
            ..connector(ConnectorState::Stopped)
        };
        assert!(matches!(
            decide_start(&c, &start(Some("2026-01-03T00:00:00Z")), true, at(NOW)),
            Err(Rejection::PullBackNotSupported { .. })
        ));
    }

    #[test]
    fn a_start_from_a_checkpoint_the_store_no_longer_holds_is_refused_unless_skipping() {
        let gone = Connector {
            checkpoint_time: Some(at("2025-12-31T00:00:00Z")),
            ..stored(("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"))
        };
        let rejection = decide_start(&gone, &start(None), true, at(NOW)).unwrap_err();
        assert!(matches!(
            rejection,
            Rejection::CheckpointOutOfRange { checkpoint, .. } if checkpoint == at("2025-12-31T00:00:00Z")
        ));
        let message = rejection.to_string();
        for says in [
            "2025-12-31T00:00:00+00:00",
            "2026-01-01T00:00:00+00:00",
            "pull_back_time",
            "skip_to_earliest",
        ] {
            assert!(message.contains(says), "{says}: {message}");
        }
        // The ways out: a pull-back the store holds, or the explicit skip.
        assert!(decide_start(&gone, &start(Some("2026-01-02T00:00:00Z")), true, at(NOW)).is_ok());
        let skipping = StartRequest {
            skip_to_earliest: true,
            ..start(None)
        };
        let transition = decide_start(&gone, &skipping, true, at(NOW)).unwrap();
        assert!(transition.skip_to_earliest);
        assert_eq!(
            transition.skips,
            Some((at("2025-12-31T00:00:00Z"), at("2026-01-01T00:00:00Z")))
        );
        // A checkpoint the store holds, or an unknown one, starts as before.
        let held = Connector {
            checkpoint_time: Some(at("2026-01-01T00:00:00Z")),
            ..gone.clone()
        };
        assert!(decide_start(&held, &start(None), true, at(NOW)).is_ok());
        let unknown = Connector {
            checkpoint_time: None,
            ..gone.clone()
        };
        assert!(decide_start(&unknown, &start(None), true, at(NOW)).is_ok());
        // A full migration reads no change log.
        let full = Connector {
            kind: ConnectorKind::FullMigration,
            ..gone
        };
        assert!(decide_start(&full, &start(None), true, at(NOW)).is_ok());
    }

    #[test]
    fn a_retry_repeats_only_the_same_call() {
        let c = connector(ConnectorState::Stopped);
        let first = Intent::start(&c, &start(Some("2026-01-02T00:00:00Z")));
        assert!(check_replay("c1", "r", &first, &first.clone()).is_ok());
        let other = Intent::start(&c, &start(None));
        assert!(matches!(
            check_replay("c1", "r", &first, &other),
            Err(Rejection::RequestIdReused { .. })
        ));
        // A pause is the same pause wherever the connector moved since.
        let pause = Intent::pause(&c);
        let moved = Intent {
            region: "us-1".into(),
            ..pause.clone()
        };
        assert!(check_replay("c1", "r", &pause, &moved).is_ok());
    }

    #[test]
    fn a_start_elsewhere_needs_a_known_region_and_a_pause_follows_the_agent_that_has_it() {
        let c = connector(ConnectorState::Stopped);
        let elsewhere = StartRequest {
            region: Some("us-1".into()),
            ..start(None)
        };
        assert_eq!(region_to_verify(&c, &elsewhere), Some("us-1"));
        assert_eq!(
            region_to_verify(&c, &start(None)),
            None,
            "the destination's"
        );
        assert!(matches!(
            decide_start(&c, &elsewhere, false, at(NOW)),
            Err(Rejection::UnknownRegion { region }) if region == "us-1"
        ));
        let moved = decide_start(&c, &elsewhere, true, at(NOW)).unwrap();
        assert_eq!(moved.region, "us-1");

        let starting = Connector {
            region: "us-1".into(),
            ..connector(ConnectorState::Starting)
        };
        let pause = pause();
        let undelivered = decide_pause(&starting, &pause, Some("eu-2")).unwrap();
        assert_eq!(undelivered.region, "eu-2", "no agent in us-1 got the start");
        let delivered = decide_pause(&starting, &pause, None).unwrap();
        assert_eq!(delivered.region, "us-1");
    }
}
