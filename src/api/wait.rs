//! Holding a `wait: true` call until the agent confirms its command, the
//! deadline passes, the server drains or the caller's credentials are
//! revoked.

use super::connector_api::ConnectorApi;
use super::error::{ApiError, WaitEnd};
use crate::auth::{self, Permission};
use crate::store::{CommandOutcome, FleetStore};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

/// How long a wait that ran out may take for one last read of its command
/// (the time it keeps before the caller's deadline is at least 10% of it,
/// at most 200 ms).
const LAST_LOOK: Duration = Duration::from_millis(50);

impl<S: FleetStore> ConnectorApi<S> {
    /// Holds a `wait: true` call until the command reaches a final status
    /// or the deadline passes; then returns what the agent confirmed.
    /// `completions` was taken before the command was issued, so that no
    /// completion goes unseen.
    pub(super) async fn confirm(
        &self,
        outcome: CommandOutcome,
        mut completions: watch::Receiver<u64>,
        deadline: Instant,
        principal: &auth::Principal,
    ) -> Result<CommandOutcome, ApiError> {
        let command = outcome.command.clone();
        if command.status.is_final() {
            return Ok(outcome);
        }
        let poll = async {
            loop {
                tokio::select! {
                    _ = completions.changed() => {}
                    // The safety net when a completion's wake-up is lost
                    // (another replica recorded it): the poll interval.
                    _ = tokio::time::sleep(self.signals.recheck_every()) => {}
                }
                // The command is committed: a failed read is retried until
                // the deadline rather than reported as a failed call.
                match self.store.get_command(&command.id).await {
                    Ok(latest) if latest.status.is_final() => return latest,
                    Ok(_) => {}
                    Err(error) => warn!(%error, "re-reading the command while waiting"),
                }
            }
        };
        let mut draining = self.draining.clone();
        let end = tokio::select! {
            confirmed = tokio::time::timeout_at(deadline, poll) => match confirmed {
                Ok(command) => Ok(command),
                Err(_elapsed) => Err(WaitEnd::Deadline),
            },
            _ = draining.wait_for(|draining| *draining) => Err(WaitEnd::Draining),
            revoked = self.auth.revoked(principal, Permission::ConnectorsOperate) => {
                warn!(principal = %principal.name, command_id = %command.id,
                      "a wait ended: its principal's credentials were revoked");
                return Err(ApiError::WaitRevoked {
                    connector_id: command.connector_id.clone(),
                    command_id: command.id.clone(),
                    error: revoked,
                });
            }
        };
        // One last look, so that "not confirmed" is never said of a command
        // that was (its wake-up lost). Quick: the caller's deadline is close.
        let end = match end {
            Err(WaitEnd::Deadline) => {
                match tokio::time::timeout(LAST_LOOK, self.store.get_command(&command.id)).await {
                    Ok(Ok(latest)) if latest.status.is_final() => Ok(latest),
                    _ => Err(WaitEnd::Deadline),
                }
            }
            end => end,
        };
        match end {
            Ok(command) => {
                let connector = self.store.get_connector(&command.connector_id).await?;
                Ok(CommandOutcome {
                    connector,
                    command,
                    replayed: outcome.replayed,
                })
            }
            Err(end) => Err(ApiError::NotConfirmed {
                connector_id: command.connector_id.clone(),
                command_id: command.id.clone(),
                kind: command.kind,
                region: command.region.clone(),
                end,
            }),
        }
    }
}
