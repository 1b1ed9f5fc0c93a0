//! `serve --demo`: a realistic fleet to try the control plane with. Seeds a
//! dozen connectors across three regions when the store is empty, starts
//! most of them, and runs reference agents in this process (two in eu-1,
//! one each in us-1 and ap-1, the ap-1 one lagging 12 minutes) so that List,
//! Start (with and without pull-back), Pause and `wait` behave as in
//! production.

use crate::agent::{self, AgentConfig};
use crate::domain::{ConnectorKind, Endpoint, NewConnector, SearchFilter, StartRequest};
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// One connector of the demo fleet (`demo_fleet.toml`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    id: String,
    name: String,
    project_id: String,
    project_name: String,
    kind: Kind,
    /// The source's region.
    source: String,
    /// The destination's region: where it runs.
    destination: String,
    /// Whether the demo starts it.
    started: bool,
}

#[derive(Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    IncrementalSync,
    FullMigration,
}

impl From<Kind> for ConnectorKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::IncrementalSync => ConnectorKind::IncrementalSync,
            Kind::FullMigration => ConnectorKind::FullMigration,
        }
    }
}

#[derive(serde::Deserialize)]
struct Fleet {
    connector: Vec<Seed>,
}

/// The demo fleet, as `demo_fleet.toml` says (checked by a test).
fn fleet() -> Vec<Seed> {
    toml::from_str::<Fleet>(include_str!("demo_fleet.toml"))
        .expect("src/demo_fleet.toml is a valid fleet")
        .connector
}

/// (agent id, region, server IP, reported latency)
const AGENTS: &[(&str, &str, &str, Duration)] = &[
    ("eu-1a", "eu-1", "10.0.1.7", Duration::from_secs(2)),
    ("eu-1b", "eu-1", "10.0.1.8", Duration::from_secs(3)),
    ("us-1a", "us-1", "10.1.1.7", Duration::from_secs(1)),
    ("ap-1a", "ap-1", "10.2.1.7", Duration::from_secs(12 * 60)),
];

/// Seeds the demo fleet if the store has no connector yet. Returns how many
/// connectors were created.
pub async fn seed<S: Store>(store: &S) -> Result<usize, StoreError> {
    let existing = store
        .list_connectors(&SearchFilter::default(), None, 1)
        .await?;
    if existing.total > 0 {
        info!(
            connectors = existing.total,
            "store not empty; demo fleet not seeded"
        );
        return Ok(0);
    }
    let fleet = fleet();
    for seed in &fleet {
        let (source, destination) = (&seed.source, &seed.destination);
        store
            .create_connector(NewConnector {
                restart_policy: Default::default(),
                id: seed.id.clone(),
                name: seed.name.clone(),
                project_id: seed.project_id.clone(),
                project_name: seed.project_name.clone(),
                kind: seed.kind.into(),
                source: Endpoint {
                    kind: "MYSQL".to_owned(),
                    region: source.clone(),
                    address: format!("mysql.{source}.internal:3306"),
                },
                destination: Endpoint {
                    kind: "OCEANBASE".to_owned(),
                    region: destination.clone(),
                    address: format!("oceanbase.{destination}.internal:2881"),
                },
                actor: Default::default(),
            })
            .await?;
        if seed.started {
            store
                .start_connector(&StartRequest {
                    connector_id: seed.id.clone(),
                    skip_to_earliest: false,
                    pull_back_time: None,
                    region: None,
                    request_id: Some("demo-seed".to_owned()),
                    actor: Default::default(),
                    trace_context: Default::default(),
                    automatic: None,
                })
                .await?;
        }
    }
    info!(connectors = fleet.len(), "demo fleet seeded");
    Ok(fleet.len())
}

/// The regions the demo's agents serve.
pub fn regions() -> Vec<&'static str> {
    let mut regions: Vec<&'static str> = AGENTS.iter().map(|(_, region, ..)| *region).collect();
    regions.dedup();
    regions
}

/// Runs the demo agents against `addr` until `stop` is cancelled.
pub fn spawn_agents(addr: SocketAddr, stop: CancellationToken) {
    spawn_agents_with(addr, stop, |_| crate::auth::Bearer::default());
}

/// `spawn_agents`, each agent sending the token `bearer` gives for its
/// region (for a server with an auth file).
pub fn spawn_agents_with(
    addr: SocketAddr,
    stop: CancellationToken,
    bearer: impl Fn(&str) -> crate::auth::Bearer,
) {
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    for (id, region, ip, latency) in AGENTS {
        let config = AgentConfig {
            control_plane: vec![format!("http://{host}")],
            bearer: bearer(region),
            tls: None,
            agent_id: (*id).to_owned(),
            region: (*region).to_owned(),
            server_ip: (*ip).to_owned(),
        };
        let driver = agent::Simulated::new(*latency, Duration::from_secs(24 * 3600));
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(error) = agent::run(config, driver, stop.cancelled_owned()).await {
                tracing::warn!(%error, "demo agent stopped");
            }
        });
    }
}

/// What to try, printed at start-up (`secured`: with an auth file).
pub fn banner(addr: SocketAddr, secured: bool) -> String {
    let s = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    format!(
        "\nconnector-control demo: 12 connectors in eu-1, us-1 and ap-1, 4 agents (ap-1a lags 12 min).\n\
         Try:\n\
         \x20 grpcurl -plaintext -d '{{\"query\": \"payments\"}}' {s} connector.v1.ConnectorService/ListConnectors\n\
         \x20 grpcurl -plaintext -d '{{\"id\": \"payments-ap\", \"reason\": \"latency\", \"wait\": true}}' {s} connector.v1.ConnectorService/PauseConnector\n\
         \x20 grpcurl -plaintext -d '{{\"id\": \"payments-ap\", \"pull_back_time\": \"<RFC 3339, within 24h>\", \"wait\": true}}' {s} connector.v1.ConnectorService/StartConnector\n\
         \x20 connector-control connectors list --server http://{s}\n\
         \x20 connector-control connectors pause users-ap --wait --server http://{s}\n\
         \x20 connector-control connectors start users-ap --pull-back -30m --wait --server http://{s}\n\
         \x20 connector-control agents list --server http://{s}\n{}",
        if secured {
            "With --auth-file, calls need a token of the file (grpcurl -H 'authorization: Bearer \
             <token>', CONNECTOR_CONTROL_TOKEN for the CLI); the demo's own agents have \
             principals of their own (process:agent-<region>), with tokens nobody else knows.\n"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_file_holds_a_dozen_connectors_in_the_agents_regions() {
        let fleet = fleet();
        assert_eq!(fleet.len(), 12);
        let regions = regions();
        for seed in &fleet {
            assert!(
                regions.contains(&seed.destination.as_str()),
                "{} runs in {}, which no demo agent serves",
                seed.id,
                seed.destination
            );
        }
    }
}
