//! What an agent's lists say about what it runs: a hello, and each
//! heartbeat, names every connector the agent runs. One it ran and no
//! longer names is not running (`gone_effect`); one it names that it must
//! not run (another agent runs it now, or it was marked stopped since) is
//! a stray copy it is told to stop (`stray`).

use super::fleet::{ConnectorUpdate, ObservedStatus, Session};
use super::model::{Connector, ConnectorState};

/// A connector an agent no longer lists among those it runs: a hello
/// without it (the agent came back without it), or a heartbeat that
/// stopped listing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gone {
    pub connector_id: String,
    /// The newest generation the agent had reported for it: the absence
    /// counts only while no newer command was issued since (None in a
    /// hello, which is the whole truth when the session opens).
    pub generation: Option<i64>,
}

/// What one session reported in a round of heartbeats: the statuses that
/// changed, and the connectors it stopped listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionReport {
    pub statuses: Vec<ObservedStatus>,
    pub gone: Vec<Gone>,
}

impl SessionReport {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.gone.is_empty()
    }

    pub fn len(&self) -> usize {
        self.statuses.len() + self.gone.len()
    }
}

/// Whether `session`'s agent, reporting `status`, runs a copy of the
/// connector that must stop: another agent runs it now (a start went
/// elsewhere while this agent was away), or an operator marked it stopped
/// after the generation it runs. Then the agent is told to pause it (as
/// Kubernetes' kubelet, back from a partition, kills pods no longer bound
/// to its node), at the connector's generation, newer than what it runs.
pub fn stray(connector: &Connector, status: &ObservedStatus, session: &Session) -> bool {
    let elsewhere = !connector.agent_id.is_empty() && connector.agent_id != session.agent_id;
    let fenced = status.generation < connector.fenced_below;
    status.state == ConnectorState::Running
        && status.generation < connector.generation
        && (elsewhere || fenced)
}

/// What it means that `session`'s agent no longer lists a connector it
/// ran (`status_effect`'s runner, in its region): it is not running. A
/// connector meant to run becomes FAILED, so that its restart policy
/// applies (as Kubernetes recreates a pod its node lost); one meant to be
/// stopped becomes STOPPED. Only a settled connector (RUNNING, FAILED, or
/// UNKNOWN while its agent was away) changes: a start or pause in flight
/// is redelivered and answered instead. `hello` says how the absence was
/// seen.
pub fn gone_effect(
    connector: &Connector,
    gone: &Gone,
    session: &Session,
    hello: bool,
) -> Option<ConnectorUpdate> {
    let runs_it = connector.agent_id == session.agent_id && connector.region == session.region;
    let settled = matches!(
        connector.state,
        ConnectorState::Running | ConnectorState::Failed | ConnectorState::Unknown
    );
    let newer_command = gone
        .generation
        .is_some_and(|generation| connector.generation > generation);
    if !runs_it || !settled || newer_command {
        return None;
    }
    let seen = if hello {
        format!(
            "agent {} reconnected without it (its hello does not list it)",
            session.agent_id
        )
    } else {
        format!("agent {} stopped reporting it", session.agent_id)
    };
    let (state, message) = if connector.desired_state == ConnectorState::Running {
        (
            ConnectorState::Failed,
            format!("not running: {seen}, although it was meant to run"),
        )
    } else {
        (ConnectorState::Stopped, format!("not running: {seen}"))
    };
    Some(ConnectorUpdate {
        state: Some(state),
        desired_state: None,
        placement: None,
        observed: None,
        status_message: Some(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sample;
    use crate::domain::sample::{connector_in_eu_1 as connector, session};

    #[test]
    fn a_connector_its_agent_no_longer_lists_is_not_running() {
        let run_by_a1 = |state, desired| Connector {
            agent_id: "a1".into(),
            desired_state: desired,
            ..connector(2, state)
        };
        let gone = |generation| Gone {
            connector_id: "c1".into(),
            generation,
        };
        use ConnectorState::*;
        for state in [Running, Failed, Unknown] {
            let update =
                gone_effect(&run_by_a1(state, Running), &gone(None), &session(), true).unwrap();
            assert_eq!(
                update.state,
                Some(Failed),
                "meant to run: its policy applies"
            );
            let message = update.status_message.unwrap();
            assert!(
                message.contains("agent a1 reconnected without it"),
                "{message}"
            );
            let update = gone_effect(
                &run_by_a1(state, Stopped),
                &gone(Some(2)),
                &session(),
                false,
            )
            .unwrap();
            assert_eq!(update.state, Some(Stopped));
            assert!(update.status_message.unwrap().contains("stopped reporting"));
        }
        // A start or pause in flight is answered, not presumed.
        for state in [Starting, Pausing, Stopped] {
            assert_eq!(
                gone_effect(&run_by_a1(state, Running), &gone(None), &session(), true),
                None
            );
        }
        // A newer command than the agent last reported: not its to say.
        assert_eq!(
            gone_effect(
                &run_by_a1(Running, Running),
                &gone(Some(1)),
                &session(),
                false
            ),
            None
        );
        // Another agent's connector.
        let elsewhere = Connector {
            agent_id: "a2".into(),
            ..run_by_a1(Running, Running)
        };
        assert_eq!(gone_effect(&elsewhere, &gone(None), &session(), true), None);
    }

    #[test]
    fn a_copy_another_agent_runs_or_marked_stopped_is_told_to_stop() {
        let running = |generation| sample::status(ConnectorState::Running, generation);
        let moved = Connector {
            agent_id: "a2".into(),
            ..connector(5, ConnectorState::Running)
        };
        assert!(stray(&moved, &running(3), &session()));
        let marked = Connector {
            agent_id: "a1".into(),
            fenced_below: 5,
            ..connector(5, ConnectorState::Stopped)
        };
        assert!(stray(&marked, &running(4), &session()));
        // Its own, current copy; a stopped one; a generation it cannot be
        // moved past: nothing to stop.
        let own = Connector {
            agent_id: "a1".into(),
            ..connector(5, ConnectorState::Running)
        };
        assert!(!stray(&own, &running(5), &session()));
        let stopped = ObservedStatus {
            state: ConnectorState::Stopped,
            ..running(3)
        };
        assert!(!stray(&moved, &stopped, &session()));
        assert!(!stray(&moved, &running(5), &session()));
    }
}
