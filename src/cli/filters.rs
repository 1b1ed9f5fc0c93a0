//! The flags that choose connectors: `list` and `watch` filter them,
//! `start` and `pause` without an id select a batch; both become the API's
//! ConnectorFilter. Beyond the text and the region, which each names its
//! own way, they share their flags (`MatchArgs`).

use crate::proto::v1;
use clap::Args;

/// The filters of `list` and `watch` (ListConnectors' fields).
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Free text (names and project names: any part, any case; ids and
    /// server IPs: exact or prefix); empty matches everything.
    pub query: Option<String>,
    /// Only connectors running (or to run) in this region.
    #[arg(long)]
    pub region: Option<String>,
    #[command(flatten)]
    pub matching: MatchArgs,
}

impl FilterArgs {
    pub(super) fn filter(self) -> v1::ConnectorFilter {
        self.matching.filter(self.query, self.region)
    }
}

/// Which connectors a batch pause or start applies to (instead of an id;
/// `--region` is the start's own flag, so the batch's region is
/// `--in-region`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Batch (without an id)")]
pub struct SelectArgs {
    /// Connectors matching this text, as `connectors list QUERY`.
    #[arg(long)]
    pub query: Option<String>,
    /// Only connectors that run in this region.
    #[arg(long)]
    pub in_region: Option<String>,
    #[command(flatten)]
    pub matching: MatchArgs,
    /// Refuse (change nothing) when more connectors match.
    #[arg(long, default_value_t = 100)]
    pub max: i32,
    /// Change them without showing them and asking first.
    #[arg(long)]
    pub yes: bool,
}

impl SelectArgs {
    pub fn given(&self) -> bool {
        self.query.is_some() || self.in_region.is_some() || self.matching.given()
    }

    pub fn filter(&self) -> v1::ConnectorFilter {
        self.matching
            .filter(self.query.clone(), self.in_region.clone())
    }
}

/// The filters `list`, `watch` and a batch share.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Only connectors on this server (10.2.1.7) or network (10.2.1.0/24):
    /// matched on address bits.
    #[arg(long)]
    pub server_ip: Option<String>,
    /// Only these states, comma-separated: running,failed,...
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    pub state: Vec<v1::ConnectorState>,
    /// Only connectors that should run and lag: latency over the server's
    /// --latency-alert, or agent offline.
    #[arg(long)]
    pub lagging: bool,
    /// Only connectors waiting for an automatic start.
    #[arg(long)]
    pub awaiting_restart: bool,
}

impl MatchArgs {
    fn given(&self) -> bool {
        self.server_ip.is_some() || !self.state.is_empty() || self.lagging || self.awaiting_restart
    }

    /// The API's filter: these flags, with the free text and the region.
    fn filter(&self, query: Option<String>, region: Option<String>) -> v1::ConnectorFilter {
        v1::ConnectorFilter {
            query: query.unwrap_or_default(),
            region: region.unwrap_or_default(),
            states: self.state.iter().map(|s| *s as i32).collect(),
            lagging: self.lagging,
            awaiting_restart: self.awaiting_restart,
            server_ip: self.server_ip.clone().unwrap_or_default(),
        }
    }
}

/// A `--state` value in any case: `running` is CONNECTOR_STATE_RUNNING.
fn parse_state(text: &str) -> Result<v1::ConnectorState, String> {
    let name = format!("CONNECTOR_STATE_{}", text.trim().to_ascii_uppercase());
    v1::ConnectorState::from_str_name(&name)
        .filter(|state| *state != v1::ConnectorState::Unspecified)
        .ok_or_else(|| {
            format!(
                "unknown state '{text}'; use stopped, starting, running, pausing, failed or unknown"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_in_any_case() {
        assert_eq!(parse_state("Running"), Ok(v1::ConnectorState::Running));
        assert!(parse_state("unspecified").is_err());
        assert!(parse_state("sleeping").unwrap_err().contains("stopped"));
    }
}
