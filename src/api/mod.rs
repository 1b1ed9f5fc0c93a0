//! The gRPC surface: request validation and conversion, the services, and
//! the mapping of every failure to a status.

pub(crate) mod agent_convert;
mod agents;
mod audit;
mod batch;
mod convert;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod history;
mod interceptor;
pub mod limits;
mod mark_stopped;
mod session;
mod watch_connectors;
pub mod watch_limits;

pub use agents::AgentApi;
pub use audit::AuditApi;
pub use batch::DEFAULT_MAX_CONNECTORS;
pub use convert::{command_to_proto, timestamp_to_proto};
pub use error::{ApiError, WaitEnd};
pub use interceptor::interceptor;

use crate::auth::{self, Permission};

use crate::domain::{
    Actor, AuditAction, Change, CommandKind, Cursor, NewAuditEvent, PageTokenCodec,
};
use crate::fleet::Signals;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::{CommandOutcome, FleetStore};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument, Span, info, instrument, warn};

/// How long a wait that ran out may take for one last read of its command
/// (the time it keeps before the caller's deadline is at least 10% of it,
/// at most 200 ms).
const LAST_LOOK: Duration = Duration::from_millis(50);

/// What the audit trail records of a mutating call that is refused.
struct Refusal {
    actor: Actor,
    action: AuditAction,
    connector_id: String,
    request_id: String,
    reason: String,
    /// A dry run: it consumes no rate limit, and only a denied permission
    /// is recorded (it changes nothing, so nothing else is worth a row).
    dry_run: bool,
}

impl Refusal {
    fn new<T>(
        request: &Request<T>,
        action: AuditAction,
        connector_id: &str,
        request_id: &str,
    ) -> Self {
        Refusal {
            actor: actor(request),
            action,
            connector_id: connector_id.to_owned(),
            request_id: request_id.to_owned(),
            reason: String::new(),
            dry_run: false,
        }
    }
}

/// Who is calling (the authenticated principal) and from where.
pub fn actor<T>(request: &Request<T>) -> Actor {
    Actor {
        principal: request
            .extensions()
            .get::<auth::Principal>()
            .map_or_else(|| "unknown".to_owned(), |p| p.name.clone()),
        peer: request
            .remote_addr()
            .map(|addr| addr.to_string())
            .unwrap_or_default(),
    }
}

/// The ConnectorService implementation over any `Store`.
#[derive(Clone, Debug)]
pub struct ConnectorApi<S> {
    store: S,
    tokens: PageTokenCodec,
    max_wait: Duration,
    draining: watch::Receiver<bool>,
    signals: Signals,
    offline_after: Duration,
    limiter: limits::ChangeLimiter,
    latency_alert: Duration,
    /// `wait` calls are checked again against it at every reload.
    auth: auth::Authenticator,
    /// Refused calls, aggregated for the audit trail.
    refusals: crate::store::refusals::RefusalLog,
    /// The change feed watch streams read.
    feed: crate::fleet::feed::Feed,
    /// How long a watch stream's full buffer waits for its reader.
    watch_grace: Duration,
    /// Caps on open watches, and their turns at the database.
    watch_limits: watch_limits::WatchLimits,
}

impl<S: FleetStore> ConnectorApi<S> {
    /// `max_wait` bounds a `wait: true` call that carries no deadline of
    /// its own; `draining` turning true ends every wait at once, so that a
    /// shutdown is not held up by calls waiting for agents.
    /// `signals` wakes the dispatcher after each accepted command and tells
    /// waiting calls about completions; `offline_after` is the agents'
    /// liveness bound, for ListRegions.
    pub fn new(
        store: S,
        tokens: PageTokenCodec,
        max_wait: Duration,
        draining: watch::Receiver<bool>,
        signals: Signals,
        offline_after: Duration,
    ) -> Self {
        Self {
            store,
            tokens,
            max_wait,
            draining,
            signals,
            offline_after,
            limiter: limits::ChangeLimiter::default(),
            latency_alert: crate::defaults::duration(crate::defaults::LATENCY_ALERT),
            auth: auth::Authenticator::open(),
            refusals: Default::default(),
            feed: crate::fleet::feed::Feed::new(crate::defaults::WATCH_FEED_CAPACITY),
            watch_grace: crate::defaults::duration(crate::defaults::WATCH_GRACE),
            watch_limits: Default::default(),
        }
    }

    /// Caps on open watches, and how many read the database at once.
    pub fn with_watch_limits(mut self, limits: watch_limits::WatchLimits) -> Self {
        self.watch_limits = limits;
        self
    }

    /// Where refused calls are recorded (shared with the agent sessions).
    pub fn with_refusals(mut self, refusals: crate::store::refusals::RefusalLog) -> Self {
        self.refusals = refusals;
        self
    }

    /// Ends `wait` calls of principals a reload of `auth` revokes.
    pub fn with_auth(mut self, auth: auth::Authenticator) -> Self {
        self.auth = auth;
        self
    }

    /// Completes when a reload of the auth file no longer lets `principal`
    /// operate connectors.
    async fn revoked(&self, principal: &auth::Principal) -> auth::AuthError {
        revoked(&self.auth, principal, Permission::ConnectorsOperate).await
    }

    /// Connectors reporting more latency than this are flagged as lagging.
    pub fn with_latency_alert(mut self, alert: Duration) -> Self {
        self.latency_alert = alert;
        self
    }

    /// A connector as callers see it: `status_message` carries the lag flag.
    fn view(&self, connector: crate::domain::Connector) -> v1::Connector {
        connector_view(connector, self.latency_alert)
    }

    /// The change feed watch streams read (`serve` passes the fleet's), and
    /// how long a watcher's full buffer waits for it before its stream
    /// ends.
    pub fn with_watch(mut self, feed: crate::fleet::feed::Feed, grace: Duration) -> Self {
        self.feed = feed;
        self.watch_grace = grace;
        self
    }

    /// A WatchConnectors `resume_token` for `filter` at the current end of
    /// the change feed, read before a page is listed: a watch resumed from
    /// it misses no change the page does not show (one made meanwhile may
    /// come as an event for a row that already shows it).
    pub async fn watch_token_now(
        &self,
        request: Request<v1::ConnectorFilter>,
    ) -> Result<String, Status> {
        auth::require(&request, Permission::ConnectorsRead).map_err(ApiError::from)?;
        let query = watch_connectors::query(
            &v1::WatchConnectorsRequest {
                filter: Some(request.into_inner()),
                resume_token: String::new(),
            },
            &self.tokens,
            self.latency_alert,
        )?;
        Ok(
            watch_connectors::token_now(&self.store, &self.feed, &self.tokens, &query.filter)
                .await?,
        )
    }

    /// Limits each principal's changes (create, start, pause).
    pub fn with_limiter(mut self, limiter: limits::ChangeLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Holds a `wait: true` call until the command reaches a final status
    /// or the deadline passes; then returns what the agent confirmed.
    /// `completions` was taken before the command was issued, so that no
    /// completion goes unseen.
    async fn confirm(
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
            revoked = self.revoked(principal) => {
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

    /// When a `wait: true` call must answer: shortly before the caller's
    /// `grpc-timeout` (so the caller gets our explanation rather than a bare
    /// deadline error), and never later than `max_wait`.
    fn deadline<T>(&self, request: &Request<T>) -> Instant {
        let budget = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| timeout - (timeout / 10).min(Duration::from_millis(200)))
            .map_or(self.max_wait, |timeout| timeout.min(self.max_wait));
        Instant::now() + budget
    }

    /// Records a refused mutating call (a change that was made recorded its
    /// own event in its transaction). Not for an unreachable database, nor
    /// for a `wait` that ran out after the change was made.
    async fn audit_refusal<T>(&self, refusal: Refusal, result: &Result<T, Status>) {
        let Err(status) = result else { return };
        if refusal.dry_run
            && !matches!(
                status.code(),
                Code::PermissionDenied | Code::Unauthenticated
            )
        {
            return;
        }
        // Not an outage, nor a wait that ran out after the change was made;
        // nor a rate-limited call, whose purpose is to cost nothing.
        if matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
        ) {
            return;
        }
        let reason = tonic_types::StatusExt::get_error_details(status)
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default();
        let event = NewAuditEvent::refused(
            &refusal.actor,
            refusal.action,
            &refusal.connector_id,
            &refusal.request_id,
            crate::domain::Refused {
                code: crate::telemetry::rpc::code_name(status.code()),
                reason: &reason,
                message: status.message(),
                reason_given: &refusal.reason,
            },
        );
        self.refusals.record(&self.store, event).await;
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

/// What a mutating call's work gets: who calls, from where, and when a
/// `wait` must answer.
struct Call {
    principal: auth::Principal,
    actor: Actor,
    deadline: Instant,
}

impl<S: FleetStore> ConnectorApi<S> {
    /// Every call that changes something goes through here: its
    /// permission, its principal's rate limit, then `work`; the outcome is
    /// named on the call's span and a refusal is recorded in the audit trail
    /// (a change that was made recorded its own event). A new mutating RPC
    /// cannot forget any of these.
    async fn change<M, R, Fut>(
        &self,
        request: Request<M>,
        permission: Permission,
        audit: Refusal,
        work: impl FnOnce(Call, M) -> Fut,
    ) -> Result<Response<R>, Status>
    where
        Fut: std::future::Future<Output = Result<R, ApiError>>,
    {
        let result = async {
            let principal = auth::require(&request, permission).map_err(ApiError::from)?;
            if !audit.dry_run {
                self.limiter.check(&principal)?;
            }
            let call = Call {
                principal,
                actor: audit.actor.clone(),
                deadline: self.deadline(&request),
            };
            work(call, request.into_inner()).await.map(Response::new)
        }
        .await
        .map_err(Status::from);
        record_outcome(&result);
        self.audit_refusal(audit, &result).await;
        result
    }

    /// A StartConnector or PauseConnector call: `change` with its
    /// permission, limit and audit, then `issue`; `respond` builds the
    /// RPC's response from the connector and the command.
    async fn command_call<M: convert::CommandRequest, R>(
        &self,
        request: Request<M>,
        respond: impl FnOnce(Option<v1::Connector>, Option<v1::Command>, bool) -> R,
    ) -> Result<Response<R>, Status> {
        let message = request.get_ref();
        let mut audit = Refusal::new(
            &request,
            message.action(),
            message.connector_id(),
            message.request_id(),
        );
        audit.reason = message.reason().to_owned();
        audit.dry_run = message.validate_only();
        self.change(
            request,
            Permission::ConnectorsOperate,
            audit,
            |call, message| async move {
                let change = message.change()?;
                if message.validate_only() {
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

    /// A batch call: `change` with the operate permission (one change
    /// against the rate limit, a dry run none), then the batch.
    async fn batch_call<M: batch::BatchRequest>(
        &self,
        request: Request<M>,
    ) -> Result<Response<v1::BatchConnectorsResponse>, Status> {
        let message = request.get_ref();
        let mut audit = Refusal::new(&request, message.action(), "", message.request_id());
        audit.reason = message.reason().to_owned();
        audit.dry_run = message.validate_only();
        self.change(
            request,
            Permission::ConnectorsOperate,
            audit,
            |call, message| async move {
                let batch = batch::parse(&message, self.latency_alert)?;
                self.run_batch(batch, call).await
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

/// Names the call's outcome on its span: `OK` or the status code.
fn record_outcome<T>(result: &Result<T, Status>) {
    let code = match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    Span::current().record("outcome", crate::telemetry::rpc::code_name(code));
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Completes when a reload of the auth file no longer gives `principal`
/// `permission` (long calls: waits and watches end then).
async fn revoked(
    auth: &auth::Authenticator,
    principal: &auth::Principal,
    permission: Permission,
) -> auth::AuthError {
    let mut reloads = auth.reloads();
    loop {
        // Checked once right after subscribing too: a reload between the
        // call's authentication and now is not missed.
        if let Err(error) = auth.still_allows(principal, permission) {
            return error;
        }
        if reloads.changed().await.is_err() {
            // The authenticator is gone: nothing will be revoked.
            std::future::pending::<()>().await;
        }
    }
}

/// A connector as callers see it: `status_message` carries the lag flag and
/// what automatic starts will do.
pub(crate) fn connector_view(
    connector: crate::domain::Connector,
    latency_alert: Duration,
) -> v1::Connector {
    let mut message = crate::domain::flagged_message(&connector, latency_alert);
    // A failed connector's automatic starts: "FAILED: <agent message>;
    // automatic start 3 in 40s".
    if let Some(note) = crate::domain::restart::restart_note(&connector, chrono::Utc::now()) {
        message = match message.as_str() {
            "" => format!("FAILED: {note}"),
            said => format!("FAILED: {said}; {note}"),
        };
    }
    let cause = match crate::domain::lag_cause(&connector, latency_alert) {
        None => v1::LagCause::Unspecified,
        Some(crate::domain::LagCause::Latency) => v1::LagCause::Latency,
        Some(crate::domain::LagCause::AgentOffline) => v1::LagCause::AgentOffline,
    };
    let running = connector.state == crate::domain::ConnectorState::Running;
    let mut view = convert::connector_to_proto(connector);
    // A latency means something only while the connector runs: a stopped
    // (or silent) connector's last one is history, not a lag.
    if !running {
        view.latency = None;
    }
    view.status_message = message;
    view.lag_cause = cause as i32;
    view
}

#[tonic::async_trait]
impl<S: FleetStore> ConnectorService for ConnectorApi<S> {
    type WatchConnectorsStream =
        watch_limits::WatchStream<Result<v1::WatchConnectorsResponse, Status>>;

    #[instrument(name = "WatchConnectors", skip_all)]
    async fn watch_connectors(
        &self,
        request: Request<v1::WatchConnectorsRequest>,
    ) -> Result<Response<Self::WatchConnectorsStream>, Status> {
        let principal =
            auth::require(&request, Permission::ConnectorsRead).map_err(ApiError::from)?;
        let query = watch_connectors::query(request.get_ref(), &self.tokens, self.latency_alert)?;
        let slot = self.watch_limits.admit(&principal, &actor(&request).peer)?;
        {
            let _turn = self.watch_limits.read().await;
            watch_connectors::check_resumable(&self.store, &query).await?;
        }
        let buffer = crate::defaults::WATCH_BUFFER;
        let (tx, rx) = tokio::sync::mpsc::channel(buffer);
        let stream = watch_connectors::Watch {
            store: self.store.clone(),
            feed: self.feed.clone(),
            tokens: self.tokens.clone(),
            latency_alert: self.latency_alert,
            draining: self.draining.clone(),
            query,
            buffer,
            grace: self.watch_grace,
            limits: self.watch_limits.clone(),
        };
        let auth = self.auth.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    () = stream.run(tx.clone()) => {}
                    error = revoked(&auth, &principal, Permission::ConnectorsRead) => {
                        let _ = tx.send(Err(ApiError::from(error).into())).await;
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        // Counted as open until the caller's stream is gone.
        Ok(Response::new(watch_limits::WatchStream {
            inner: tokio_stream::wrappers::ReceiverStream::new(rx),
            _slot: slot,
        }))
    }

    #[instrument(name = "ListRegions", skip_all)]
    async fn list_regions(
        &self,
        request: Request<v1::ListRegionsRequest>,
    ) -> Result<Response<v1::ListRegionsResponse>, Status> {
        auth::require(&request, Permission::ConnectorsRead).map_err(ApiError::from)?;
        let regions = self
            .store
            .list_regions(self.offline_after)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::ListRegionsResponse {
            regions: regions.into_iter().map(convert::region_to_proto).collect(),
        }))
    }

    #[instrument(name = "CreateConnector", skip_all, fields(connector_id, outcome))]
    async fn create_connector(
        &self,
        request: Request<v1::CreateConnectorRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        let id = request
            .get_ref()
            .connector
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default();
        let audit = Refusal::new(&request, AuditAction::CreateConnector, &id, "");
        self.change(
            request,
            Permission::ConnectorsCreate,
            audit,
            |call, message| async move {
                let mut new = convert::new_connector(message)?;
                new.actor = call.actor;
                Span::current().record("connector_id", new.id.as_str());
                let connector = self.store.create_connector(new).await?;
                info!("connector created");
                Ok(self.view(connector))
            },
        )
        .await
    }

    #[instrument(
        name = "UpdateRestartPolicy",
        skip_all,
        fields(connector_id = %request.get_ref().id, outcome)
    )]
    async fn update_restart_policy(
        &self,
        request: Request<v1::UpdateRestartPolicyRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        let message = request.get_ref();
        let audit = Refusal::new(
            &request,
            AuditAction::UpdateRestartPolicy,
            &message.id,
            &message.request_id,
        );
        self.change(
            request,
            Permission::ConnectorsOperate,
            audit,
            |call, message| async move {
                let policy = convert::update_restart_policy(&message)?;
                let request_id = (!message.request_id.is_empty()).then_some(&*message.request_id);
                let connector = self
                    .store
                    .update_restart_policy(&message.id, &policy, &call.actor, request_id)
                    .await?;
                info!(%policy, "restart policy updated");
                Ok(self.view(connector))
            },
        )
        .await
    }

    #[instrument(
        name = "MarkConnectorStopped",
        skip_all,
        fields(connector_id = %request.get_ref().id, outcome)
    )]
    async fn mark_connector_stopped(
        &self,
        request: Request<v1::MarkConnectorStoppedRequest>,
    ) -> Result<Response<v1::MarkConnectorStoppedResponse>, Status> {
        self.mark_stopped_call(request).await
    }

    #[instrument(name = "GetConnector", skip_all, fields(connector_id = %request.get_ref().id))]
    async fn get_connector(
        &self,
        request: Request<v1::GetConnectorRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        auth::require(&request, Permission::ConnectorsRead).map_err(ApiError::from)?;
        let id = &request.get_ref().id;
        convert::connector_id("GetConnector", id)?;
        let connector = self.store.get_connector(id).await.map_err(ApiError::from)?;
        Ok(Response::new(self.view(connector)))
    }

    #[instrument(
        name = "BatchPauseConnectors",
        skip_all,
        fields(request_id = %request.get_ref().request_id, outcome)
    )]
    async fn batch_pause_connectors(
        &self,
        request: Request<v1::BatchPauseConnectorsRequest>,
    ) -> Result<Response<v1::BatchConnectorsResponse>, Status> {
        self.batch_call(request).await
    }

    #[instrument(
        name = "BatchStartConnectors",
        skip_all,
        fields(request_id = %request.get_ref().request_id, outcome)
    )]
    async fn batch_start_connectors(
        &self,
        request: Request<v1::BatchStartConnectorsRequest>,
    ) -> Result<Response<v1::BatchConnectorsResponse>, Status> {
        self.batch_call(request).await
    }

    #[instrument(name = "ListCommands", skip_all, fields(connector_id = %request.get_ref().connector_id))]
    async fn list_commands(
        &self,
        request: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        auth::require(&request, Permission::ConnectorsRead).map_err(ApiError::from)?;
        let query = history::query(request.get_ref())?;
        let (commands, more) = self
            .store
            .list_commands(
                &query.connector_id,
                query.before_generation,
                query.page_size,
            )
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match commands.last() {
            Some(last) if more => history::encode_token(&query.connector_id, last.generation),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListCommandsResponse {
            commands: commands
                .into_iter()
                .map(convert::command_to_proto)
                .collect(),
            next_page_token,
        }))
    }

    #[instrument(name = "ListConnectors", skip_all)]
    async fn list_connectors(
        &self,
        request: Request<v1::ListConnectorsRequest>,
    ) -> Result<Response<v1::ListConnectorsResponse>, Status> {
        auth::require(&request, Permission::ConnectorsRead).map_err(ApiError::from)?;
        let query = convert::list_query(request.into_inner(), self.latency_alert)?;
        let after = match query.page_token.as_str() {
            "" => None,
            token => Some(
                self.tokens
                    .decode(token, &query.filter)
                    .map_err(ApiError::from)?,
            ),
        };
        let page = self
            .store
            .list_connectors(&query.filter, after.as_ref(), query.page_size)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match page.connectors.last() {
            Some(last) if page.more => self.tokens.encode(
                &query.filter,
                &Cursor {
                    name: last.name.clone(),
                    id: last.id.clone(),
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListConnectorsResponse {
            connectors: page
                .connectors
                .into_iter()
                .map(|connector| self.view(connector))
                .collect(),
            next_page_token,
            total_size: i32::try_from(page.total).unwrap_or(i32::MAX),
        }))
    }

    #[instrument(
        name = "StartConnector",
        skip_all,
        fields(connector_id = %request.get_ref().id, request_id = %request.get_ref().request_id, command_id, outcome)
    )]
    async fn start_connector(
        &self,
        request: Request<v1::StartConnectorRequest>,
    ) -> Result<Response<v1::StartConnectorResponse>, Status> {
        self.command_call(request, |connector, command, validate_only| {
            v1::StartConnectorResponse {
                connector,
                command,
                validate_only,
            }
        })
        .await
    }

    #[instrument(
        name = "PauseConnector",
        skip_all,
        fields(connector_id = %request.get_ref().id, request_id = %request.get_ref().request_id, command_id, outcome)
    )]
    async fn pause_connector(
        &self,
        request: Request<v1::PauseConnectorRequest>,
    ) -> Result<Response<v1::PauseConnectorResponse>, Status> {
        self.command_call(request, |connector, command, validate_only| {
            v1::PauseConnectorResponse {
                connector,
                command,
                validate_only,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }
}
