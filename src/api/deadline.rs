//! When a `wait: true` call must answer: the caller's `grpc-timeout`, less
//! a margin, and never later than the server's `--max-wait`.

use super::connector_api::ConnectorApi;
use crate::store::FleetStore;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Request;

impl<S: FleetStore> ConnectorApi<S> {
    /// When a `wait: true` call must answer: shortly before the caller's
    /// `grpc-timeout` (so the caller gets our explanation rather than a bare
    /// deadline error), and never later than `max_wait`.
    pub(super) fn deadline<T>(&self, request: &Request<T>) -> Instant {
        let budget = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| timeout - (timeout / 10).min(Duration::from_millis(200)))
            .map_or(self.max_wait, |timeout| timeout.min(self.max_wait));
        Instant::now() + budget
    }
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }
}
