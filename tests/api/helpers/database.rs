//! A database of its own for each test.

/// Where the tests find PostgreSQL when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn base_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// `url` pointing at database `name` instead (URL or key-value form).
pub fn with_database(url: &str, name: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (query, rest) = match url.find('?') {
            Some(q) => (&url[q..], &url[..q]),
            None => ("", url),
        };
        let authority_end = rest[scheme_end + 3..]
            .find('/')
            .map_or(rest.len(), |i| scheme_end + 3 + i);
        format!("{}/{name}{query}", &rest[..authority_end])
    } else {
        format!("{url} dbname={name}")
    }
}

pub(super) async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok(pair) => pair,
        Err(error) => panic!(
            "cannot reach PostgreSQL at {url} ({error}). The tests need a PostgreSQL server: \
             start one (`pg_ctlcluster 15 main start`, or `docker compose up -d postgres`) \
             or point DATABASE_URL at one"
        ),
    };
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped (with its connections) when
/// the test ends, pass or fail.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_on(&base_url()).await
    }

    /// A fresh database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> Self {
        Self::create_with(admin_url, "").await
    }

    /// A fresh database owned by `role`, which may then use it as the
    /// service does (migrate it, among all else).
    pub async fn create_owned_by(role: &TestRole) -> Self {
        Self::create_with(&base_url(), &format!(" OWNER {}", role.name)).await
    }

    async fn create_with(admin_url: &str, options: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!("cc_test_{}", uuid::Uuid::new_v4().simple());
        admin_client(&admin_url)
            .await
            .execute(&format!("CREATE DATABASE {name}{options}"), &[])
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Self {
            name,
            url,
            admin_url,
        }
    }

    /// A connection to the server's administrative database (`base_url`),
    /// for what a test does to a database from outside it.
    pub async fn admin() -> tokio_postgres::Client {
        admin_client(&base_url()).await
    }

    /// A direct connection, for arranging what only agents could report and
    /// for checking what was (not) written.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }

    /// An outage: the database takes no new connection, and every open one
    /// is ended.
    pub async fn refuse_connections(&self) {
        administer(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            self.name
        ))
        .await;
        self.end_sessions().await;
    }

    /// Ends every session of this database begun before now, so that what
    /// was just committed (a database setting, a refusal) applies to all
    /// that remain. A session still starting is not listed yet: ended once
    /// it is, by looking until two looks apart find none.
    pub async fn end_sessions(&self) {
        let admin = Self::admin().await;
        let since: std::time::SystemTime =
            admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut quiet = 0;
        while quiet < 2 {
            let ended: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = $1 AND backend_start < $2",
                    &[&self.name, &since],
                )
                .await
                .unwrap()
                .get(0);
            quiet = if ended == 0 { quiet + 1 } else { 0 };
            assert!(
                tokio::time::Instant::now() < deadline,
                "sessions of {} stayed open",
                self.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The outage ends.
    pub async fn allow_connections(&self) {
        administer(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }

    /// Ends the session with backend `pid`, which must exist.
    pub async fn end_session(&self, pid: i32) {
        let ended: bool = Self::admin()
            .await
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(ended, "no session {pid} to end");
    }

    /// `url`, logging in as `role` instead (no password: the tests'
    /// server trusts local connections).
    pub fn url_as(&self, role: &TestRole) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("a URL-form DATABASE_URL");
        let host = rest.split_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{}@{host}", role.name)
    }
}

/// Runs `sql` on the administrative database; panics naming it if it fails.
async fn administer(sql: &str) {
    admin_client(&base_url())
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A login role of one test's own, no superuser: so that what PostgreSQL
/// does to ordinary roles (a connection limit) applies to the service. A
/// test declares it before the databases it owns, so that it is dropped
/// after them, pass or fail.
pub struct TestRole {
    pub name: String,
}

impl TestRole {
    pub async fn create() -> Self {
        let name = format!("cc_role_{}", uuid::Uuid::new_v4().simple());
        administer(&format!("CREATE ROLE {name} LOGIN")).await;
        Self { name }
    }

    /// How many connections the role may have open (None: no limit);
    /// connections already open stay.
    pub async fn limit_connections(&self, limit: Option<u32>) {
        let limit = limit.map_or(-1, i64::from);
        administer(&format!(
            "ALTER ROLE {} CONNECTION LIMIT {limit}",
            self.name
        ))
        .await;
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = off_runtime(async move {
            admin_client(&base_url())
                .await
                .execute(&format!("DROP ROLE IF EXISTS {name}"), &[])
                .await
        });
        if !matches!(dropped, Ok(Ok(_))) && !std::thread::panicking() {
            panic!("dropping test role {}: {dropped:?}", self.name);
        }
    }
}

/// Runs `work` to completion on a thread of its own: Drop runs inside the
/// test's runtime, where it cannot block on the async client.
fn off_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::Result<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work)
    })
    .join()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = off_runtime(async move {
            admin_client(&admin_url)
                .await
                .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
                .await
        });
        if !matches!(dropped, Ok(Ok(_))) && !std::thread::panicking() {
            panic!("dropping test database {}: {dropped:?}", self.name);
        }
    }
}
