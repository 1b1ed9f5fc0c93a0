//! The restart policy dialog on a connector's page (operators only): when
//! a failed connector is started again automatically (UpdateRestartPolicy;
//! the API validates and audits).

use super::actions::Target;
use super::dialog::{ConnectorDialog, DialogMeta, DialogView, Done};
use super::failure::ShownFailure;
use super::forms::{DialogForm, input_field, new_request_id};
use super::params::Params;
use super::urls;
use crate::domain::AuditAction;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use maud::{Markup, html};

/// What the form holds, as typed.
#[derive(Debug, Default)]
pub struct PolicyForm {
    mode: String,
    max_restarts: String,
    initial_backoff: String,
    max_backoff: String,
    reset_after: String,
    request_id: String,
}

fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    duration
        .and_then(|d| std::time::Duration::try_from(*d).ok())
        .map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_default()
}

impl DialogForm for PolicyForm {
    /// The policy in force.
    fn open(connector: &v1::Connector) -> Self {
        let policy = connector.restart_policy.unwrap_or_default();
        PolicyForm {
            mode: if policy.mode == v1::RestartMode::Never as i32 {
                "never"
            } else {
                "on-failure"
            }
            .to_owned(),
            max_restarts: policy.max_restarts.to_string(),
            initial_backoff: duration_text(policy.initial_backoff.as_ref()),
            max_backoff: duration_text(policy.max_backoff.as_ref()),
            reset_after: duration_text(policy.reset_after.as_ref()),
            request_id: new_request_id(),
        }
    }

    fn read(params: &Params) -> Self {
        PolicyForm {
            mode: params.get("mode").to_owned(),
            max_restarts: params.get("max_restarts").trim().to_owned(),
            initial_backoff: params.get("initial_backoff").trim().to_owned(),
            max_backoff: params.get("max_backoff").trim().to_owned(),
            reset_after: params.get("reset_after").trim().to_owned(),
            request_id: params.get("request_id").to_owned(),
        }
    }

    fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl PolicyForm {
    /// The policy typed, or which field the console could not read.
    fn policy(&self) -> Result<v1::RestartPolicy, ShownFailure> {
        let duration = |field: &str, label: &str, text: &str| {
            if text.is_empty() {
                return Ok(None);
            }
            humantime::parse_duration(text)
                .ok()
                .and_then(|d| prost_types::Duration::try_from(d).ok())
                .map(Some)
                .ok_or_else(|| {
                    ShownFailure::field(
                        field,
                        &format!("{label}: '{text}' is not a duration; write it as 30s, 5m or 1h"),
                    )
                })
        };
        let max_restarts = match self.max_restarts.as_str() {
            "" => 0,
            text => text.parse().map_err(|_| {
                ShownFailure::field(
                    "max_restarts",
                    &format!("At most in a row: '{text}' is not a whole number (0: unlimited)"),
                )
            })?,
        };
        Ok(v1::RestartPolicy {
            mode: if self.mode == "never" {
                v1::RestartMode::Never
            } else {
                v1::RestartMode::OnFailure
            } as i32,
            max_restarts,
            initial_backoff: duration("initial_backoff", "First after", &self.initial_backoff)?,
            max_backoff: duration("max_backoff", "Longest wait", &self.max_backoff)?,
            reset_after: duration("reset_after", "Count reset after", &self.reset_after)?,
        })
    }
}

/// The restart policy dialog, filled in with the policy in force.
pub struct RestartPolicy;

impl ConnectorDialog for RestartPolicy {
    const META: DialogMeta = DialogMeta {
        title: "Restart policy",
        page_title: "Restart policy",
        path: urls::RESTART_POLICY,
        action: AuditAction::UpdateRestartPolicy,
        submit: "Save",
        note: None,
    };

    type Form = PolicyForm;

    async fn fields<S: FleetStore>(view: DialogView<'_, S, PolicyForm>) -> (Markup, Markup) {
        let heading = html! { "Restart policy of " (view.connector.name) };
        (heading, fields(view.form))
    }

    async fn submit<S: FleetStore>(
        to: Target<'_, S>,
        typed: &PolicyForm,
    ) -> Result<Done, ShownFailure> {
        let policy = typed.policy()?;
        let connector = ConnectorService::update_restart_policy(
            &to.console.connectors,
            to.caller.request(v1::UpdateRestartPolicyRequest {
                id: to.id.to_owned(),
                restart_policy: Some(policy),
                request_id: typed.request_id.clone(),
            }),
        )
        .await?
        .into_inner();
        let message = format!("Restart policy of {} changed", connector.name);
        Ok(Done { connector, message })
    }
}

fn fields(typed: &PolicyForm) -> Markup {
    let never = typed.mode == "never";
    html! {
        p { "When it fails while meant to run (and a retry may help), it is started again after a wait that doubles each time, up to the longest." }
        fieldset {
            legend { "Start again automatically" }
            div.choices {
                div.check {
                    input #mode-on-failure type="radio" name="mode" value="on-failure" checked[!never];
                    label for="mode-on-failure" { "On failure" }
                }
                div.check {
                    input #mode-never type="radio" name="mode" value="never" checked[never];
                    label for="mode-never" { "Never (by hand only)" }
                }
            }
        }
        div.field {
            label for="max-restarts" { "At most in a row (0: unlimited)" }
            input #max-restarts type="number" min="0" max="1000000" name="max_restarts" value=(typed.max_restarts);
        }
        (input_field("initial-backoff", "First after (for example 10s)", "text", "initial_backoff", &typed.initial_backoff))
        (input_field("max-backoff", "Longest wait (for example 5m)", "text", "max_backoff", &typed.max_backoff))
        (input_field("reset-after", "Count reset after running (for example 10m)", "text", "reset_after", &typed.reset_after))
    }
}
