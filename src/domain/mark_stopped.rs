//! Marking a connector stopped: the way out for a connector whose agent
//! is gone (MarkConnectorStopped). Pure: the store locks the connector,
//! looks up whether an agent that could be told holds it, asks here, and
//! writes what this decides.

use super::model::{Connector, ConnectorState};
use super::rules::Rejection;
use chrono::{DateTime, Utc};

/// What marking a connector stopped writes: STOPPED, meant to be stopped,
/// at a new generation below which its agent's reports are fenced off.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkedStopped {
    pub generation: i64,
    pub status_message: String,
}

impl MarkedStopped {
    /// The connector as the mark leaves it (what a dry run shows).
    pub fn applied_to(&self, connector: &Connector, now: DateTime<Utc>) -> Connector {
        Connector {
            state: ConnectorState::Stopped,
            desired_state: ConnectorState::Stopped,
            generation: self.generation,
            fenced_below: self.generation,
            status_message: self.status_message.clone(),
            update_time: now,
            restart: super::Restarts {
                next_time: None,
                ..connector.restart
            },
            ..connector.clone()
        }
    }

    /// The audit event the mark records with it.
    pub fn audit_event(
        &self,
        request: &super::model::MarkStoppedRequest,
        before: &Connector,
    ) -> super::NewAuditEvent {
        super::NewAuditEvent {
            request_id: request.request_id.clone().unwrap_or_default(),
            reason: request.reason.clone(),
            detail: format!(
                "was {} at generation {} (agent {}); now STOPPED at generation {}: reports \
                 of earlier generations change nothing",
                before.state,
                before.generation,
                if before.agent_id.is_empty() {
                    "none"
                } else {
                    &before.agent_id
                },
                self.generation
            ),
            ..super::NewAuditEvent::ok(
                &request.actor,
                super::AuditAction::MarkConnectorStopped,
                &before.id,
            )
        }
    }
}

/// Decides a MarkConnectorStopped: allowed for a connector that is not
/// STOPPED and that no online agent holds (`online_agent`: the agent
/// running it, or holding its command in flight, that was heard from
/// lately). Kubernetes' force delete of a pod on a lost node, without its
/// hazard: the generation fences off whatever the lost agent says later.
pub fn decide_mark_stopped(
    connector: &Connector,
    request: &super::model::MarkStoppedRequest,
    online_agent: Option<&str>,
) -> Result<MarkedStopped, Rejection> {
    if connector.state == ConnectorState::Stopped {
        return Err(Rejection::AlreadyStopped {
            connector_id: connector.id.clone(),
        });
    }
    if let Some(agent_id) = online_agent {
        return Err(Rejection::AgentOnline {
            connector_id: connector.id.clone(),
            agent_id: agent_id.to_owned(),
        });
    }
    let agent = if connector.agent_id.is_empty() {
        "no agent ran it".to_owned()
    } else {
        format!("its agent {} was offline", connector.agent_id)
    };
    Ok(MarkedStopped {
        generation: connector.generation + 1,
        status_message: format!(
            "marked stopped by {} ({agent}; it was {}): {}",
            request.actor.principal, connector.state, request.reason
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sample::connector;

    #[test]
    fn only_a_connector_no_online_agent_holds_is_marked_stopped() {
        let request = crate::domain::MarkStoppedRequest {
            connector_id: "c1".into(),
            reason: "INC-7 agent host lost".into(),
            request_id: None,
            actor: Default::default(),
            offline_after: std::time::Duration::from_secs(40),
        };
        let unknown = Connector {
            agent_id: "a1".into(),
            ..connector(ConnectorState::Unknown)
        };
        let marked = decide_mark_stopped(&unknown, &request, None).unwrap();
        assert_eq!(marked.generation, 4);
        assert!(
            marked.status_message.contains("agent a1 was offline")
                && marked.status_message.contains("INC-7"),
            "{}",
            marked.status_message
        );
        assert!(matches!(
            decide_mark_stopped(&unknown, &request, Some("a1")),
            Err(Rejection::AgentOnline { agent_id, .. }) if agent_id == "a1"
        ));
        assert!(matches!(
            decide_mark_stopped(&connector(ConnectorState::Stopped), &request, None),
            Err(Rejection::AlreadyStopped { .. })
        ));
        for state in [
            ConnectorState::Pausing,
            ConnectorState::Starting,
            ConnectorState::Running,
            ConnectorState::Failed,
        ] {
            assert!(decide_mark_stopped(&connector(state), &request, None).is_ok());
        }
    }
}
