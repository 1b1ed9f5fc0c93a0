//! The `--connectors-file` of `--driver postgres`: per connector id, the
//! destination PostgreSQL and the subscription there that is the connector
//! (TOML). The publisher is the one the subscription already points at.
//!
//! ```toml
//! [connectors.orders-eu]
//! destination = "postgres://replicator@10.0.3.7:5432/orders"   # no password here
//! subscription = "orders_sub"
//! password_file = "/run/secrets/orders-eu"   # or password_env = "ORDERS_EU_PASSWORD"
//! publisher = "postgres://monitor@10.0.1.4:5432/orders"   # for the lag; default: the subscription's own
//! publisher_password_env = "ORDERS_SOURCE_PASSWORD"       # or publisher_password_file
//! readiness = "30s"   # how long a start or pause waits for the apply worker (the default)
//! ```

use crate::agent::connectors_file;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    destination: String,
    subscription: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    publisher: Option<String>,
    publisher_password_file: Option<PathBuf>,
    publisher_password_env: Option<String>,
    readiness: Option<String>,
}

/// One connector: a subscription on its destination, checked.
#[derive(Clone)]
pub struct SubscriptionSpec {
    /// The destination's connection settings, the password included.
    pub destination: tokio_postgres::Config,
    pub subscription: String,
    /// Where to measure the lag; None: the subscription's own connection
    /// string (readable by a superuser only).
    pub publisher: Option<tokio_postgres::Config>,
    /// How long a start waits for the apply worker to run, and a pause for
    /// it to exit.
    pub readiness: Duration,
}

impl std::fmt::Debug for SubscriptionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionSpec")
            .field("destination", &describe(&self.destination))
            .field("subscription", &self.subscription)
            .field("publisher", &self.publisher.as_ref().map(describe))
            .field("readiness", &self.readiness)
            .finish()
    }
}

pub const DEFAULT_READINESS: Duration = Duration::from_secs(30);

/// Where a connection goes, never with its password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    crate::store::postgres::describe(config)
}

/// Reads and checks a connectors file (and the password files it names).
pub fn load(path: &Path) -> anyhow::Result<BTreeMap<String, SubscriptionSpec>> {
    connectors_file::load(path, parse)
}

/// Parses a connectors file's text.
pub fn parse(text: &str) -> anyhow::Result<BTreeMap<String, SubscriptionSpec>> {
    connectors_file::parse(text, check)
}

fn check(entry: Entry) -> anyhow::Result<SubscriptionSpec> {
    let destination = connection(
        "destination",
        &entry.destination,
        ("password_file", entry.password_file),
        ("password_env", entry.password_env),
    )?;
    if entry.subscription.is_empty() {
        bail!("subscription must name the subscription on the destination");
    }
    let publisher = entry
        .publisher
        .map(|text| {
            connection(
                "publisher",
                &text,
                ("publisher_password_file", entry.publisher_password_file),
                ("publisher_password_env", entry.publisher_password_env),
            )
        })
        .transpose()?;
    let readiness = match entry.readiness {
        None => DEFAULT_READINESS,
        Some(text) => humantime::parse_duration(&text)
            .with_context(|| format!("readiness = {text:?} is no duration (say \"30s\")"))?,
    };
    Ok(SubscriptionSpec {
        destination,
        subscription: entry.subscription,
        publisher,
        readiness,
    })
}

/// The connection string `field` holds, with its password from a file or
/// the environment (never from this file).
fn connection(
    field: &str,
    text: &str,
    (file_field, file): (&str, Option<PathBuf>),
    (env_field, variable): (&str, Option<String>),
) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = text.parse().map_err(|_| {
        anyhow::anyhow!(
            "{field} is no PostgreSQL connection string (say \"postgres://user@host:5432/db\")"
        )
    })?;
    if config.get_password().is_some() {
        bail!("{field} holds a password: keep it out of this file, in {file_field} or {env_field}");
    }
    match (file, variable) {
        (Some(_), Some(_)) => bail!("name {file_field} or {env_field}, not both"),
        (Some(file), None) => {
            let password = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {file_field} {}", file.display()))?;
            config.password(password.trim_end_matches(['\r', '\n']));
        }
        (None, Some(variable)) => {
            let password = std::env::var(&variable)
                .with_context(|| format!("{env_field} names {variable}, which is not set"))?;
            config.password(password);
        }
        (None, None) => {}
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_each_connectors_subscription() {
        let specs = parse(
            r#"
            [connectors.c1]
            destination = "host=127.0.0.1 port=5433 user=postgres dbname=dst"
            subscription = "orders_sub"
            [connectors.c2]
            destination = "postgres://replicator@db:5432/orders"
            subscription = "payments_sub"
            publisher = "postgres://monitor@source/orders"
            readiness = "5s"
            "#,
        )
        .unwrap();
        assert_eq!(specs["c1"].subscription, "orders_sub");
        assert_eq!(specs["c1"].readiness, DEFAULT_READINESS);
        assert!(specs["c1"].publisher.is_none());
        assert_eq!(specs["c2"].readiness, Duration::from_secs(5));
        assert_eq!(
            describe(specs["c2"].publisher.as_ref().unwrap()),
            "postgres://monitor@source:5432/orders"
        );
    }

    #[test]
    fn passwords_come_from_a_file_or_the_environment_and_are_never_shown() {
        let dir = std::env::temp_dir().join(format!("pg-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let specs = parse(&format!(
            "[connectors.c1]\ndestination = \"postgres://app@db/dst\"\nsubscription = \"s\"\n\
             password_file = {:?}\n",
            file.display().to_string()
        ))
        .unwrap();
        assert_eq!(specs["c1"].destination.get_password(), Some(&b"s3cret"[..]));
        let shown = format!("{:?}", specs["c1"]);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/dst"), "{shown}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mistakes_are_named_with_their_connector() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        let inline = error(
            "[connectors.c1]\ndestination = \"postgres://app:pw@db/dst\"\nsubscription = \"s\"",
        );
        assert!(
            inline.contains("connector c1: destination holds a password"),
            "{inline}"
        );
        assert!(
            error(
                "[connectors.c1]\ndestination = \"postgres://db/dst\"\nsubscription = \"s\"\n\
                 password_env = \"NO_SUCH_VARIABLE_HERE\""
            )
            .contains("which is not set")
        );
        assert!(
            error("[connectors.c1]\ndestination = \"postgres://db/dst\"\nsubscription = \"\"")
                .contains("subscription must name")
        );
        assert!(error("[connectors.c1]\ndestination = \"postgres://db/d\"").contains("missing"));
        // A mistake on a line holding a password names the line, not its text.
        let unknown = error(
            "[connectors.c1]\ndestination = \"postgres://db/d\"\nsubscription = \"s\"\n\
             password = \"s3cret\"\n",
        );
        assert!(
            unknown.contains("line 4") && unknown.contains("unknown field"),
            "{unknown}"
        );
        assert!(!unknown.contains("s3cret"), "{unknown}");
        let publisher = error(
            "[connectors.c1]\ndestination = \"postgres://db/d\"\nsubscription = \"s\"\n\
             publisher = \"postgres://u:s3cret@src/d\"\n",
        );
        assert!(
            publisher.contains("publisher holds a password"),
            "{publisher}"
        );
        assert!(!publisher.contains("s3cret"), "{publisher}");
    }
}
