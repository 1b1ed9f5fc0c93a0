//! The Start dialog (GET/POST /connectors/{id}/start): where to run, and
//! whether to pull back and to when; when the store lost the checkpoint,
//! the explicit choice to skip. The pull-back choice is the bulk form's
//! too.

use super::actions::{self, Target};
use super::dialog::{ConnectorDialog, DialogMeta, DialogView, Done, facts};
use super::failure::ShownFailure;
use super::format::{kind_name, time_text};
use super::forms::StartForm;
use super::urls;
use crate::domain::AuditAction;
use crate::proto::v1;
use crate::store::FleetStore;
use maud::{Markup, html};

/// The Start dialog.
pub struct Start;

impl ConnectorDialog for Start {
    const META: DialogMeta = DialogMeta {
        title: "Start",
        page_title: "Start connector",
        path: urls::START,
        action: AuditAction::StartConnector,
        submit: "Start",
        note: Some("Start runs a dry run first: a refusal is shown here and nothing changes."),
    };

    type Form = StartForm;

    async fn fields<S: FleetStore>(view: DialogView<'_, S, StartForm>) -> (Markup, Markup) {
        let DialogView {
            console: c,
            caller,
            connector,
            form,
            failure,
        } = view;
        let regions = c.regions(caller).await;
        let heading = html! { "Start " (connector.name) };
        (heading, fields(connector, &regions, form, failure))
    }

    async fn submit<S: FleetStore>(
        to: Target<'_, S>,
        form: &StartForm,
    ) -> Result<Done, ShownFailure> {
        let choice = form.choice()?;
        let response = actions::start(&to, &choice, &form.request_id).await?;
        let connector = response.connector.unwrap_or_default();
        let message = format!(
            "Start issued for {} in region {}{}",
            connector.name,
            connector.region,
            response
                .command
                .and_then(|command| command.pull_back_time)
                .map(|t| format!(", pulled back to {}", time_text(&t)))
                .unwrap_or_default()
        );
        Ok(Done { connector, message })
    }
}

fn fields(
    connector: &v1::Connector,
    regions: &[v1::Region],
    form: &StartForm,
    failure: Option<&ShownFailure>,
) -> Markup {
    let destination = connector
        .destination
        .as_ref()
        .map(|d| d.region.clone())
        .unwrap_or_default();
    let incremental = connector.kind == v1::ConnectorKind::IncrementalSync as i32;
    let cannot_pull_back = (!incremental).then(|| {
        format!(
            "Pull back is only for incremental-sync connectors: this is a {} connector.",
            kind_name(connector.kind)
                .to_ascii_lowercase()
                .replace('_', "-")
        )
    });
    let store_range = html! {
        @match &connector.store_range {
            Some(range) => {
                "The store holds data from "
                (range.earliest_time.as_ref().map(time_text).unwrap_or_else(|| "?".to_owned()))
                " to "
                (range.latest_time.as_ref().map(time_text).unwrap_or_else(|| "?".to_owned()))
                "."
            }
            None => { "The store's range is not known yet; the agent checks the time." }
        }
    };
    html! {
        (facts(connector))
        div.field {
            label for="start-region" { "Run in region" }
            select #start-region name="region" {
                option value="" selected[form.region.is_empty()] { (destination) " (the destination's region)" }
                @for region in regions.iter().filter(|r| r.name != destination) {
                    option value=(region.name) selected[form.region == region.name] {
                        (region.name) " (" (region.online_agents) " agents online)"
                    }
                }
            }
        }
        (pull_back_choice("", form, cannot_pull_back, Some(store_range)))
        @if incremental && (checkpoint_gone(connector).is_some()
            || form.skip_to_earliest
            || failure.is_some_and(|f| f.is(v1::ErrorReason::CheckpointOutOfRange))) {
            (skip_choice(connector, form.skip_to_earliest))
        }
    }
}

/// A Start form's pull-back choice (the dialog's, or the bulk form's,
/// whose ids start with `prefix`): No or Yes, and the time to pull back
/// to, typed in the browser's time zone (the script adds it in UTC).
/// `cannot` says why the connector cannot pull back; `store_range`, what
/// its store holds.
pub fn pull_back_choice(
    prefix: &str,
    form: &StartForm,
    cannot: Option<String>,
    store_range: Option<Markup>,
) -> Markup {
    let id = |name: &str| format!("{prefix}{name}");
    let pull_back = form.pull_back && cannot.is_none();
    let reason_id = cannot.is_some().then(|| id("pull-back-reason"));
    let described = match store_range {
        Some(_) => format!("{} {}", id("pull-back-utc-text"), id("store-range")),
        None => id("pull-back-utc-text"),
    };
    html! {
        fieldset.pull-back {
            legend { "Whether to Pull Back" }
            @if let Some(cannot) = &cannot {
                p.hint #(id("pull-back-reason")) { (cannot) }
            }
            div.choices {
                @for (value, label, checked) in [("no", "No", !pull_back), ("yes", "Yes", pull_back)] {
                    @let choice = id(&format!("pull-back-{value}"));
                    div.check {
                        input #(choice) type="radio" name="pull_back" value=(value) checked[checked]
                            disabled[cannot.is_some()] aria-describedby=[reason_id.as_deref()];
                        label for=(choice) { (label) }
                    }
                }
            }
            @if cannot.is_none() {
                div.field data-pull-back-time hidden[!pull_back] {
                    label for=(id("pull-back-local")) {
                        "Pull back to " span data-tz-label { "(UTC)" }
                    }
                    input #(id("pull-back-local")) type="datetime-local" step="1" name="pull_back_local"
                        value=(form.local_time) data-utc-target=(id("pull-back-utc")) aria-describedby=(described);
                    input #(id("pull-back-utc")) type="hidden" name="pull_back_time" value=(form.utc_time);
                    p.hint #(id("pull-back-utc-text")) data-utc-text {}
                    @if let Some(range) = store_range {
                        p.hint #(id("store-range")) { (range) }
                    }
                }
            }
        }
    }
}

/// When the connector would resume from a checkpoint its store no longer
/// holds: the checkpoint and the store's earliest time.
fn checkpoint_gone(
    connector: &v1::Connector,
) -> Option<(&prost_types::Timestamp, &prost_types::Timestamp)> {
    let checkpoint = connector.checkpoint_time.as_ref()?;
    let earliest = connector.store_range.as_ref()?.earliest_time.as_ref()?;
    ((checkpoint.seconds, checkpoint.nanos) < (earliest.seconds, earliest.nanos))
        .then_some((checkpoint, earliest))
}

/// The Start dialog's explicit choice to skip data the store lost, with
/// what it costs.
fn skip_choice(connector: &v1::Connector, checked: bool) -> Markup {
    html! {
        div.skip-choice.warning role="group" aria-labelledby="skip-to-earliest-title" {
            @if let Some((checkpoint, earliest)) = checkpoint_gone(connector) {
                p #skip-to-earliest-title {
                    strong { "The store no longer holds this connector's checkpoint." }
                    " It stopped at " (time_text(checkpoint)) "; the store holds data from "
                    (time_text(earliest)) " on. Started without pull back, it would miss the changes in between."
                }
            } @else {
                p #skip-to-earliest-title {
                    strong { "The store may no longer hold this connector's checkpoint." }
                }
            }
            p.hint { "Pull back to a time the store holds to replay from there, or skip on purpose:" }
            div.check {
                input #skip-to-earliest type="checkbox" name="skip_to_earliest" value="yes" checked[checked];
                label for="skip-to-earliest" { "Skip to the earliest data the store holds (the changes in between are lost; kept in the audit trail)" }
            }
        }
    }
}
