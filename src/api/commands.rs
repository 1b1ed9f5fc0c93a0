//! StartConnector and PauseConnector: the command a call asks for,
//! previewed (a dry run) or issued, and with `wait` confirmed.

use super::connector_api::ConnectorApi;
use super::convert;
use super::error::ApiError;
use super::mutation::Call;
use super::refusals::Audited;
use crate::auth::Permission;
use crate::domain::{Actor, Change, CommandKind};
use crate::proto::v1;
use crate::store::{CommandOutcome, FleetStore};
use tonic::{Request, Response, Status};
use tracing::{Span, info};

/// StartConnectorRequest and PauseConnectorRequest: one command call.
pub(super) trait CommandRequest: Audited {
    /// Whether the call waits for the agent's answer.
    fn wait(&self) -> bool;
    /// The request validated, as the domain's `Change`.
    fn validated_change(&self) -> Result<Change, ApiError>;
}

impl CommandRequest for v1::StartConnectorRequest {
    fn wait(&self) -> bool {
        self.wait
    }
    fn validated_change(&self) -> Result<Change, ApiError> {
        convert::start_request(self).map(Change::Start)
    }
}

impl CommandRequest for v1::PauseConnectorRequest {
    fn wait(&self) -> bool {
        self.wait
    }
    fn validated_change(&self) -> Result<Change, ApiError> {
        convert::pause_request(self).map(Change::Pause)
    }
}

impl<S: FleetStore> ConnectorApi<S> {
    /// A StartConnector or PauseConnector call: `mutating_call` with its
    /// permission, limit and audit, then `issue`; `respond` builds the
    /// RPC's response from the connector and the command.
    pub(super) async fn command_call<M: CommandRequest, R>(
        &self,
        request: Request<M>,
        respond: impl FnOnce(Option<v1::Connector>, Option<v1::Command>, bool) -> R,
    ) -> Result<Response<R>, Status> {
        self.mutating_call(
            request,
            Permission::ConnectorsOperate,
            |call, message| async move {
                let change = message.validated_change()?;
                if message.audited().dry_run {
                    let (connector, command) = self.preview(change, call).await?;
                    return Ok(respond(connector, command, true));
                }
                let wait = message.wait();
                let (connector, command) = self.issue(change, wait, call).await?;
                Ok(respond(connector, command, false))
            },
        )
        .await
    }

    /// What issuing the command would do, with nothing written.
    async fn preview(
        &self,
        mut change: Change,
        call: Call,
    ) -> Result<(Option<v1::Connector>, Option<v1::Command>), ApiError> {
        set_caller(&mut change, call.actor);
        let outcome = self.store.preview_command(&change).await?;
        info!(
            generation = outcome.command.generation,
            replayed = outcome.replayed,
            "{} validated (dry run; nothing written)",
            outcome.command.kind.as_str()
        );
        Ok((
            Some(self.view(outcome.connector)),
            Some(convert::command_to_proto(outcome.command)),
        ))
    }

    /// Issues the command a start or pause asks for, then, with `wait`,
    /// holds the call until the agent answers: the connector and command
    /// to answer with.
    async fn issue(
        &self,
        mut change: Change,
        wait: bool,
        call: Call,
    ) -> Result<(Option<v1::Connector>, Option<v1::Command>), ApiError> {
        set_caller(&mut change, call.actor);
        // Before the command exists: its completion may come at once.
        let completions = wait.then(|| self.signals.completions());
        let mut outcome = self.store.issue_command(&change).await?;
        self.accepted(&outcome);
        if let Some(completions) = completions {
            outcome = self
                .confirm(outcome, completions, call.deadline, &call.principal)
                .await?;
        }
        Ok((
            Some(self.view(outcome.connector)),
            Some(convert::command_to_proto(outcome.command)),
        ))
    }

    /// Logs the outcome and, for a new command, wakes the dispatcher.
    fn accepted(&self, outcome: &CommandOutcome) {
        if !outcome.replayed {
            self.signals
                .command_added(&outcome.command.region, &outcome.connector.agent_id);
        }
        Self::record(outcome);
    }

    fn record(outcome: &CommandOutcome) {
        let span = Span::current();
        span.record("command_id", outcome.command.id.as_str());
        let verb = match outcome.command.kind {
            CommandKind::Start => "start",
            CommandKind::Pause => "pause",
        };
        if outcome.replayed {
            info!(
                generation = outcome.command.generation,
                "{verb} retried with the same request_id; returning the original command"
            );
        } else {
            info!(
                generation = outcome.command.generation,
                region = %outcome.command.region,
                "{verb} accepted"
            );
        }
    }
}

/// Who asks for `change`, and the trace it joins.
fn set_caller(change: &mut Change, caller: Actor) {
    let (actor, trace_context) = match change {
        Change::Start(request) => (&mut request.actor, &mut request.trace_context),
        Change::Pause(request) => (&mut request.actor, &mut request.trace_context),
    };
    *actor = caller;
    *trace_context = crate::telemetry::inject_current();
}
