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
        let admin_url = admin_url.to_owned();
        let name = format!("cc_test_{}", uuid::Uuid::new_v4().simple());
        admin_client(&admin_url)
            .await
            .execute(&format!("CREATE DATABASE {name}"), &[])
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
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a thread with its own runtime
        // can block on the async client.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    admin_client(&admin_url)
                        .await
                        .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
                        .await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) && !std::thread::panicking() {
            panic!("dropping test database {}: {dropped:?}", self.name);
        }
    }
}
