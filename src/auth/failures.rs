//! Calls refused for lack of valid credentials leave a bounded trace: a
//! metric by peer address and reason, and a log line per peer at most every
//! `LOG_EVERY`, with how many calls it stands for. Token guessing is then
//! visible, and a flood of it can neither fill the logs nor the metrics'
//! label space. (These calls are not in the audit trail: there is no
//! principal to record, and they write nothing.)

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::warn;

/// At most one log line per peer in this long.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// At most this many log lines, over all peers, in `LOG_EVERY`; the rest
/// are counted into the next line.
const LINES_PER_PERIOD: u32 = 10;
/// Peers named in the metric; later ones are `other`.
const LABELLED_PEERS: usize = 100;
/// Peers remembered for logging; past it the table starts afresh.
const TRACKED_PEERS: usize = 4096;

/// Why a caller was not authenticated, as the metric's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    NoCredentials,
    UnknownToken,
    Malformed,
    UnknownCertificate,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::NoCredentials => "no_credentials",
            Failure::UnknownToken => "unknown_token",
            Failure::Malformed => "malformed",
            Failure::UnknownCertificate => "unknown_certificate",
        }
    }
}

#[derive(Debug)]
struct PeerLog {
    last_logged: Instant,
    /// Calls since the last line.
    unlogged: u64,
}

#[derive(Debug)]
struct State {
    labelled: HashSet<IpAddr>,
    peers: HashMap<IpAddr, PeerLog>,
    period_start: Instant,
    lines_in_period: u32,
    /// Calls whose line was withheld by the global cap.
    withheld: u64,
}

/// Shared by every clone of an `Authenticator`.
#[derive(Debug)]
pub struct Failures {
    state: Mutex<State>,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                labelled: HashSet::new(),
                peers: HashMap::new(),
                period_start: Instant::now(),
                lines_in_period: 0,
                withheld: 0,
            }),
        }
    }
}

impl Failures {
    /// Counts one refused call from `peer` and logs it if its budget
    /// allows. Returns whether a line was logged.
    pub fn record(&self, peer: Option<IpAddr>, failure: Failure) -> bool {
        let mut state = self.state.lock().unwrap();
        let label = match peer {
            Some(ip) if state.labelled.contains(&ip) => ip.to_string(),
            Some(ip) if state.labelled.len() < LABELLED_PEERS => {
                state.labelled.insert(ip);
                ip.to_string()
            }
            Some(_) => "other".to_owned(),
            None => "unknown".to_owned(),
        };
        crate::telemetry::metrics::instruments()
            .unauthenticated
            .add(
                1,
                &[
                    opentelemetry::KeyValue::new("peer", label),
                    opentelemetry::KeyValue::new("reason", failure.as_str()),
                ],
            );
        let now = Instant::now();
        if now.duration_since(state.period_start) >= LOG_EVERY {
            state.period_start = now;
            state.lines_in_period = 0;
        }
        let key = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if !state.peers.contains_key(&key) && state.peers.len() >= TRACKED_PEERS {
            state.peers.clear();
        }
        let entry = state.peers.entry(key).or_insert(PeerLog {
            last_logged: now - LOG_EVERY,
            unlogged: 0,
        });
        entry.unlogged += 1;
        if now.duration_since(entry.last_logged) < LOG_EVERY {
            return false;
        }
        if state.lines_in_period >= LINES_PER_PERIOD {
            state.withheld += 1;
            return false;
        }
        let entry = state.peers.get_mut(&key).expect("inserted above");
        let calls = std::mem::take(&mut entry.unlogged);
        entry.last_logged = now;
        state.lines_in_period += 1;
        let withheld = std::mem::take(&mut state.withheld);
        warn!(
            peer = %peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            reason = failure.as_str(),
            calls,
            other_peers_calls = withheld,
            "unauthenticated calls refused (at most one line per peer every {}s)",
            LOG_EVERY.as_secs()
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_peer_is_one_line_per_period() {
        let failures = Failures::default();
        let peer = Some(IpAddr::from([10, 0, 0, 9]));
        let logged = (0..10_000)
            .filter(|_| failures.record(peer, Failure::UnknownToken))
            .count();
        assert_eq!(logged, 1);
    }

    #[test]
    fn many_peers_share_a_bounded_number_of_lines() {
        let failures = Failures::default();
        let logged = (0..5_000u32)
            .filter(|n| {
                let ip = IpAddr::from(n.to_be_bytes());
                failures.record(Some(ip), Failure::NoCredentials)
            })
            .count();
        assert_eq!(logged, LINES_PER_PERIOD as usize);
    }
}
