//! The Pause dialog (GET/POST /connectors/{id}/pause): the connector, and
//! the reason kept in the audit trail; like a start, a dry run first.

use super::actions::{self, Target};
use super::dialog::{ConnectorDialog, DialogMeta, DialogView, Done, facts};
use super::failure::ShownFailure;
use super::forms::ReasonForm;
use super::urls;
use crate::domain::AuditAction;
use crate::store::FleetStore;
use maud::{Markup, html};

/// The Pause dialog.
pub struct Pause;

impl ConnectorDialog for Pause {
    const META: DialogMeta = DialogMeta {
        title: "Pause",
        page_title: "Pause connector",
        path: urls::PAUSE,
        action: AuditAction::PauseConnector,
        submit: "OK",
        note: Some("Pause runs a dry run first: a refusal is shown here and nothing changes."),
    };

    type Form = ReasonForm;

    async fn fields<S: FleetStore>(view: DialogView<'_, S, ReasonForm>) -> (Markup, Markup) {
        let heading = html! { "Pause " (view.connector.name) "?" };
        let fields = html! {
            (facts(view.connector))
            p { "The connector stops replicating until it is started again." }
            div.field {
                label for="pause-reason" { "Reason (optional, kept in the audit trail)" }
                textarea #pause-reason name="reason" maxlength="1000" rows="2" placeholder="for example INC-4711: latency" { (view.form.reason) }
            }
        };
        (heading, fields)
    }

    async fn submit<S: FleetStore>(
        to: Target<'_, S>,
        form: &ReasonForm,
    ) -> Result<Done, ShownFailure> {
        let response = actions::pause(&to, form).await?;
        let connector = response.connector.unwrap_or_default();
        let message = format!("Pause issued for {}", connector.name);
        Ok(Done { connector, message })
    }
}
