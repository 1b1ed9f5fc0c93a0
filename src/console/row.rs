//! A connector's row of the Connector tab, the same wherever it is shown
//! (the table, the live stream, a completed action), and the buttons its
//! state allows: the domain's rules (`rules::may_start`, `may_pause`)
//! decide which, not the page.

use super::contract::ROW_ID_PREFIX;
use super::format::{domain_state, duration_text, shown, state_badge, state_name, time_cell};
use super::urls;
use crate::domain::ConnectorState;
use crate::domain::rules::{may_pause, may_start};
use crate::proto::v1;
use maud::{Markup, html};

/// One connector's row of the Connector tab (also sent live).
pub fn row(connector: &v1::Connector, can_operate: bool) -> Markup {
    let state = state_name(connector.state);
    html! {
        tr id={ (ROW_ID_PREFIX) (connector.id) } data-id=(connector.id) data-state=(state) {
            @if can_operate {
                td.select {
                    input type="checkbox" form="bulk" name="ids" value=(connector.id)
                        aria-label={ "Select " (connector.name) };
                }
            }
            td data-label="Connector" {
                a href=(urls::connector(&connector.id)) { (connector.name) }
                br; small.mono { (connector.id) }
            }
            td data-label="Project" { (connector.project_name) br; small.mono { (connector.project_id) } }
            td data-label="Region" { (connector.region) }
            td.state-cell data-label="State" {
                (state_badge(connector))
                @if !connector.status_message.is_empty() {
                    div.status { (shown(&connector.status_message)) }
                }
            }
            td.mono data-label="Server IP" { (connector.server_ip) }
            td data-label="Latency" { (duration_text(connector.latency.as_ref())) }
            td data-label="Checkpoint" { (time_cell(connector.checkpoint_time.as_ref())) }
            td data-label="Last heartbeat" { (time_cell(connector.last_heartbeat_time.as_ref())) }
            @if can_operate {
                td.actions data-label="Actions" { (action_buttons(connector)) }
            }
        }
    }
}

/// The Start, Pause (and Mark stopped) buttons a connector's state allows.
pub fn action_buttons(connector: &v1::Connector) -> Markup {
    let state = domain_state(connector.state);
    let id = &connector.id;
    let startable = state.is_some_and(may_start);
    let pausable = state.is_some_and(may_pause);
    html! {
        @if startable {
            a.button href=(urls::connector_action(id, urls::START)) data-dialog aria-label={ "Start " (connector.name) } { "Start" }
        } @else {
            button type="button" disabled title="Start needs a STOPPED or FAILED connector" { "Start" }
        }
        " "
        @if pausable {
            a.button href=(urls::connector_action(id, urls::PAUSE)) data-dialog aria-label={ "Pause " (connector.name) } { "Pause" }
        } @else {
            button type="button" disabled title="Pause needs a RUNNING, STARTING or FAILED connector" { "Pause" }
        }
        // Its agent is gone: Start and Pause wait for it (or a pause no
        // agent answers); this is the way out, refused while it is online.
        @if matches!(state, Some(ConnectorState::Unknown | ConnectorState::Pausing)) {
            " "
            a.button href=(urls::connector_action(id, urls::MARK_STOPPED)) data-dialog aria-label={ "Mark " (connector.name) " stopped" } { "Mark stopped" }
        }
    }
}
