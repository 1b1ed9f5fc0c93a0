//! Starts and pauses as one operation: `Change`.

use super::audit::{Actor, AuditAction, NewAuditEvent};
use super::model::{
    Command, CommandKind, CommandStatus, Connector, PauseRequest, StartRequest, TraceContext,
};
use super::rules::{self, Intent, Rejection, Transition};
use chrono::{DateTime, Utc};

/// A change of a connector's desired state: a start or a pause, one "issue
/// a command" operation parameterised by its kind. Backends carry it out
/// the same way for every kind (load the connector under a lock, check a
/// retried `request_id`, ask `decide`, write the transition and its
/// command); a new kind of change plugs in here.
#[derive(Clone, Debug)]
pub enum Change {
    Start(StartRequest),
    Pause(PauseRequest),
}

impl Change {
    /// The kind of command it issues.
    pub fn kind(&self) -> CommandKind {
        match self {
            Change::Start(_) => CommandKind::Start,
            Change::Pause(_) => CommandKind::Pause,
        }
    }

    pub fn connector_id(&self) -> &str {
        match self {
            Change::Start(request) => &request.connector_id,
            Change::Pause(request) => &request.connector_id,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Change::Start(request) => request.request_id.as_deref(),
            Change::Pause(request) => request.request_id.as_deref(),
        }
    }

    /// The connector's count of automatic starts once this change is
    /// made: an automatic start counts itself, a start by anyone else
    /// resets it (someone fixed the problem), a pause keeps it (None).
    /// Every change cancels a scheduled automatic start.
    pub fn restart_count(&self) -> Option<u32> {
        match self {
            Change::Start(request) => {
                Some(request.automatic.as_ref().map_or(0, |auto| auto.attempt))
            }
            Change::Pause(_) => None,
        }
    }

    /// Who asks for it.
    pub fn actor(&self) -> &Actor {
        match self {
            Change::Start(request) => &request.actor,
            Change::Pause(request) => &request.actor,
        }
    }

    /// The audit event a change that was made records with it: the
    /// command, and a start's choice to skip data the store no longer
    /// holds.
    pub fn audit_event(&self, command_id: &str, transition: &Transition) -> NewAuditEvent {
        let action = match self {
            Change::Start(_) => AuditAction::StartConnector,
            Change::Pause(_) => AuditAction::PauseConnector,
        };
        let actor = self.actor();
        NewAuditEvent {
            request_id: self.request_id().unwrap_or_default().to_owned(),
            reason: self.reason().to_owned(),
            detail: match (transition.skip_to_earliest, transition.skips) {
                (true, Some((checkpoint, earliest))) => format!(
                    "command {command_id}; skip_to_earliest: resumes from {}, skipping the \
                     changes from the checkpoint {} on, which the store no longer holds",
                    earliest.to_rfc3339(),
                    checkpoint.to_rfc3339()
                ),
                (true, None) => format!(
                    "command {command_id}; skip_to_earliest: resumes from the store's earliest \
                     data if its agent finds the checkpoint gone"
                ),
                _ => format!("command {command_id}"),
            },
            ..NewAuditEvent::ok(actor, action, self.connector_id())
        }
    }

    pub fn trace_context(&self) -> &TraceContext {
        match self {
            Change::Start(request) => &request.trace_context,
            Change::Pause(request) => &request.trace_context,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Change::Start(request) => request
                .automatic
                .as_ref()
                .map_or("", |auto| auto.reason.as_str()),
            Change::Pause(request) => &request.reason,
        }
    }

    pub fn intent(&self, connector: &Connector) -> Intent {
        match self {
            Change::Start(request) => Intent::start(connector, request),
            Change::Pause(_) => Intent::pause(connector),
        }
    }

    /// Whether a retry with an already used `request_id` repeats the call
    /// that produced `previous` (then `previous` is the answer).
    /// Only the principal that used a request id repeats its call: another
    /// one is refused, never handed someone else's command.
    pub fn check_replay(&self, connector: &Connector, previous: &Command) -> Result<(), Rejection> {
        if !previous.principal.is_empty() && previous.principal != self.actor().principal {
            return Err(Rejection::RequestIdReused {
                connector_id: self.connector_id().to_owned(),
                request_id: self.request_id().unwrap_or_default().to_owned(),
                previous: "a call by another principal".to_owned(),
            });
        }
        let previous_intent = Intent {
            kind: previous.kind,
            pull_back_time: previous.pull_back_time,
            region: previous.region.clone(),
            skip_to_earliest: previous.skip_to_earliest,
        };
        rules::check_replay(
            self.connector_id(),
            self.request_id().unwrap_or_default(),
            &previous_intent,
            &self.intent(connector),
        )
    }

    /// The region override a start must confirm exists before deciding.
    pub fn region_to_verify(&self, connector: &Connector) -> Option<&str> {
        match self {
            Change::Start(request) => rules::region_to_verify(connector, request),
            Change::Pause(_) => None,
        }
    }

    /// The region whose agents must be able to pull back (a start with a
    /// pull-back time), for `rules::check_pull_back_capable`.
    pub fn pull_back_region<'a>(&'a self, connector: &'a Connector) -> Option<&'a str> {
        match self {
            Change::Start(request) => rules::pull_back_region(connector, request),
            Change::Pause(_) => None,
        }
    }

    /// The domain decision, given what the backend looked up: whether the
    /// region override exists, and for a pause the region before a start
    /// it supersedes; `now` is the server's clock.
    pub fn decide(
        &self,
        connector: &Connector,
        region_known: bool,
        undelivered_start_from: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Transition, Rejection> {
        match self {
            Change::Start(request) => rules::decide_start(connector, request, region_known, now),
            Change::Pause(request) => {
                rules::decide_pause(connector, request, undelivered_start_from)
            }
        }
    }

    /// What a dry run shows: the connector as `transition` would leave it
    /// and the command it would issue (with no id: none was written).
    pub fn preview(
        &self,
        connector: &Connector,
        transition: &Transition,
        now: DateTime<Utc>,
    ) -> (Connector, Command) {
        let command = Command {
            id: String::new(),
            connector_id: connector.id.clone(),
            kind: transition.command_kind,
            pull_back_time: transition.pull_back_time,
            region: transition.region.clone(),
            generation: transition.generation,
            request_id: self.request_id().map(str::to_owned),
            reason: self.reason().to_owned(),
            status: CommandStatus::Pending,
            agent_id: String::new(),
            error_reason: String::new(),
            error_message: String::new(),
            create_time: now,
            complete_time: None,
            trace_context: TraceContext::default(),
            late_result: None,
            principal: self.actor().principal.clone(),
            skip_to_earliest: transition.skip_to_earliest,
        };
        let connector = Connector {
            state: transition.state,
            desired_state: transition.desired_state,
            generation: transition.generation,
            region: transition.region.clone(),
            update_time: now,
            ..connector.clone()
        };
        (connector, command)
    }
}
