//! The `Driver` trait: what an agent's connector runtime does, and nothing
//! of the protocol. The session (`session.rs`) speaks to the control plane,
//! fences generations, acknowledges duplicates and sends heartbeats; a
//! driver only starts, pauses and observes connectors.
//!
//! A driver's calls may take as long as the runtime needs: the session runs
//! each connector's commands on a task of its own, so a start that takes
//! 30 s delays only that connector's result, never a heartbeat or another
//! connector.

use crate::domain::TimeRange;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;

/// What a driver can do, told to the control plane in `hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether a start may replay from a pull-back time. Without it the
    /// control plane refuses a pull-back at call time
    /// (`PULL_BACK_NOT_SUPPORTED`), and the session refuses one that still
    /// arrives without calling the driver.
    pub pull_back: bool,
}

/// A START the session hands to the driver: a generation newer than any
/// the connector has applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub connector_id: String,
    /// The generation this start establishes.
    pub generation: i64,
    /// Replay the destination from this time on. Only when the driver's
    /// capabilities allow pull-back.
    pub pull_back_time: Option<DateTime<Utc>>,
    /// Without a pull-back time: the checkpoint the control plane recorded
    /// last, whichever agent ran the connector. Resume from it, not from
    /// one of the driver's own, which may be older or missing (after a
    /// restart); None: none was recorded, use the driver's own if any.
    pub checkpoint_time: Option<DateTime<Utc>>,
    /// The checkpoint is gone from the store and the operator chose to
    /// resume from the earliest data held, skipping what lies between.
    pub skip_to_earliest: bool,
}

/// What a connector is doing, as its runtime says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    Running,
    Stopped,
    /// Ended by itself (crashed, or refused to go on).
    Failed,
}

/// What a driver observes of one connector.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub connector_id: String,
    pub run: Run,
    /// The time of the last change applied to the destination.
    pub checkpoint_time: Option<DateTime<Utc>>,
    /// How far the destination lags behind the source.
    pub latency: Option<Duration>,
    /// The change data the connector's store still holds.
    pub store_range: Option<TimeRange>,
    /// For operators: the reason of a failure, say.
    pub message: String,
    /// FAILED only: false when starting it again cannot help (the control
    /// plane then does not restart it automatically).
    pub retriable: Option<bool>,
    /// The generation of the last start or pause the runtime itself keeps
    /// as applied (it outlives the agent: after a restart, the session
    /// reports it until a command applies a newer one). None: the runtime
    /// keeps none; the session counts.
    pub generation: Option<i64>,
}

impl Observation {
    /// A connector the driver knows nothing of: not running.
    pub fn stopped(connector_id: &str) -> Self {
        Observation {
            connector_id: connector_id.to_owned(),
            run: Run::Stopped,
            checkpoint_time: None,
            latency: None,
            store_range: None,
            message: String::new(),
            retriable: None,
            generation: None,
        }
    }
}

/// Why a driver did not carry out a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable, for example `PULL_BACK_OUT_OF_RANGE`.
    pub reason: String,
    /// For operators.
    pub message: String,
    /// Whether trying again may succeed; None lets the control plane
    /// decide by the reason.
    pub retriable: Option<bool>,
}

impl Refusal {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Refusal {
            reason: reason.to_owned(),
            message: message.into(),
            retriable: None,
        }
    }

    /// The same refusal, never retried automatically.
    pub fn not_retriable(mut self) -> Self {
        self.retriable = Some(false);
        self
    }
}

/// A connector runtime. Implement this to connect yours: `examples/`
/// holds a small one, and `connector-control agent-conformance` checks an
/// agent built on it.
pub trait Driver: Send + Sync + 'static {
    /// Its name, for logs and `hello` (`simulated`, `process`, ...).
    fn name(&self) -> &str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Starts a stopped (or failed) connector; done once the runtime runs
    /// it. A refusal leaves the connector as it was.
    fn start(&self, start: Start) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// Stops a running connector; done once it has stopped. `generation`
    /// is the one this pause establishes (a runtime that keeps what it
    /// applied, as `Observation::generation`, keeps it).
    fn pause(
        &self,
        connector_id: &str,
        generation: i64,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// Every connector it runs, or ran and stopped or failed since the agent
    /// started, as it is now. A connector it runs must be here: one missing
    /// is, for the control plane, not running.
    fn observe(&self) -> Vec<Observation>;

    /// One connector as it is now (what a command's result carries); None
    /// when the driver knows nothing of it. The default looks through
    /// `observe`; a driver with many connectors answers directly.
    fn observe_connector(&self, connector_id: &str) -> Option<Observation> {
        self.observe()
            .into_iter()
            .find(|observed| observed.connector_id == connector_id)
    }

    /// The agent is shutting down (SIGTERM): stop what must not outlive
    /// it, as gently as a pause. Runs before the agent exits; the default
    /// does nothing.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
