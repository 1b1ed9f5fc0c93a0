//! The `--connectors-file` of `--driver process`: per connector id, how its
//! process is run and stopped (TOML).
//!
//! ```toml
//! [connectors.orders-eu]
//! command = ["/opt/replicator/bin/run", "--id", "{connector_id}", "--from", "{pull_back_time}"]
//! env = { REPLICATOR_LOG = "info" }
//! working_dir = "/var/lib/replicator"
//! stop_signal = "SIGTERM"      # the default
//! stop_grace = "10s"           # then SIGKILL; the default
//! readiness = "2s"             # started once it reported a status, or stayed up this long
//! no_retry_exit_codes = [78]   # exits that automatic starts must not retry
//! ```

use crate::agent::connectors_file;
use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
    stop_signal: Option<String>,
    stop_grace: Option<String>,
    readiness: Option<String>,
    #[serde(default)]
    no_retry_exit_codes: Vec<i32>,
}

/// How one connector's process is run, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSpec {
    /// The program and its arguments; `{connector_id}`, `{generation}`,
    /// `{pull_back_time}`, `{checkpoint_time}` and `{skip_to_earliest}` are
    /// replaced at each start (a time as RFC 3339, empty when there is none).
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// Sent to the process group to stop it.
    pub stop_signal: Signal,
    /// How long it may take to stop before SIGKILL.
    pub stop_grace: Duration,
    /// A start succeeds once the process reports its first status, or has
    /// stayed up this long.
    pub readiness: Duration,
    /// Exit codes after which starting again cannot help.
    pub no_retry_exit_codes: Vec<i32>,
}

pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_READINESS: Duration = Duration::from_secs(2);

/// Reads and checks a connectors file.
pub fn load(path: &Path) -> anyhow::Result<BTreeMap<String, ProcessSpec>> {
    connectors_file::load(path, parse)
}

/// Parses a connectors file's text.
pub fn parse(text: &str) -> anyhow::Result<BTreeMap<String, ProcessSpec>> {
    connectors_file::parse(text, check)
}

fn check(entry: Entry) -> anyhow::Result<ProcessSpec> {
    if entry
        .command
        .first()
        .is_none_or(|program| program.is_empty())
    {
        bail!("command must name a program: command = [\"/path/to/program\", \"arg\", ...]");
    }
    let duration = |field: &str, value: Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text)
            .with_context(|| format!("{field} = {text:?} is no duration (say \"10s\" or \"2m\")")),
    };
    let stop_signal = match entry.stop_signal {
        None => Signal::SIGTERM,
        Some(name) => {
            let full = if name.starts_with("SIG") {
                name.clone()
            } else {
                format!("SIG{name}")
            };
            Signal::from_str(&full)
                .with_context(|| format!("stop_signal = {name:?} is no signal (say \"SIGTERM\")"))?
        }
    };
    Ok(ProcessSpec {
        command: entry.command,
        env: entry.env,
        working_dir: entry.working_dir,
        stop_signal,
        stop_grace: duration("stop_grace", entry.stop_grace, DEFAULT_STOP_GRACE)?,
        readiness: duration("readiness", entry.readiness, DEFAULT_READINESS)?,
        no_retry_exit_codes: entry.no_retry_exit_codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_each_connectors_process_with_defaults() {
        let specs = parse(
            r#"
            [connectors.c1]
            command = ["/bin/sh", "-c", "exec sleep 60"]
            [connectors.c2]
            command = ["run", "{connector_id}"]
            env = { A = "1" }
            working_dir = "/tmp"
            stop_signal = "INT"
            stop_grace = "3s"
            readiness = "500ms"
            no_retry_exit_codes = [78]
            "#,
        )
        .unwrap();
        assert_eq!(specs["c1"].stop_signal, Signal::SIGTERM);
        assert_eq!(specs["c1"].stop_grace, DEFAULT_STOP_GRACE);
        let c2 = &specs["c2"];
        assert_eq!(c2.stop_signal, Signal::SIGINT);
        assert_eq!(c2.stop_grace, Duration::from_secs(3));
        assert_eq!(c2.readiness, Duration::from_millis(500));
        assert_eq!(c2.no_retry_exit_codes, [78]);
    }

    #[test]
    fn mistakes_are_named_with_their_connector() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(error("[connectors.c1]\ncommand = []").contains("connector c1: command must name"));
        assert!(
            error("[connectors.c1]\ncommand = [\"x\"]\nstop_signal = \"NOPE\"")
                .contains("no signal")
        );
        assert!(
            error("[connectors.c1]\ncommand = [\"x\"]\nstop_grace = \"soon\"")
                .contains("no duration")
        );
        assert!(error("[connectors.c1]\ncommand = [\"x\"]\ncomand = 1").contains("unknown field"));
    }
}
