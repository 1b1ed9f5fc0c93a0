//! The reference agent: a real client of AgentService whose connectors a
//! `Driver` runs. It is what docker-compose, the demo and the tests run,
//! and the model for production agents:
//!
//! - `session.rs` speaks the protocol, once for every driver: it queues
//!   `hello` (with the driver's capabilities and what runs) before awaiting
//!   the call, waits for `welcome`, sends a heartbeat per
//!   `heartbeat_interval`, applies a command only if its generation is
//!   newer than what its connector applied (acknowledging duplicates as
//!   no-ops), and runs each connector's commands on a task of its own;
//! - `driver.rs` is what a connector runtime implements: start, pause,
//!   observe, and what it can do;
//! - `simulated.rs` is the default driver (`--driver simulated`): connectors
//!   whose checkpoints advance over a store of bounded retention, refusing a
//!   pull-back outside it (`PULL_BACK_OUT_OF_RANGE`) or a start from a
//!   checkpoint it lost (`CHECKPOINT_OUT_OF_RANGE`, unless
//!   `skip_to_earliest`);
//! - `process/` (`--driver process`) runs each connector as a supervised
//!   child process, and `postgres/` (`--driver postgres`) makes each a
//!   PostgreSQL logical-replication subscription; both read their
//!   `--connectors-file` through `connectors_file.rs`;
//! - this file reconnects with jittered exponential backoff (1 s x 1.6, at
//!   most 30 s), moving to the next replica each time.

mod connectors_file;
pub mod driver;
pub mod postgres;
pub mod process;
mod session;
pub mod simulated;

pub use driver::Driver;
pub use postgres::Subscriptions;
pub use process::Processes;
pub use simulated::Simulated;

use session::{Connectors, SessionEnd};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Endpoint;
use tracing::warn;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_FACTOR: f64 = 1.6;
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Who the agent is and where it connects.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The control plane's replicas, for example http://127.0.0.1:50051; the
    /// agent starts at a random one and moves to the next whenever its
    /// stream ends.
    pub control_plane: Vec<String>,
    pub agent_id: String,
    pub region: String,
    pub server_ip: String,
    /// Sent as `authorization: Bearer <token>`.
    pub bearer: crate::auth::Bearer,
    /// TLS towards `https://` replicas.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

/// The next reconnect backoff: 1.6 times the last, at most 30 s.
fn next_backoff(current: Duration) -> Duration {
    current.mul_f64(BACKOFF_FACTOR).min(BACKOFF_MAX)
}

/// `delay` varied by up to ±20% (and still at most 30 s), so that a fleet
/// does not reconnect in lockstep after a control-plane restart.
fn jittered(delay: Duration) -> Duration {
    // A random fraction in [0, 1) from a v4 UUID's random bits.
    let random = (uuid::Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0;
    delay.mul_f64(0.8 + 0.4 * random).min(BACKOFF_MAX)
}

/// Runs the agent, its connectors run by `driver`, until `shutdown`
/// completes.
pub async fn run<D: Driver>(
    config: AgentConfig,
    driver: D,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if config.control_plane.is_empty() {
        anyhow::bail!("no control-plane address given");
    }
    let endpoints = config
        .control_plane
        .iter()
        .map(|address| {
            let endpoint = Endpoint::from_shared(address.trim().to_owned())?
                .http2_keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true)
                .connect_timeout(Duration::from_secs(5));
            Ok(match &config.tls {
                Some(tls) => endpoint.tls_config(tls.clone())?,
                None => endpoint,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let instance_id = uuid::Uuid::new_v4().to_string();
    let (connectors, mut results) = Connectors::new(Arc::new(driver));
    let mut backoff = BACKOFF_START;
    // A random first replica spreads a fleet that starts together.
    let mut next = (uuid::Uuid::new_v4().as_u128() % endpoints.len() as u128) as usize;
    tokio::pin!(shutdown);
    loop {
        let endpoint = &endpoints[next];
        next = (next + 1) % endpoints.len();
        let session = session::session(endpoint, &config, &instance_id, &connectors, &mut results);
        let outcome = tokio::select! {
            _ = &mut shutdown => {
                connectors.shutdown().await;
                return Ok(());
            }
            outcome = session => outcome,
        };
        let delay = match outcome {
            SessionEnd::Reconnect(after) => {
                backoff = BACKOFF_START;
                jittered(after)
            }
            SessionEnd::Lost { was_welcomed, why } => {
                if was_welcomed {
                    backoff = BACKOFF_START;
                }
                warn!(agent_id = %config.agent_id, %why, retry_in = ?backoff, "session lost");
                let delay = jittered(backoff);
                backoff = next_backoff(backoff);
                delay
            }
        };
        tokio::select! {
            _ = &mut shutdown => {
                connectors.shutdown().await;
                return Ok(());
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_1_6_and_stops_at_30_seconds() {
        assert_eq!(
            next_backoff(Duration::from_secs(1)),
            Duration::from_millis(1600)
        );
        assert_eq!(
            next_backoff(Duration::from_secs(25)),
            Duration::from_secs(30)
        );
        for _ in 0..100 {
            let delay = jittered(Duration::from_secs(10));
            assert!(delay >= Duration::from_secs(8) && delay <= Duration::from_secs(12));
            assert!(jittered(Duration::from_secs(30)) <= Duration::from_secs(30));
        }
    }
}
