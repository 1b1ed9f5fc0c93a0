//! `StoreError`: the failures a store reports, already translated from
//! driver errors, the same for both backends.

use crate::domain::{Hello, Rejection, Session};

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
    Unavailable(#[source] Cause),
    /// The transaction lost a deadlock or a serialization conflict with a
    /// concurrent one and was rolled back: retrying it succeeds. Backends
    /// retry it a few times before reporting it.
    #[error("the transaction conflicted with a concurrent one: {0}")]
    Contention(#[source] Cause),
    /// A hello claims an agent id that is registered in another region: an
    /// agent id belongs to one region. Nothing was written.
    #[error("agent {agent_id} is registered in region {registered}, not {claimed}")]
    AgentInOtherRegion {
        agent_id: String,
        registered: String,
        claimed: String,
    },
    /// A newer session of the agent exists; this session's write was refused.
    #[error("session {epoch} of agent {agent_id} was superseded")]
    Fenced { agent_id: String, epoch: i64 },
    /// Changes after `after` were pruned (`Feed::changes_after`): a
    /// watch cannot resume from there.
    #[error("changes after {after} were pruned (kept from {pruned_through} on)")]
    ChangesPruned { after: i64, pruned_through: i64 },
    /// Leader-only work was refused: the lease of this term lapsed or
    /// another replica holds it now.
    #[error("the leader lease of term {term} is no longer held")]
    NotLeader { term: i64 },
    /// Anything else: a bug or a schema mismatch. Logged, never shown.
    #[error("store failure: {0}")]
    Internal(#[source] Cause),
}

/// What caused a store failure, kept for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// The refusal of a hello whose agent id is registered in the region
    /// `registered`, another than the hello's.
    pub(crate) fn agent_in_other_region(hello: &Hello, registered: String) -> Self {
        StoreError::AgentInOtherRegion {
            agent_id: hello.agent_id.clone(),
            registered,
            claimed: hello.region.clone(),
        }
    }

    /// The fence of every write on behalf of `session`: `Fenced` unless
    /// `epoch`, the agent's as stored (None: no such agent), is the
    /// session's.
    pub(crate) fn fence(session: &Session, epoch: Option<i64>) -> Result<(), Self> {
        if epoch == Some(session.epoch) {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                agent_id: session.agent_id.clone(),
                epoch: session.epoch,
            })
        }
    }

    /// Whether retrying later may succeed: the database is unreachable, or
    /// the transaction lost a conflict.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Contention(_))
    }
}
