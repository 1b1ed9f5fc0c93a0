//! A connector as callers see it: the lag flag, the cause of a lag and
//! what automatic starts will do, in its `status_message`.

use super::connector_api::ConnectorApi;
use super::convert;
use crate::proto::v1;
use crate::store::FleetStore;
use std::time::Duration;

impl<S: FleetStore> ConnectorApi<S> {
    /// A connector as callers see it: `status_message` carries the lag flag.
    pub(super) fn view(&self, connector: crate::domain::Connector) -> v1::Connector {
        connector_view(connector, self.latency_alert)
    }
}

/// A connector as callers see it: `status_message` carries the lag flag and
/// what automatic starts will do.
pub(crate) fn connector_view(
    connector: crate::domain::Connector,
    latency_alert: Duration,
) -> v1::Connector {
    let mut message = crate::domain::flagged_message(&connector, latency_alert);
    // A failed connector's automatic starts: "FAILED: <agent message>;
    // automatic start 3 in 40s".
    if let Some(note) = crate::domain::restart::restart_note(&connector, chrono::Utc::now()) {
        message = match message.as_str() {
            "" => format!("FAILED: {note}"),
            said => format!("FAILED: {said}; {note}"),
        };
    }
    let cause = match crate::domain::lag_cause(&connector, latency_alert) {
        None => v1::LagCause::Unspecified,
        Some(crate::domain::LagCause::Latency) => v1::LagCause::Latency,
        Some(crate::domain::LagCause::AgentOffline) => v1::LagCause::AgentOffline,
    };
    let silent = connector.state == crate::domain::ConnectorState::Unknown;
    let mut view = convert::connector_to_proto(connector);
    // The latency its agent measures now (each report replaces it): a
    // paused PostgreSQL subscription falls behind, a stopped simulation
    // reports none. A silent connector's last one is history, not a lag.
    if silent {
        view.latency = None;
    }
    view.status_message = message;
    view.lag_cause = cause as i32;
    view
}
