//! What a supervised process says of its progress: one JSON object per line
//! on its standard output, every field optional, unknown fields ignored.
//!
//! ```json
//! {"checkpoint_time": "2026-12-07T10:00:00Z", "latency_ms": 1200,
//!  "store_range": {"earliest_time": "2026-12-06T10:00:00Z", "latest_time": "2026-12-07T10:00:01Z"},
//!  "message": "applying binlog 000123"}
//! ```
//!
//! A process that must give up says why before it exits, in the same way:
//! `{"error_reason": "PULL_BACK_OUT_OF_RANGE", "retriable": false,
//! "message": "the store holds data from 2026-12-06T10:00:00Z"}`; the reason
//! becomes the failed start's (or the failure's), `retriable: false` stops
//! automatic starts.
//!
//! A line that is not such an object (a log line, say) is logged and never
//! trusted. The first report also tells the driver the process is ready,
//! unless it carries an `error_reason`.

use crate::domain::TimeRange;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;

/// One progress line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Report {
    pub checkpoint_time: Option<DateTime<Utc>>,
    pub latency_ms: Option<u64>,
    pub store_range: Option<Range>,
    pub message: Option<String>,
    /// Why it is giving up (machine-readable, up to 64 characters).
    pub error_reason: Option<String>,
    /// Whether starting it again may help.
    pub retriable: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Range {
    pub earliest_time: DateTime<Utc>,
    pub latest_time: DateTime<Utc>,
}

impl Report {
    /// A line of standard output as a report, or why it is none.
    pub fn parse(line: &str) -> Result<Report, String> {
        let line = line.trim();
        if !line.starts_with('{') {
            return Err("not a JSON object".to_owned());
        }
        let report: Report = serde_json::from_str(line).map_err(|error| error.to_string())?;
        if let Some(range) = &report.store_range
            && range.earliest_time > range.latest_time
        {
            return Err("store_range: earliest_time is after latest_time".to_owned());
        }
        if let Some(reason) = &report.error_reason
            && (reason.is_empty()
                || reason.len() > 64
                || !reason
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        {
            return Err("error_reason: 1-64 characters of A-Z, 0-9 and _".to_owned());
        }
        Ok(report)
    }

    pub fn latency(&self) -> Option<Duration> {
        self.latency_ms.map(Duration::from_millis)
    }

    pub fn store_range(&self) -> Option<TimeRange> {
        self.store_range.as_ref().map(|range| TimeRange {
            earliest: range.earliest_time,
            latest: range.latest_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_a_json_object_whose_fields_are_all_optional() {
        let report = Report::parse(
            r#"{"checkpoint_time":"2026-12-07T10:00:00Z","latency_ms":1200,"extra":true,
               "store_range":{"earliest_time":"2026-12-06T10:00:00Z","latest_time":"2026-12-07T10:00:01Z"}}"#,
        )
        .unwrap();
        assert_eq!(report.latency(), Some(Duration::from_millis(1200)));
        assert!(report.store_range().is_some());
        assert_eq!(Report::parse("{}").unwrap(), Report::default());
        let giving_up =
            Report::parse(r#"{"error_reason": "PULL_BACK_OUT_OF_RANGE", "retriable": false}"#)
                .unwrap();
        assert_eq!(
            giving_up.error_reason.as_deref(),
            Some("PULL_BACK_OUT_OF_RANGE")
        );
        assert_eq!(giving_up.retriable, Some(false));
    }

    #[test]
    fn anything_else_is_no_report() {
        for garbage in [
            "starting up...",
            "[1,2]",
            r#"{"latency_ms": -5}"#,
            r#"{"checkpoint_time": "yesterday"}"#,
            r#"{"store_range": {"earliest_time": "2026-12-07T10:00:00Z", "latest_time": "2026-12-06T10:00:00Z"}}"#,
            "{not json",
            r#"{"error_reason": "bad reason"}"#,
            r#"{"error_reason": ""}"#,
        ] {
            assert!(Report::parse(garbage).is_err(), "{garbage} was trusted");
        }
    }
}
