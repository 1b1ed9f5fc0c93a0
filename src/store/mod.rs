//! Persistence. The `Store` trait is what the API needs; backends load and
//! save, and leave every decision to `crate::domain`.

pub mod postgres;

use crate::domain::{
    Command, Connector, Cursor, NewConnector, PauseRequest, Rejection, SearchFilter, StartRequest,
};
use std::future::Future;

pub use postgres::PgStore;

/// Failures a store reports, already translated from driver errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("connector {0} does not exist")]
    ConnectorNotFound(String),
    #[error("command {0} does not exist")]
    CommandNotFound(String),
    #[error("connector {0} already exists")]
    ConnectorAlreadyExists(String),
    /// The domain refused the change; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The database cannot be reached (connection refused or lost, pool
    /// exhausted, server shutting down). Retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a schema mismatch. Logged, never shown.
    #[error("store failure: {0}")]
    Internal(String),
}

/// One page of a connector search.
#[derive(Clone, Debug)]
pub struct Page {
    pub connectors: Vec<Connector>,
    /// Whether more connectors follow the last one returned.
    pub more: bool,
    /// Connectors matching the filters, across all pages.
    pub total: i64,
}

/// The result of an accepted start or pause, or of its retry.
#[derive(Clone, Debug)]
pub struct CommandOutcome {
    pub connector: Connector,
    pub command: Command,
    /// True when `request_id` matched an earlier call and nothing changed.
    pub replayed: bool,
}

/// What the API layer needs from persistence. Every method that changes
/// something does so in one transaction: it either fully happens or leaves
/// no trace.
pub trait Store: Clone + Send + Sync + 'static {
    /// Inserts a STOPPED connector at generation 0 in its destination's
    /// region.
    fn create_connector(
        &self,
        new: NewConnector,
    ) -> impl Future<Output = Result<Connector, StoreError>> + Send;

    fn get_connector(&self, id: &str)
    -> impl Future<Output = Result<Connector, StoreError>> + Send;

    /// Up to `limit` connectors matching `filter`, ordered by (name, id),
    /// strictly after `after`.
    fn list_connectors(
        &self,
        filter: &SearchFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Applies `domain::rules::decide_start` under a row lock and records the
    /// transition with its PENDING command, superseding undelivered ones.
    fn start_connector(
        &self,
        request: &StartRequest,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send;

    /// As `start_connector`, for `domain::rules::decide_pause`.
    fn pause_connector(
        &self,
        request: &PauseRequest,
    ) -> impl Future<Output = Result<CommandOutcome, StoreError>> + Send;

    fn get_command(&self, id: &str) -> impl Future<Output = Result<Command, StoreError>> + Send;

    /// The key page tokens are signed with, the same for every replica.
    fn page_token_key(&self) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Succeeds when the database answers; drives the health service.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
