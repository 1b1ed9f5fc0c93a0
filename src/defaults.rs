//! Every default `serve` runs with, in one place: clap shows and applies
//! these (`serve --help`), and `ServeOptions::default()`, `FleetOptions::new`
//! and the rate limits are built from the same values. Durations are
//! written as `serve` takes them (humantime).

use std::time::Duration;

/// `--max-wait`: the longest `wait: true` hold without a caller deadline.
pub const MAX_WAIT: &str = "60s";
/// `--heartbeat-interval`: agents' heartbeat period, and this replica's.
pub const HEARTBEAT_INTERVAL: &str = "10s";
/// `--poll-interval`: the longest a command waits when a wake-up is lost.
pub const POLL_INTERVAL: &str = "2s";
/// `--max-stream-age`: agents are asked to reconnect after this long.
pub const MAX_STREAM_AGE: &str = "1h";
/// How often the leader runs a round of automatic starts (at most the
/// heartbeat interval).
pub const RESTART_INTERVAL: &str = "1s";
/// How often each replica's change feed reads new changes (watchers hear
/// of a change within about this long).
pub const WATCH_POLL_INTERVAL: &str = "20ms";
/// `--watch-retention`: how long changes are kept for watchers to resume.
pub const WATCH_RETENTION: &str = "15m";
/// Changes each replica keeps in memory for its watchers.
pub const WATCH_FEED_CAPACITY: usize = 20_000;
/// How long a watch stream's full buffer waits for its reader.
pub const WATCH_GRACE: &str = "5s";
/// Events queued per watch stream; a watcher further behind is ended
/// (after `WATCH_GRACE`). Small: a stream that is not read holds no more
/// than this (some 100 KB) beside what HTTP/2 holds for it.
pub const WATCH_BUFFER: usize = 64;
/// WatchConnectors streams one replica serves at once.
pub const MAX_WATCHES: usize = 2_000;
/// WatchConnectors streams of one caller (principal; without an auth file,
/// address) on one replica.
pub const MAX_WATCHES_PER_CALLER: usize = 100;
/// `--drain-timeout`: how long calls in flight may take at shutdown.
pub const DRAIN_TIMEOUT: &str = "30s";
/// `--delivery-timeout`: a delivered, unanswered command is delivered again.
pub const DELIVERY_TIMEOUT: &str = "5m";
/// `--progress-refresh`, unless it is set: a connector's progress alone
/// (checkpoint, store range, small latency moves) is written at most every
/// six heartbeats, and at most every minute.
pub fn progress_refresh(heartbeat_interval: std::time::Duration) -> std::time::Duration {
    (heartbeat_interval * 6).min(std::time::Duration::from_secs(60))
}
/// `--latency-alert`: more reported latency flags a connector LAGGING.
pub const LATENCY_ALERT: &str = "60s";
/// `--metrics-interval`: how often the database-wide gauges are re-read.
pub const METRICS_INTERVAL: &str = "15s";
/// `--refusal-window`: identical refusals within it are one audit event
/// (after the first).
pub const REFUSAL_WINDOW: &str = "10s";
/// `--console-listen`: where the web console is served (`off`: not).
pub const CONSOLE_LISTEN: &str = "127.0.0.1:8080";
/// `--console-session-ttl`: how long a console sign-in lasts.
pub const CONSOLE_SESSION_TTL: &str = "12h";
/// A console connection with no traffic either way for this long is
/// closed (a live page's stream sends something every 15 s).
pub const CONSOLE_IDLE_TIMEOUT: &str = "60s";
/// `--handshake-timeout`: time for TLS and the HTTP/2 preface.
pub const HANDSHAKE_TIMEOUT: &str = "10s";
/// `--max-connections`.
pub const MAX_CONNECTIONS: usize = 10_000;
/// `--operator-rate-limit`, `--operator-rate-burst`: an operator's changes
/// a second, and at once.
pub const OPERATOR_RATE_LIMIT: u32 = 20;
pub const OPERATOR_RATE_BURST: u32 = 300;
/// `--admin-rate-limit`, `--admin-rate-burst`: the same for admins
/// (services registering connectors, and every caller without an auth
/// file).
pub const ADMIN_RATE_LIMIT: u32 = 100;
pub const ADMIN_RATE_BURST: u32 = 1_000;

/// A default duration above as a `Duration`.
pub fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).expect("the defaults are valid durations")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_default_duration_parses() {
        for text in [
            super::MAX_WAIT,
            super::HEARTBEAT_INTERVAL,
            super::POLL_INTERVAL,
            super::MAX_STREAM_AGE,
            super::DRAIN_TIMEOUT,
            super::DELIVERY_TIMEOUT,
            super::LATENCY_ALERT,
            super::METRICS_INTERVAL,
            super::REFUSAL_WINDOW,
            super::HANDSHAKE_TIMEOUT,
            super::CONSOLE_SESSION_TTL,
            super::CONSOLE_IDLE_TIMEOUT,
        ] {
            assert!(!super::duration(text).is_zero(), "{text}");
        }
    }
}
