//! proto -> domain for what agents send, validated like operator requests.

use super::convert::{invalid_request, timestamp};
use super::error::ApiError;
use crate::domain::fleet::Capabilities;
use crate::domain::validate::{self, Violations};
use crate::domain::{CommandReport, ConnectorState, Hello, ObservedStatus, TimeRange};
use crate::proto::v1;
use std::time::Duration;

const MAX_INSTANCE_ID_LEN: usize = 128;
const MAX_VERSION_LEN: usize = 64;
const MAX_MESSAGE_LEN: usize = 4096;
/// Connector statuses in one hello or heartbeat.
pub const MAX_STATUSES: usize = 10_000;

fn state(value: i32) -> Result<ConnectorState, String> {
    let state = match v1::ConnectorState::try_from(value) {
        Ok(v1::ConnectorState::Running) => ConnectorState::Running,
        Ok(v1::ConnectorState::Stopped) => ConnectorState::Stopped,
        Ok(v1::ConnectorState::Failed) => ConnectorState::Failed,
        _ => {
            return Err(format!(
                "is {value}; agents report CONNECTOR_STATE_RUNNING, _STOPPED or _FAILED"
            ));
        }
    };
    Ok(state)
}

/// The latest checkpoint or store time an agent may report now: the
/// server's clock and the skew it allows. Later is a clock to fix, not
/// data: the field is dropped, the rest of the status recorded.
fn latest_allowed() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
        + chrono::TimeDelta::from_std(crate::domain::rules::PULL_BACK_CLOCK_SKEW)
            .expect("a small duration")
}

fn status(
    violations: &mut Violations,
    field: &str,
    s: v1::ConnectorStatus,
    latest_allowed: chrono::DateTime<chrono::Utc>,
) -> Option<ObservedStatus> {
    violations.check(
        &format!("{field}.connector_id"),
        validate::id(&s.connector_id),
    );
    let state = state(s.state)
        .map_err(|e| violations.add(&format!("{field}.state"), e))
        .ok();
    let mut time = |name: &str, ts: Option<prost_types::Timestamp>| {
        ts.and_then(|ts| {
            timestamp(&ts)
                .map_err(|e| violations.add(&format!("{field}.{name}"), e))
                .ok()
        })
    };
    let checkpoint_time = time("checkpoint_time", s.checkpoint_time).filter(|checkpoint| {
        let fine = *checkpoint <= latest_allowed;
        if !fine {
            refused_field(&s.connector_id, "checkpoint_time", "checkpoint_in_future");
        }
        fine
    });
    let range = s.store_range.map(|r| {
        (
            time("store_range.earliest_time", r.earliest_time),
            time("store_range.latest_time", r.latest_time),
        )
    });
    let store_range = match range {
        Some((Some(_), Some(latest))) if latest > latest_allowed => {
            refused_field(&s.connector_id, "store_range", "store_range_in_future");
            None
        }
        Some((Some(earliest), Some(latest))) if earliest <= latest => {
            Some(TimeRange { earliest, latest })
        }
        Some(_) => {
            violations.add(
                &format!("{field}.store_range"),
                "needs earliest_time and latest_time, earliest first",
            );
            None
        }
        None => None,
    };
    let latency = s.latency.and_then(|d| {
        Duration::try_from(d)
            .map_err(|_| violations.add(&format!("{field}.latency"), "must not be negative"))
            .ok()
    });
    if s.generation < 0 {
        violations.add(&format!("{field}.generation"), "must not be negative");
    }
    Some(ObservedStatus {
        connector_id: s.connector_id,
        state: state?,
        checkpoint_time,
        latency,
        store_range,
        generation: s.generation,
        message: free_text(&s.message),
        retriable: s.retriable,
    })
}

/// Free text from an agent: escaped (`validate::agent_text`) and cut to
/// `MAX_MESSAGE_LEN` characters, never refused.
fn free_text(text: &str) -> String {
    let escaped = validate::agent_text(text);
    if escaped.chars().count() <= MAX_MESSAGE_LEN {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(MAX_MESSAGE_LEN - 1).collect();
    cut.push('…');
    cut
}

/// A field of an agent's status that is not recorded: logged and counted.
fn refused_field(connector_id: &str, field: &str, reason: &'static str) {
    tracing::warn!(%connector_id, field, reason, "an agent's report field was not recorded");
    crate::telemetry::metrics::report_refused(reason, 1);
}

fn collect(
    violations: &mut Violations,
    field: &str,
    statuses: Vec<v1::ConnectorStatus>,
) -> Vec<ObservedStatus> {
    if statuses.len() > MAX_STATUSES {
        violations.add(
            field,
            format!(
                "has {} entries; an agent reports at most {MAX_STATUSES} connectors (every one \
                 it runs, in each heartbeat): spread them over more agents",
                statuses.len()
            ),
        );
        return Vec::new();
    }
    // One clock reading for the whole message (up to 10,000 statuses).
    let latest_allowed = latest_allowed();
    statuses
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| status(violations, &format!("{field}[{i}]"), s, latest_allowed))
        .collect()
}

/// Server IPs are stored in their canonical, lower-case form.
fn server_ip(value: &str) -> Result<String, String> {
    value
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| format!("'{value}' is not an IPv4 or IPv6 address"))
}

pub fn hello(h: v1::Hello) -> Result<Hello, ApiError> {
    let mut violations = Violations::default();
    violations.check("hello.agent_id", validate::id(&h.agent_id));
    if h.instance_id.is_empty() || h.instance_id.chars().count() > MAX_INSTANCE_ID_LEN {
        violations.add(
            "hello.instance_id",
            format!("is required, at most {MAX_INSTANCE_ID_LEN} characters"),
        );
    } else {
        violations.check("hello.instance_id", validate::agent_label(&h.instance_id));
    }
    violations.check("hello.region", validate::region(&h.region));
    let ip = server_ip(&h.server_ip)
        .map_err(|e| violations.add("hello.server_ip", e))
        .unwrap_or_default();
    if h.version.chars().count() > MAX_VERSION_LEN {
        violations.add(
            "hello.version",
            format!("at most {MAX_VERSION_LEN} characters"),
        );
    } else {
        violations.check("hello.version", validate::agent_label(&h.version));
    }
    let capabilities = h.capabilities.map_or_else(Capabilities::default, |c| {
        if c.driver.chars().count() > MAX_VERSION_LEN {
            violations.add(
                "hello.capabilities.driver",
                format!("at most {MAX_VERSION_LEN} characters"),
            );
        } else {
            violations.check(
                "hello.capabilities.driver",
                validate::agent_label(&c.driver),
            );
        }
        Capabilities {
            driver: c.driver,
            pull_back: c.pull_back,
        }
    });
    let connectors = collect(&mut violations, "hello.connectors", h.connectors);
    invalid_request("Connect", violations)?;
    Ok(Hello {
        agent_id: h.agent_id,
        instance_id: h.instance_id,
        region: h.region,
        server_ip: ip,
        version: h.version,
        connectors,
        capabilities,
        actor: Default::default(),
    })
}

pub fn statuses(
    statuses: Vec<v1::ConnectorStatus>,
    field: &str,
) -> Result<Vec<ObservedStatus>, ApiError> {
    let mut violations = Violations::default();
    let statuses = collect(&mut violations, field, statuses);
    invalid_request("Connect", violations)?;
    Ok(statuses)
}

/// A result's trace context, or none when it is larger than a W3C
/// `traceparent` and `tracestate` can be: it only links traces, so a bad
/// one is dropped rather than refused.
fn bounded_trace_context(
    context: std::collections::HashMap<String, String>,
) -> crate::domain::TraceContext {
    let fits = context.len() <= 4
        && context
            .iter()
            .all(|(key, value)| key.len() <= 64 && value.len() <= 512);
    if fits { context } else { Default::default() }
}

pub fn report(r: v1::CommandResult) -> Result<CommandReport, ApiError> {
    let mut violations = Violations::default();
    if r.command_id.is_empty() || r.command_id.len() > 64 {
        violations.add("result.command_id", "is required (the Command.id answered)");
    } else {
        violations.check("result.command_id", validate::request_id(&r.command_id));
    }
    let status = r
        .status
        .and_then(|s| status(&mut violations, "result.status", s, latest_allowed()));
    invalid_request("Connect", violations)?;
    Ok(CommandReport {
        command_id: r.command_id,
        success: r.success,
        error_reason: validate::agent_text(&r.error_reason.chars().take(64).collect::<String>()),
        error_message: free_text(&r.error_message),
        status,
        trace_context: bounded_trace_context(r.trace_context),
        retriable: r.retriable,
    })
}
