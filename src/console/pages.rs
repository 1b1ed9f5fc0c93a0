//! The dialogs' HTML: the Start and Pause forms, and what every dialog
//! shares (its frame, a connector's facts, a completed action's rows).

use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::format::{kind_name, state_badge, time_text};
use super::forms::StartForm;
use super::layout::{Tab, layout};
use super::row::row;
use super::urls;
use crate::proto::v1;
use maud::{Markup, html};

/// A dialog's content with a title and a Close button.
pub fn closable(title: &str, body: Markup) -> Markup {
    html! {
        h2 #dialog-title { (title) }
        (body)
        div.buttons { button type="button" data-close { "Close" } }
    }
}

/// The script's dialog gets the content alone; a browser without it, a page.
pub fn dialog_or_page(caller: &Caller, title: &str, body: Markup) -> Markup {
    if caller.fragment {
        body
    } else {
        // A dialog opened as a page of its own: its form posts as a page
        // too (the script opens no dialog over it).
        layout(
            caller,
            title,
            Tab::None,
            html! { div.panel data-standalone { (body) } },
        )
    }
}

pub fn facts(connector: &v1::Connector) -> Markup {
    html! {
        dl.facts {
            dt { "Connector" } dd { (connector.name) " " small.mono { (connector.id) } }
            dt { "Project" } dd { (connector.project_name) " " small.mono { (connector.project_id) } }
            dt { "State" } dd { (state_badge(connector)) }
            dt { "Kind" } dd { (kind_name(connector.kind)) }
        }
    }
}

pub fn start_form(
    caller: &Caller,
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
    let pull_back = form.pull_back && incremental;
    html! {
        form.dialog-form method="post" action=(urls::connector_action(&connector.id, urls::START)) data-dialog-form {
            input type="hidden" name="csrf" value=(caller.csrf);
            input type="hidden" name="request_id" value=(form.request_id);
            h2 #dialog-title { "Start " (connector.name) }
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
            fieldset.pull-back {
                legend { "Whether to Pull Back" }
                @if !incremental {
                    p.hint #pull-back-reason {
                        "Pull back is only for incremental-sync connectors: this is a "
                        (kind_name(connector.kind).to_ascii_lowercase().replace('_', "-")) " connector."
                    }
                }
                div.choices {
                    div.check {
                        input #pull-back-no type="radio" name="pull_back" value="no" checked[!pull_back]
                            disabled[!incremental] aria-describedby=[(!incremental).then_some("pull-back-reason")];
                        label for="pull-back-no" { "No" }
                    }
                    div.check {
                        input #pull-back-yes type="radio" name="pull_back" value="yes" checked[pull_back]
                            disabled[!incremental] aria-describedby=[(!incremental).then_some("pull-back-reason")];
                        label for="pull-back-yes" { "Yes" }
                    }
                }
                @if incremental {
                    div.field data-pull-back-time hidden[!pull_back] {
                        label for="pull-back-local" {
                            "Pull back to " span data-tz-label { "(UTC)" }
                        }
                        input #pull-back-local type="datetime-local" step="1" name="pull_back_local"
                            value=(form.local_time) data-utc-target="pull-back-utc" aria-describedby="pull-back-utc-text store-range";
                        input #pull-back-utc type="hidden" name="pull_back_time" value=(form.utc_time);
                        p.hint #pull-back-utc-text data-utc-text {}
                        p.hint #store-range {
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
                        }
                    }
                }
            }
            @if incremental && (checkpoint_gone(connector).is_some()
                || form.skip_to_earliest
                || failure.is_some_and(|f| f.reason == "CHECKPOINT_OUT_OF_RANGE")) {
                (skip_choice("skip-to-earliest", connector, form.skip_to_earliest))
            }
            @if let Some(failure) = failure { (failure_box(failure)) }
            p.hint { "Start runs a dry run first: a refusal is shown here and nothing changes." }
            div.buttons {
                button.primary type="submit" { "Start" }
                button type="button" data-close { "Cancel" }
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
fn skip_choice(id: &str, connector: &v1::Connector, checked: bool) -> Markup {
    html! {
        div.skip-choice.warning role="group" aria-labelledby={ (id) "-title" } {
            @if let Some((checkpoint, earliest)) = checkpoint_gone(connector) {
                p #{ (id) "-title" } {
                    strong { "The store no longer holds this connector's checkpoint." }
                    " It stopped at " (time_text(checkpoint)) "; the store holds data from "
                    (time_text(earliest)) " on. Started without pull back, it would miss the changes in between."
                }
            } @else {
                p #{ (id) "-title" } {
                    strong { "The store may no longer hold this connector's checkpoint." }
                }
            }
            p.hint { "Pull back to a time the store holds to replay from there, or skip on purpose:" }
            div.check {
                input #(id) type="checkbox" name="skip_to_earliest" value="yes" checked[checked];
                label for=(id) { "Skip to the earliest data the store holds (the changes in between are lost; kept in the audit trail)" }
            }
        }
    }
}

pub fn pause_form(
    caller: &Caller,
    connector: &v1::Connector,
    reason: &str,
    request_id: &str,
    failure: Option<&ShownFailure>,
) -> Markup {
    html! {
        form.dialog-form method="post" action=(urls::connector_action(&connector.id, urls::PAUSE)) data-dialog-form {
            input type="hidden" name="csrf" value=(caller.csrf);
            input type="hidden" name="request_id" value=(request_id);
            h2 #dialog-title { "Pause " (connector.name) "?" }
            (facts(connector))
            p { "The connector stops replicating until it is started again." }
            div.field {
                label for="pause-reason" { "Reason (optional, kept in the audit trail)" }
                textarea #pause-reason name="reason" maxlength="1000" rows="2" placeholder="for example INC-4711: latency" { (reason) }
            }
            @if let Some(failure) = failure { (failure_box(failure)) }
            div.buttons {
                button.primary type="submit" { "OK" }
                button type="button" data-close { "Cancel" }
            }
        }
    }
}

/// A completed action: a message, and the rows to put in place.
pub fn done(message: &str, connectors: &[v1::Connector], can_operate: bool) -> Markup {
    html! {
        div data-done {
            p.done { (message) }
            @for connector in connectors {
                template data-row=(connector.id) { table { tbody { (row(connector, can_operate)) } } }
            }
        }
    }
}
