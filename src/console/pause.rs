//! The Pause dialog (GET/POST /connectors/{id}/pause): the connector, and
//! the reason kept in the audit trail; like a start, a dry run first.

use super::actions;
use super::caller::Caller;
use super::dialog::{ConnectorDialog, DialogView, Done, facts};
use super::failure::ShownFailure;
use super::forms::ReasonForm;
use super::state::Console;
use super::urls;
use crate::domain::AuditAction;
use crate::store::FleetStore;
use maud::{Markup, html};

/// The Pause dialog.
pub struct Pause;

impl ConnectorDialog for Pause {
    const TITLE: &'static str = "Pause";
    const PAGE_TITLE: &'static str = "Pause connector";
    const PATH: &'static str = urls::PAUSE;
    const ACTION: AuditAction = AuditAction::PauseConnector;
    const SUBMIT: &'static str = "OK";
    const NOTE: Option<&'static str> =
        Some("Pause runs a dry run first: a refusal is shown here and nothing changes.");

    type Form = ReasonForm;

    async fn fields<S: FleetStore>(view: DialogView<'_, S, ReasonForm>) -> (Markup, Markup) {
        let DialogView {
            connector, form, ..
        } = view;
        let heading = html! { "Pause " (connector.name) "?" };
        let fields = html! {
            (facts(connector))
            p { "The connector stops replicating until it is started again." }
            div.field {
                label for="pause-reason" { "Reason (optional, kept in the audit trail)" }
                textarea #pause-reason name="reason" maxlength="1000" rows="2" placeholder="for example INC-4711: latency" { (form.reason) }
            }
        };
        (heading, fields)
    }

    async fn submit<S: FleetStore>(
        c: &Console<S>,
        caller: &Caller,
        id: &str,
        form: &ReasonForm,
    ) -> Result<Done, ShownFailure> {
        let response = actions::pause(c, caller, id, &form.reason, &form.request_id).await?;
        let connector = response.connector.unwrap_or_default();
        let message = format!("Pause issued for {}", connector.name);
        Ok(Done { connector, message })
    }
}
