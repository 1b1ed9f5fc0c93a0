//! What an agent's reports change: a command's result on its command and
//! connector, a heartbeat's statuses on the connectors, each fenced by
//! generation and by which agent runs the connector.

use super::fleet::{CommandReport, ConnectorUpdate, ObservedStatus, Placement, Session};
use super::model::{Command, CommandKind, CommandStatus, Connector, ConnectorState};

/// The states an agent may report; the rest belong to the control plane.
pub fn reportable(state: ConnectorState) -> bool {
    matches!(
        state,
        ConnectorState::Running | ConnectorState::Stopped | ConnectorState::Failed
    )
}

/// What recording an agent's result does to the command it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultDisposition {
    /// The command was with the agent: it completes (SUCCEEDED / FAILED).
    Complete,
    /// A newer command superseded it after the agent received it: the
    /// answer is kept as its late result, and the status stays SUPERSEDED.
    Late,
    /// A duplicate, or a command this agent was never handed: nothing.
    Ignore,
}

/// How `session`'s result for `command` is recorded.
pub fn result_disposition(command: &Command, session: &Session) -> ResultDisposition {
    if command.agent_id != session.agent_id {
        return ResultDisposition::Ignore;
    }
    match command.status {
        CommandStatus::Delivered => ResultDisposition::Complete,
        CommandStatus::Superseded if command.late_result.is_none() => ResultDisposition::Late,
        _ => ResultDisposition::Ignore,
    }
}

/// What a command's result changes on its connector. None when the command
/// is no longer the newest for the connector: a newer desired state wins.
pub fn result_effect(
    connector: &Connector,
    command: &Command,
    report: &CommandReport,
    session: &Session,
) -> Option<ConnectorUpdate> {
    // From before an operator marked it stopped: stale, whatever it says.
    if command.generation < connector.fenced_below {
        return None;
    }
    // A status claiming a generation the control plane never issued is
    // not believed (a bug, or a hostile agent): the result counts without
    // it.
    let sane;
    let report = match &report.status {
        Some(status) if status.generation > connector.generation => {
            sane = CommandReport {
                status: None,
                ..report.clone()
            };
            &sane
        }
        _ => report,
    };
    if command.generation != connector.generation {
        // A newer command exists: its desired state wins. A start that did
        // happen still tells where the connector now runs, so that the newer
        // command (a pause, say) goes to that agent.
        if command.kind != CommandKind::Start || !report.success {
            return None;
        }
        // The newer command is settled with the connector stopped (a
        // pause another agent answered, say), yet this agent did start it:
        // it runs against the desired state, and says so, so that an
        // operator pauses it again (the pause goes to this agent).
        let settled = !matches!(
            connector.state,
            ConnectorState::Starting | ConnectorState::Pausing
        );
        let runs_unwanted = settled && connector.desired_state == ConnectorState::Stopped;
        return Some(ConnectorUpdate {
            state: runs_unwanted.then_some(ConnectorState::Running),
            desired_state: None,
            placement: Some(Placement::of(session, &command.region)),
            observed: report.status.clone(),
            status_message: runs_unwanted.then(|| {
                format!(
                    "agent {} started it late (generation {}, after a newer command settled): \
                     it runs although it should be stopped; pause it again",
                    session.agent_id, command.generation
                )
            }),
        });
    }
    let reported = report
        .status
        .as_ref()
        .map(|s| s.state)
        .filter(|s| reportable(*s));
    let failure = || {
        let reason = if report.error_reason.is_empty() {
            "UNKNOWN".to_owned()
        } else {
            report.error_reason.clone()
        };
        format!(
            "{} failed ({reason}): {}",
            command.kind.as_str().to_lowercase(),
            report.error_message
        )
    };
    let update = match (command.kind, report.success) {
        (CommandKind::Start, true) => ConnectorUpdate {
            state: Some(reported.unwrap_or(ConnectorState::Running)),
            desired_state: None,
            placement: Some(Placement::of(session, &command.region)),
            observed: report.status.clone(),
            status_message: Some(
                report
                    .status
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default(),
            ),
        },
        // Nothing runs. A failure a retry may fix, on a connector that
        // restarts on failure, leaves it FAILED and still meant to run: the
        // leader starts it again after its backoff. Otherwise it is back
        // where an operator can start it again, with the agent's
        // explanation.
        (CommandKind::Start, false)
            if report.retriable()
                && connector.restart.policy.mode == super::restart::RestartMode::OnFailure =>
        {
            ConnectorUpdate {
                state: Some(ConnectorState::Failed),
                desired_state: None,
                placement: None,
                observed: report.status.clone(),
                status_message: Some(failure()),
            }
        }
        (CommandKind::Start, false) => ConnectorUpdate {
            state: Some(ConnectorState::Stopped),
            desired_state: Some(ConnectorState::Stopped),
            placement: None,
            observed: report.status.clone(),
            status_message: Some(failure()),
        },
        (CommandKind::Pause, true) => ConnectorUpdate {
            state: Some(ConnectorState::Stopped),
            desired_state: None,
            placement: None,
            observed: report.status.clone(),
            status_message: Some(String::new()),
        },
        (CommandKind::Pause, false) => ConnectorUpdate {
            state: Some(reported.unwrap_or(ConnectorState::Failed)),
            desired_state: None,
            placement: None,
            observed: report.status.clone(),
            status_message: Some(failure()),
        },
    };
    Some(update)
}

/// What a heartbeat (or hello) status changes. Metrics and placement are
/// always recorded; the state only when the agent has applied the newest
/// generation, so that a report sent before a start or pause reached the
/// agent does not undo STARTING / PAUSING.
pub fn status_effect(
    connector: &Connector,
    status: &ObservedStatus,
    session: &Session,
) -> Option<ConnectorUpdate> {
    // Only the agent running a connector reports on it: another agent
    // naming it (a bug, or a hostile agent) changes nothing. An agent
    // becomes the runner by carrying out a start (`result_effect`), or by
    // reporting a connector of its region that no agent runs (connectors
    // that already ran before they were registered here).
    // Always within the agent's own region: an agent id claimed from
    // another region, or a connector just moved elsewhere by a start, gives
    // no say over connectors outside it.
    if connector.region != session.region {
        return None;
    }
    // A generation the control plane never issued: not believed (a
    // heartbeat claiming generation 2^62 must not settle a PAUSING
    // connector).
    if status.generation > connector.generation {
        return None;
    }
    let adopts = connector.agent_id.is_empty();
    if connector.agent_id != session.agent_id && !adopts {
        return None;
    }
    // From before an operator marked it stopped: nothing it says counts,
    // neither its state nor what it observed (the next start checks the
    // store range). Only, when it says it runs the connector, the message
    // tells operators how to take it back.
    if status.generation < connector.fenced_below {
        let stale_run =
            status.state == ConnectorState::Running && connector.state == ConnectorState::Stopped;
        return stale_run.then(|| ConnectorUpdate {
            state: None,
            desired_state: None,
            placement: None,
            observed: None,
            status_message: Some(format!(
                "marked stopped, but agent {} reports it RUNNING at generation {} (from before \
                 the mark, generation {}): it is told to stop; start it to run it again",
                session.agent_id, status.generation, connector.fenced_below
            )),
        });
    }
    let current = status.generation >= connector.generation;
    // Failed for good (its agent says starting again cannot help): no
    // automatic start, it is back where an operator starts it.
    if current && status.state == ConnectorState::Failed && status.retriable == Some(false) {
        return Some(ConnectorUpdate {
            state: Some(ConnectorState::Stopped),
            desired_state: Some(ConnectorState::Stopped),
            placement: Some(Placement::of(session, &connector.region)),
            observed: Some(status.clone()),
            status_message: Some(format!("failed for good: {}", status.message)),
        });
    }
    Some(ConnectorUpdate {
        state: (current && reportable(status.state)).then_some(status.state),
        desired_state: None,
        placement: Some(Placement::of(session, &connector.region)),
        observed: Some(status.clone()),
        status_message: current.then(|| status.message.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sample;
    use chrono::Utc;
    use std::time::Duration;

    use crate::domain::sample::{connector_in_eu_1 as connector, session};

    fn command(kind: CommandKind, generation: i64) -> Command {
        Command {
            trace_context: Default::default(),
            id: "k".into(),
            connector_id: "c1".into(),
            kind,
            pull_back_time: None,
            region: "eu-1".into(),
            generation,
            request_id: None,
            reason: String::new(),
            status: CommandStatus::Delivered,
            agent_id: "a1".into(),
            error_reason: String::new(),
            error_message: String::new(),
            create_time: Utc::now(),
            complete_time: None,
            late_result: None,
            principal: String::new(),
            skip_to_earliest: false,
        }
    }

    fn report(success: bool) -> CommandReport {
        CommandReport {
            retriable: None,
            trace_context: Default::default(),
            command_id: "k".into(),
            success,
            error_reason: if success {
                ""
            } else {
                "PULL_BACK_OUT_OF_RANGE"
            }
            .into(),
            error_message: if success { "" } else { "store starts later" }.into(),
            status: None,
        }
    }

    /// What the result of connector c1's first start changes.
    fn first_start_result(success: bool) -> ConnectorUpdate {
        result_effect(
            &connector(1, ConnectorState::Starting),
            &command(CommandKind::Start, 1),
            &report(success),
            &session(),
        )
        .unwrap()
    }

    #[test]
    fn a_successful_start_runs_where_the_agent_is() {
        let update = first_start_result(true);
        assert_eq!(update.state, Some(ConnectorState::Running));
        assert_eq!(update.placement.unwrap().server_ip, "10.0.0.1");
    }

    #[test]
    fn a_failed_start_leaves_the_connector_stopped_with_the_reason() {
        let update = first_start_result(false);
        assert_eq!(update.state, Some(ConnectorState::Stopped));
        assert_eq!(update.desired_state, Some(ConnectorState::Stopped));
        let message = update.status_message.unwrap();
        assert!(
            message.contains("PULL_BACK_OUT_OF_RANGE") && message.contains("store starts later")
        );
    }

    #[test]
    fn a_retriable_failed_start_leaves_the_connector_failed_and_meant_to_run() {
        let failure = CommandReport {
            error_reason: "DESTINATION_UNREACHABLE".into(),
            ..report(false)
        };
        let mut starting = connector(1, ConnectorState::Starting);
        starting.desired_state = ConnectorState::Running;
        let start = command(CommandKind::Start, 1);
        let update = result_effect(&starting, &start, &failure, &session()).unwrap();
        assert_eq!(update.state, Some(ConnectorState::Failed));
        assert_eq!(update.desired_state, None, "still meant to run");
        // The agent's word wins over the reason; a connector that never
        // restarts is stopped as before.
        let flagged = CommandReport {
            retriable: Some(false),
            ..failure.clone()
        };
        let update = result_effect(&starting, &start, &flagged, &session()).unwrap();
        assert_eq!(update.state, Some(ConnectorState::Stopped));
        starting.restart.policy.mode = super::super::restart::RestartMode::Never;
        let update = result_effect(&starting, &start, &failure, &session()).unwrap();
        assert_eq!(update.state, Some(ConnectorState::Stopped));
        assert_eq!(update.desired_state, Some(ConnectorState::Stopped));
    }

    #[test]
    fn a_result_for_an_older_generation_keeps_the_newer_state() {
        let effect = result_effect(
            &connector(2, ConnectorState::Pausing),
            &command(CommandKind::Start, 1),
            &report(true),
            &session(),
        )
        .unwrap();
        assert_eq!(effect.state, None);
        assert_eq!(effect.placement.unwrap().agent_id, "a1");
        let failed = result_effect(
            &connector(2, ConnectorState::Pausing),
            &command(CommandKind::Start, 1),
            &report(false),
            &session(),
        );
        assert_eq!(failed, None);
    }

    #[test]
    fn a_late_start_after_a_settled_pause_shows_the_connector_running() {
        let stopped = Connector {
            desired_state: ConnectorState::Stopped,
            ..connector(2, ConnectorState::Stopped)
        };
        let update = result_effect(
            &stopped,
            &command(CommandKind::Start, 1),
            &report(true),
            &session(),
        )
        .unwrap();
        assert_eq!(update.state, Some(ConnectorState::Running));
        assert!(update.status_message.unwrap().contains("pause it again"));
        assert_eq!(update.placement.unwrap().agent_id, "a1");
    }

    #[test]
    fn a_heartbeat_behind_the_newest_generation_keeps_the_state() {
        let status = ObservedStatus {
            latency: Some(Duration::from_secs(3)),
            ..sample::status(ConnectorState::Running, 1)
        };
        let run_by_a1 = |generation, state| Connector {
            agent_id: "a1".into(),
            ..connector(generation, state)
        };
        let update =
            status_effect(&run_by_a1(2, ConnectorState::Pausing), &status, &session()).unwrap();
        assert_eq!(update.state, None);
        assert_eq!(
            update.observed.unwrap().latency,
            Some(Duration::from_secs(3))
        );
        let update =
            status_effect(&run_by_a1(1, ConnectorState::Starting), &status, &session()).unwrap();
        assert_eq!(update.state, Some(ConnectorState::Running));
    }

    #[test]
    fn a_generation_never_issued_is_not_believed() {
        let pausing = Connector {
            agent_id: "a1".into(),
            desired_state: ConnectorState::Stopped,
            ..connector(4, ConnectorState::Pausing)
        };
        let forged = sample::status(ConnectorState::Running, 1 << 62);
        assert_eq!(status_effect(&pausing, &forged, &session()), None);
        let with_forged_status = CommandReport {
            status: Some(forged),
            ..report(true)
        };
        let update = result_effect(
            &pausing,
            &command(CommandKind::Pause, 4),
            &with_forged_status,
            &session(),
        )
        .unwrap();
        assert_eq!(update.state, Some(ConnectorState::Stopped));
        assert_eq!(update.observed, None);
    }

    #[test]
    fn nothing_from_before_a_mark_stopped_undoes_it() {
        let marked = Connector {
            agent_id: "a1".into(),
            desired_state: ConnectorState::Stopped,
            fenced_below: 5,
            ..connector(5, ConnectorState::Stopped)
        };
        let late = sample::status(ConnectorState::Running, 4);
        let update = status_effect(&marked, &late, &session()).unwrap();
        assert_eq!(update.state, None);
        assert_eq!((update.observed, update.placement), (None, None));
        assert!(
            update
                .status_message
                .unwrap()
                .contains("it is told to stop")
        );
        // A late start result for an older generation: nothing at all.
        assert_eq!(
            result_effect(
                &marked,
                &command(CommandKind::Start, 4),
                &report(true),
                &session()
            ),
            None
        );
        // From the next generation on, reports count again.
        let current = ObservedStatus {
            generation: 5,
            ..late
        };
        assert_eq!(
            status_effect(&marked, &current, &session()).unwrap().state,
            Some(ConnectorState::Running)
        );
    }

    #[test]
    fn an_agent_cannot_report_on_a_connector_it_does_not_run() {
        let status = ObservedStatus {
            message: "hijack".into(),
            ..sample::status(ConnectorState::Failed, 1)
        };
        let elsewhere = Connector {
            agent_id: "a2".into(),
            ..connector(1, ConnectorState::Running)
        };
        assert_eq!(status_effect(&elsewhere, &status, &session()), None);
        // Its own connector, once moved to another region, no longer.
        let moved = Connector {
            agent_id: "a1".into(),
            region: "us-1".into(),
            ..connector(1, ConnectorState::Running)
        };
        assert_eq!(status_effect(&moved, &status, &session()), None);
        // Nobody runs it: an agent of its region adopts it, no other.
        let unowned = connector(1, ConnectorState::Stopped);
        assert!(status_effect(&unowned, &status, &session()).is_some());
        let other_region = Connector {
            region: "us-1".into(),
            ..unowned
        };
        assert_eq!(status_effect(&other_region, &status, &session()), None);
    }
}
