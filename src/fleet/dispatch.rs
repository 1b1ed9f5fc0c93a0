//! Command dispatch: claiming pending commands for the sessions held here
//! and handing them to their streams.

use super::{Fleet, Outbound};
use crate::domain::{Command, CommandKind, Session};
use crate::proto::v1::ControlMessage;
use crate::store::{Claim, FleetStore};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

impl<S: FleetStore> Fleet<S> {
    /// Hands pending commands to connected agents. Woken after every
    /// accepted Start/Pause (for its region, here or on another replica),
    /// session start and result; the poll tick is the safety net. A round costs one query when nothing is pending, and one
    /// claim per region with work and local sessions.
    pub(super) async fn dispatch_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.options.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let regions = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.signals.dispatch.notified() => self.signals.take_regions(),
                _ = tick.tick() => None,
            };
            let regions: HashSet<String> = match regions {
                Some(regions) => regions,
                None => match self.store.pending_regions().await {
                    Ok(regions) => regions.into_iter().collect(),
                    Err(error) => {
                        warn!(%error, "listing regions with pending commands failed");
                        continue;
                    }
                },
            };
            for region in regions {
                self.deliver(&region).await;
            }
        }
    }

    /// One claim for `region`: commands go straight into the sessions'
    /// queues; one that does not fit goes back to pending.
    pub(super) async fn deliver(&self, region: &str) {
        let local: Vec<(Session, Outbound, CancellationToken)> = self
            .sessions
            .lock()
            .unwrap()
            .values()
            .filter(|local| local.session.region == region)
            .map(|local| {
                (
                    local.session.clone(),
                    local.outbound.clone(),
                    local.superseded.clone(),
                )
            })
            .collect();
        if local.is_empty() {
            return;
        }
        let rooms: Vec<(Session, usize)> = local
            .iter()
            .map(|(session, outbound, _)| (session.clone(), outbound.capacity()))
            .collect();
        let claim = Claim {
            region,
            sessions: &rooms,
            offline_after: self.offline_after(),
        };
        let claimed = match self.store.claim_commands(claim).await {
            Ok(claimed) => claimed,
            Err(error) => {
                warn!(%error, %region, "claiming commands failed");
                return;
            }
        };
        let checkpoints = self.checkpoints(&claimed).await;
        for (session, command) in claimed {
            let Some((_, outbound, session_token)) = local
                .iter()
                .find(|(s, _, _)| s.session_id == session.session_id)
            else {
                continue;
            };
            let id = command.id.clone();
            // Joins the trace of the call that issued the command.
            let span = tracing::info_span!(
                "deliver command",
                otel.kind = "producer",
                command_id = %id,
                connector_id = %command.connector_id,
                agent_id = %session.agent_id,
            );
            crate::telemetry::continue_trace(&span, &command.trace_context);
            let created = command.create_time;
            let attributes = [
                opentelemetry::KeyValue::new("region", region.to_owned()),
                opentelemetry::KeyValue::new("kind", command.kind.as_str()),
            ];
            let resumes = resumes(&command);
            let mut proto = crate::proto::convert::command_to_proto(command);
            let sent = match (&checkpoints, resumes) {
                // Unknown checkpoint: not sent without it; the next round
                // tries again.
                (None, true) => false,
                (checkpoints, _) => {
                    proto.checkpoint_time = checkpoints
                        .as_ref()
                        .filter(|_| resumes)
                        .and_then(|c| c.get(&proto.connector_id).copied().flatten())
                        .map(crate::proto::convert::timestamp_to_proto);
                    let message = ControlMessage {
                        message: Some(crate::proto::v1::control_message::Message::Command(proto)),
                    };
                    span.in_scope(|| {
                        debug!("delivering command");
                        outbound.try_send(Ok(message)).is_ok()
                    })
                }
            };
            if sent {
                let delay = (chrono::Utc::now() - created).to_std().unwrap_or_default();
                crate::telemetry::metrics::instruments()
                    .delivery_delay
                    .record(delay.as_secs_f64(), &attributes);
            } else {
                if let Err(error) = self.store.release_command(&session, &id).await {
                    // Ending the session requeues it: never leave it stuck.
                    warn!(%error, command_id = %id, "releasing an unsent command failed");
                    session_token.cancel();
                }
            }
        }
    }

    /// The recorded checkpoints of the connectors that claimed STARTs
    /// resume from, so that an agent without one of its own (restarted, or
    /// new to the connector) resumes there, never silently from now. None
    /// when they could not be read.
    async fn checkpoints(
        &self,
        claimed: &[(Session, Command)],
    ) -> Option<HashMap<String, Option<DateTime<Utc>>>> {
        let ids: Vec<String> = claimed
            .iter()
            .filter(|(_, command)| resumes(command))
            .map(|(_, command)| command.connector_id.clone())
            .collect();
        if ids.is_empty() {
            return Some(HashMap::new());
        }
        match self.store.connectors_by_id(&ids).await {
            Ok(connectors) => Some(
                connectors
                    .into_iter()
                    .map(|connector| (connector.id, connector.checkpoint_time))
                    .collect(),
            ),
            Err(error) => {
                warn!(%error, "reading the checkpoints starts resume from failed; they stay pending");
                None
            }
        }
    }
}

/// A START without a pull-back time: it resumes from the checkpoint.
fn resumes(command: &Command) -> bool {
    command.kind == CommandKind::Start && command.pull_back_time.is_none()
}
