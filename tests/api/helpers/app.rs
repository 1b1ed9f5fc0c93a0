//! The real server in the test's process, on a port-0 listener.

use super::*;
use connector_control::api::limits::RateLimits;
use connector_control::auth::Authenticator;
use connector_control::fleet::FleetOptions;
use connector_control::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use connector_control::server::{self, ServeOptions};
use connector_control::store::PgStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The servers' heartbeat interval in tests.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);

/// A running server on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: ConnectorServiceClient<Channel>,
    pub db: Arc<TestDatabase>,
    shutdown: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_on(Arc::new(TestDatabase::create().await)).await
}

async fn spawn_on(db: Arc<TestDatabase>) -> TestApp {
    spawn_at(db, "127.0.0.1:0").await
}

async fn spawn_at(db: Arc<TestDatabase>, addr: &str) -> TestApp {
    // Short, so that liveness tests finish quickly; they wait on
    // conditions, never on this value.
    spawn_replica_at(
        db,
        addr,
        FleetOptions::new(HEARTBEAT_INTERVAL),
        None,
        Authenticator::open(),
    )
    .await
}

/// A server on its own database that authenticates callers with `auth`
/// and limits each principal's changes as `rate_limits` says (None: the
/// defaults).
pub async fn spawn_with_auth(auth: Authenticator, rate_limits: Option<RateLimits>) -> TestApp {
    let db = Arc::new(TestDatabase::create().await);
    let fleet = FleetOptions::new(HEARTBEAT_INTERVAL);
    let url = db.url.clone();
    spawn_with(db, &url, "127.0.0.1:0", fleet, None, auth, |options| {
        if let Some(limits) = rate_limits {
            options.rate_limits = limits;
        }
    })
    .await
}

/// A server on its own database whose options `tune` changes.
pub async fn spawn_tuned(tune: impl FnOnce(&mut ServeOptions)) -> TestApp {
    let db = Arc::new(TestDatabase::create().await);
    let fleet = FleetOptions::new(HEARTBEAT_INTERVAL);
    let url = db.url.clone();
    spawn_with(
        db,
        &url,
        "127.0.0.1:0",
        fleet,
        None,
        Authenticator::open(),
        tune,
    )
    .await
}

/// One more replica (its own pool, listener and loops) on `db`.
pub async fn spawn_replica(
    db: Arc<TestDatabase>,
    fleet: FleetOptions,
    replica_id: &str,
) -> TestApp {
    spawn_replica_at(
        db,
        "127.0.0.1:0",
        fleet,
        Some(replica_id),
        Authenticator::open(),
    )
    .await
}

async fn spawn_replica_at(
    db: Arc<TestDatabase>,
    addr: &str,
    fleet: FleetOptions,
    replica_id: Option<&str>,
    auth: Authenticator,
) -> TestApp {
    let url = db.url.clone();
    spawn_with(db, &url, addr, fleet, replica_id, auth, |_| {}).await
}

/// As `spawn_replica`, connecting to PostgreSQL with `url` (another role,
/// say) rather than `db`'s own.
pub async fn spawn_replica_connecting_to(
    db: Arc<TestDatabase>,
    url: &str,
    fleet: FleetOptions,
    replica_id: &str,
) -> TestApp {
    let auth = Authenticator::open();
    spawn_with(
        db,
        url,
        "127.0.0.1:0",
        fleet,
        Some(replica_id),
        auth,
        |_| {},
    )
    .await
}

async fn spawn_with(
    db: Arc<TestDatabase>,
    url: &str,
    addr: &str,
    fleet: FleetOptions,
    replica_id: Option<&str>,
    auth: Authenticator,
    tune: impl FnOnce(&mut ServeOptions),
) -> TestApp {
    let mut store = PgStore::connect(url, 8)
        .await
        .expect("connecting the store");
    if let Some(id) = replica_id {
        store = store.with_replica_id(id);
    }
    store.migrate().await.expect("migrating");
    let listener = TcpListener::bind(addr).await.expect("binding");
    let addr = listener.local_addr().unwrap();
    let (shutdown, stop) = oneshot::channel::<()>();
    let mut options = ServeOptions {
        max_wait: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(10),
        fleet,
        auth,
        ..ServeOptions::default()
    };
    tune(&mut options);
    let server = tokio::spawn(server::serve(listener, store, options, async {
        let _ = stop.await;
    }));
    let client = ConnectorServiceClient::new(channel_to(&addr.to_string()).await);
    TestApp {
        addr,
        client,
        db,
        shutdown: std::sync::Mutex::new(Some(shutdown)),
        server: Some(server),
    }
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        channel_to(&self.addr.to_string()).await
    }

    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        spawn_on(self.db.clone()).await
    }

    /// Asks the server to shut down gracefully, without waiting for it.
    pub fn begin_shutdown(&self) {
        if let Some(shutdown) = self.shutdown.lock().unwrap().take() {
            let _ = shutdown.send(());
        }
    }

    /// As `restart`, listening on the same address, so that connected
    /// agents find the new server when they reconnect.
    pub async fn restart_in_place(mut self) -> TestApp {
        self.stop().await;
        spawn_at(self.db.clone(), &self.addr.to_string()).await
    }

    pub async fn stop(&mut self) {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task panicked")
                .expect("server failed");
        }
    }

    pub async fn create(&self, connector: v1::Connector) -> v1::Connector {
        self.client
            .clone()
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(connector),
            })
            .await
            .expect("CreateConnector")
            .into_inner()
    }

    pub async fn get(&self, id: &str) -> v1::Connector {
        self.client
            .clone()
            .get_connector(v1::GetConnectorRequest { id: id.to_owned() })
            .await
            .expect("GetConnector")
            .into_inner()
    }

    pub async fn start(
        &self,
        request: v1::StartConnectorRequest,
    ) -> Result<v1::StartConnectorResponse, tonic::Status> {
        self.client
            .clone()
            .start_connector(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn pause(
        &self,
        request: v1::PauseConnectorRequest,
    ) -> Result<v1::PauseConnectorResponse, tonic::Status> {
        self.client
            .clone()
            .pause_connector(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list(
        &self,
        request: v1::ListConnectorsRequest,
    ) -> Result<v1::ListConnectorsResponse, tonic::Status> {
        self.client
            .clone()
            .list_connectors(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Runs one SQL statement on the test database; returns rows affected.
    pub async fn sql(&self, statement: &str) -> u64 {
        self.db
            .client()
            .await
            .execute(statement, &[])
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// As an agent would report it: the connector's store holds data from
    /// 2026-01-01 to 2026-01-03, and its checkpoint, 2025-12-31T22:00Z,
    /// is before that.
    pub async fn lose_checkpoint(&self, id: &str) {
        self.sql(&format!(
            "UPDATE connectors SET store_earliest_time = '2026-01-01T00:00:00Z',
                 store_latest_time = '2026-01-03T00:00:00Z',
                 checkpoint_time = '2025-12-31T22:00:00Z'
             WHERE id = '{id}'"
        ))
        .await;
    }

    /// Runs one query returning a single bigint.
    pub async fn count(&self, query: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one(query, &[])
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .get(0)
    }

    /// Sets what an agent would have reported: state and store range.
    pub async fn observe(&self, id: &str, state: &str) {
        let n = self
            .sql(&format!(
                "UPDATE connectors SET state = '{state}' WHERE id = '{id}'"
            ))
            .await;
        assert_eq!(n, 1);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A gRPC channel to `addr` (host:port).
pub async fn channel_to(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

impl TestApp {
    pub async fn command_status(&self, command_id: &str) -> String {
        self.db
            .client()
            .await
            .query_one("SELECT status FROM commands WHERE id = $1", &[&command_id])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until GetConnector satisfies `check`.
    pub async fn connector_becomes(
        &self,
        id: &str,
        check: impl Fn(&v1::Connector) -> bool,
    ) -> v1::Connector {
        eventually(Duration::from_secs(10), || async {
            let connector = self.get(id).await;
            check(&connector).then_some(connector)
        })
        .await
    }
}
