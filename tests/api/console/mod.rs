//! The web console in a real browser: Debian's Chromium, headless, driven
//! through ChromeDriver (WebDriver) by fantoccini, against the real server
//! (gRPC and console on port-0 listeners) with the demo fleet and its
//! reference agents, on PostgreSQL and on the embedded store. What the
//! browser did is checked through the gRPC API.

mod flows;
mod security;

use crate::helpers::*;
use connector_control::auth::Authenticator;
use connector_control::console::ConsoleOptions;
use connector_control::fleet::FleetOptions;
use connector_control::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use connector_control::server::{self, ServeOptions};
use connector_control::store::{FleetStore, PgStore, SqliteStore};
use fantoccini::{Client, ClientBuilder, Locator};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// How long a browser-side condition may take (a page load, a live
/// update): generous, since several browsers share two cores in CI.
pub const UI_WAIT: Duration = Duration::from_secs(30);

/// Browsers at once: each is a few processes; more would only queue on
/// the CPU.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);

pub enum Backend {
    Postgres,
    Embedded,
}

/// A server with its console, the demo fleet and its agents.
pub struct ConsoleApp {
    pub grpc: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub client: ConnectorServiceClient<Channel>,
    pub db: Option<Arc<TestDatabase>>,
    token: Option<String>,
    /// Holds the embedded store's file.
    _dir: TempDir,
    stop: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ConsoleApp {
    /// Without an auth file.
    pub async fn start(backend: Backend) -> ConsoleApp {
        Self::start_with(backend, Authenticator::open(), None).await
    }

    /// With `auth`, whose principal `agent-<region>` (token
    /// `agent_token(region)`) the demo agents use; the test's own calls
    /// use `admin`.
    pub async fn start_secured(auth: Authenticator, admin: &str) -> ConsoleApp {
        Self::start_with(Backend::Postgres, auth, Some(admin.to_owned())).await
    }

    async fn start_with(
        backend: Backend,
        auth: Authenticator,
        token: Option<String>,
    ) -> ConsoleApp {
        let dir = TempDir::new();
        match backend {
            Backend::Postgres => {
                let db = Arc::new(TestDatabase::create().await);
                let store = PgStore::connect(&db.url, 8).await.expect("connecting");
                store.migrate().await.expect("migrating");
                Self::serve(store, Some(db), dir, auth, token).await
            }
            Backend::Embedded => {
                let store = SqliteStore::open(&dir.0.join("console.db")).expect("opening");
                Self::serve(store, None, dir, auth, token).await
            }
        }
    }

    async fn serve<S: FleetStore>(
        store: S,
        db: Option<Arc<TestDatabase>>,
        dir: TempDir,
        auth: Authenticator,
        token: Option<String>,
    ) -> ConsoleApp {
        let secured = auth.enabled();
        connector_control::demo::seed(&store)
            .await
            .expect("seeding");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = listener.local_addr().unwrap();
        let console = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", console.local_addr().unwrap());
        let options = ServeOptions {
            fleet: FleetOptions::new(HEARTBEAT_INTERVAL),
            auth,
            drain_timeout: Duration::from_secs(5),
            console: Some(ConsoleOptions {
                listener: Arc::new(console),
                session_ttl: Duration::from_secs(3600),
                idle_timeout: Duration::from_secs(60),
                tls: None,
            }),
            ..ServeOptions::default()
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(server::serve(
            listener,
            store,
            options,
            stop.clone().cancelled_owned(),
        ));
        connector_control::demo::spawn_agents_with(grpc, stop.clone(), |region| {
            let token = if secured {
                Some(agent_token(region))
            } else {
                None
            };
            connector_control::auth::Bearer::from_args(token.as_deref(), None).unwrap()
        });
        let client = ConnectorServiceClient::new(channel_to(&grpc.to_string()).await);
        let app = ConsoleApp {
            grpc,
            base,
            client,
            db,
            token,
            _dir: dir,
            stop,
            server: Some(server),
        };
        // The demo starts nine connectors; its agents confirm them.
        app.wait_for_state("payments-eu", v1::ConnectorState::Running)
            .await;
        app.wait_for_state("users-ap", v1::ConnectorState::Running)
            .await;
        app
    }

    /// Calls made by the test carry this token (the admin's, with an auth
    /// file).
    fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The connector as the API sees it, called with `token` if given.
    pub async fn get(&self, id: &str) -> v1::Connector {
        self.client
            .clone()
            .get_connector(with_token(
                v1::GetConnectorRequest { id: id.to_owned() },
                self.token(),
            ))
            .await
            .expect("GetConnector")
            .into_inner()
    }

    pub async fn wait_for_state(&self, id: &str, state: v1::ConnectorState) {
        eventually(UI_WAIT, || async {
            (self.get(id).await.state == state as i32).then_some(())
        })
        .await;
    }

    pub async fn commands(&self, id: &str) -> Vec<v1::Command> {
        self.client
            .clone()
            .list_commands(with_token(
                v1::ListCommandsRequest {
                    connector_id: id.to_owned(),
                    page_size: 100,
                    page_token: String::new(),
                },
                self.token(),
            ))
            .await
            .expect("ListCommands")
            .into_inner()
            .commands
    }

    /// Pauses `id` through the API and waits until it is STOPPED.
    pub async fn pause_via_api(&self, id: &str) {
        self.client
            .clone()
            .pause_connector(with_token(
                v1::PauseConnectorRequest {
                    id: id.to_owned(),
                    reason: "test set-up".to_owned(),
                    ..Default::default()
                },
                self.token(),
            ))
            .await
            .expect("PauseConnector");
        self.wait_for_state(id, v1::ConnectorState::Stopped).await;
    }
}

impl Drop for ConsoleApp {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The demo agents' token in `region`, with an auth file.
pub fn agent_token(region: &str) -> String {
    format!("agent-{region}-token")
}

/// An auth file's entries for the demo agents (`agent_token`).
pub fn agent_principals() -> String {
    ["eu-1", "us-1", "ap-1"]
        .iter()
        .map(|region| {
            format!(
                "[[principal]]\nname = \"agent-{region}\"\nrole = \"agent\"\nregion = \"{region}\"\n\
                 token_sha256 = \"{}\"\n\n",
                connector_control::auth::token_sha256(&agent_token(region))
            )
        })
        .collect()
}

/// A request with `authorization: Bearer <token>` when a token is given.
pub fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// A headless Chromium session through a ChromeDriver of its own; both
/// end with it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

impl Browser {
    pub async fn open() -> Browser {
        let slot = BROWSERS.acquire().await.unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A process group of its own: chromium and its helpers outlive
        // chromedriver unless the whole group is killed (see Drop).
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect(
                "chromedriver is not installed: apt-get install chromium chromium-driver \
                 (.ci/run does)",
            );
        let profile = TempDir::new();
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            }
        });
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually(UI_WAIT, || {
            let capabilities = capabilities.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Browser {
            client,
            driver,
            _profile: profile,
            _slot: slot,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigating");
    }

    /// Waits for the element `css` and returns it.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = tokio::time::Instant::now() + UI_WAIT;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                return element;
            }
            if tokio::time::Instant::now() > deadline {
                let source = self.client.source().await.unwrap_or_default();
                panic!("no element {css} within {UI_WAIT:?}; page:\n{source}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `css`, found afresh until the click lands (a
    /// live update may replace it between finding and clicking).
    pub async fn click(&self, css: &str) {
        eventually(UI_WAIT, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.click().await.ok()
        })
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`).
    pub async fn js(&self, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
        self.client
            .execute(script, args)
            .await
            .expect("running a script")
    }

    /// Waits until `script` returns true.
    pub async fn until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + UI_WAIT;
        loop {
            if self.js(script, Vec::new()).await == serde_json::Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let source = self.client.source().await.unwrap_or_default();
                panic!("the page never showed {what} within {UI_WAIT:?}; page:\n{source}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the row of `id` shows `state`.
    pub async fn until_row(&self, id: &str, state: &str) {
        self.until(
            &format!("row {id} in state {state}"),
            &format!(
                "const r = document.getElementById('row-{id}'); return !!r && r.dataset.state === '{state}';"
            ),
        )
        .await;
    }

    /// Marks the document, so that a test can tell that it was not
    /// reloaded.
    pub async fn mark(&self) {
        self.js("window.__notReloaded = true; return true;", Vec::new())
            .await;
    }

    pub async fn still_marked(&self) -> bool {
        self.js("return window.__notReloaded === true;", Vec::new())
            .await
            == serde_json::Value::Bool(true)
    }

    /// Waits until the live stream is connected (the "live" mark shows).
    pub async fn until_live(&self) {
        self.until(
            "the live mark",
            "const l = document.getElementById('live'); return !!l && !l.hidden;",
        )
        .await;
    }

    /// Saves a screenshot under `target/console-screenshots/`, or, with
    /// `CONNECTOR_CONTROL_SCREENSHOTS=docs`, under `docs/` (the README
    /// shows those).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let folder = match std::env::var("CONNECTOR_CONTROL_SCREENSHOTS").as_deref() {
            Ok("docs") => root.join("docs"),
            _ => root.join("target").join("console-screenshots"),
        };
        let path = folder.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
    }

    /// Signs in with `token` on the sign-in page the browser is on.
    pub async fn sign_in(&self, token: &str) {
        let field = self.find("#token").await;
        field.send_keys(token).await.unwrap();
        self.click("form button[type=submit]").await;
        self.find("header.top [data-principal]").await;
    }
}

impl Drop for Browser {
    /// Kills chromedriver's process group: chromedriver and the chromium
    /// it started, which would otherwise stay behind, a dozen processes
    /// per test, until the machine runs out of memory.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
    }
}
