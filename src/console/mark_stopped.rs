//! The Mark stopped dialog (GET/POST /connectors/{id}/mark-stopped): the
//! way out for a connector whose agent is gone (MarkConnectorStopped; the
//! API decides and audits).

use super::actions::Target;
use super::dialog::{ConnectorDialog, DialogMeta, DialogView, Done};
use super::failure::ShownFailure;
use super::format::state_name;
use super::forms::ReasonForm;
use super::urls;
use crate::domain::AuditAction;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use maud::{Markup, html};

/// The Mark stopped dialog.
pub struct MarkStopped;

impl ConnectorDialog for MarkStopped {
    const META: DialogMeta = DialogMeta {
        title: "Mark stopped",
        page_title: "Mark connector stopped",
        path: urls::MARK_STOPPED,
        action: AuditAction::MarkConnectorStopped,
        submit: "Mark stopped",
        note: None,
    };

    type Form = ReasonForm;

    async fn fields<S: FleetStore>(view: DialogView<'_, S, ReasonForm>) -> (Markup, Markup) {
        let heading = html! { "Mark " (view.connector.name) " stopped?" };
        let fields = html! {
            p {
                "For a connector whose agent is gone: it is recorded STOPPED without telling any agent, "
                "so that it can be started again (on another agent). What the lost agent says later "
                "about it changes nothing. While its agent is online, pause it instead."
            }
            div.field {
                label for="mark-reason" { "Reason (required, kept in the audit trail)" }
                textarea #mark-reason name="reason" maxlength="1000" rows="2" required
                    placeholder="for example INC-4711: host of agent eu-2a lost" { (view.form.reason) }
            }
        };
        (heading, fields)
    }

    async fn submit<S: FleetStore>(
        to: Target<'_, S>,
        form: &ReasonForm,
    ) -> Result<Done, ShownFailure> {
        let response = ConnectorService::mark_connector_stopped(
            &to.console.connectors,
            to.caller.request(v1::MarkConnectorStoppedRequest {
                id: to.id.to_owned(),
                reason: form.reason.clone(),
                request_id: form.request_id.clone(),
                validate_only: false,
            }),
        )
        .await?;
        let connector = response.into_inner().connector.unwrap_or_default();
        let message = format!(
            "{} marked {}: it can be started again",
            connector.name,
            state_name(connector.state)
        );
        Ok(Done { connector, message })
    }
}
