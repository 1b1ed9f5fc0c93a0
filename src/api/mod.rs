//! The gRPC surface: request validation and conversion, the services, and
//! the mapping of every failure to a status.
//!
//! - `service` is the ConnectorService as tonic serves it: each RPC's span
//!   and the body it runs. `connector_api` is its state and builder.
//! - The bodies, by topic: `reads` (Get/List), `commands` (Start/Pause),
//!   `batch` (with `batch_request`, its validation), `connectors` (Create,
//!   UpdateRestartPolicy), `mark_stopped`, `watch_connectors` (with
//!   `watch_limits`).
//! - Every mutating body goes through `mutation` (permission, rate limit
//!   from `limits`, span outcome, refusal audit from `refusals`); a `wait`
//!   goes through `deadline` and `wait`. `caller` names who is calling.
//! - `convert` and `agent_convert` validate requests, `pages` is the page
//!   size rule of every list; `views` shapes a connector for callers.
//! - `error` maps every failure to a status, `status` builds them.
//! - `agents` (AgentService: `session` opens an agent's stream,
//!   `session_stream` serves it) and `audit` (AuditService) are the other
//!   services; `interceptor` authenticates every call.

pub(crate) mod agent_convert;
mod agents;
mod audit;
mod batch;
mod batch_request;
mod caller;
mod commands;
mod connector_api;
mod connectors;
mod convert;
mod deadline;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod history;
mod interceptor;
pub mod limits;
mod mark_stopped;
mod mutation;
mod pages;
mod reads;
mod refusals;
mod service;
mod session;
mod session_stream;
mod status;
mod views;
mod wait;
mod watch_connectors;
pub mod watch_limits;

pub use agents::AgentApi;
pub use audit::AuditApi;
pub use batch_request::DEFAULT_MAX_CONNECTORS;
pub use caller::actor;
pub use connector_api::ConnectorApi;
pub use convert::{command_to_proto, timestamp_to_proto};
pub use error::{ApiError, WaitEnd};
pub use interceptor::interceptor;

/// Checks a hello as the server does when a session opens (for the
/// conformance suite, which judges agents by the same rules).
pub fn agent_hello(hello: crate::proto::v1::Hello) -> Result<(), tonic::Status> {
    agent_convert::hello(hello)
        .map(|_| ())
        .map_err(tonic::Status::from)
}
