//! Pure domain rules: connector and command types, validation, the start /
//! pause state machine and page tokens. No I/O lives here.

pub mod assign;
pub mod audit;
mod change;
pub mod fleet;
pub mod lag;
pub mod mark_stopped;
mod model;
pub mod page_token;
pub mod presence;
pub mod progress;
pub mod pull_back;
mod rejection;
pub mod reports;
pub mod restart;
pub mod restart_policy;
pub mod resumable;
pub mod rules;
#[doc(hidden)]
pub mod sample;
pub mod server_net;
pub mod validate;
pub mod watch;

pub use audit::{
    Actor, AuditAction, AuditEvent, AuditFilter, NewAuditEvent, RefusalAggregator, Refused,
};
pub use change::Change;
pub use fleet::{
    Agent, CommandReport, ConnectorUpdate, Hello, ObservedStatus, RegionSummary, Replica, Session,
    SessionEnd,
};
pub use lag::{LagCause, flagged_message, lag_cause};
pub use mark_stopped::MarkedStopped;
pub use model::*;
pub use page_token::{PageTokenCodec, PageTokenError};
pub use presence::{Gone, SessionReport};
pub use restart::{RestartMode, RestartPolicy, Restarts};
pub use rules::{Rejection, Transition};
pub use server_net::ServerNet;
pub use validate::Violation;
