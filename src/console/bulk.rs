//! The bulk form (POST /bulk): start or pause the ticked connectors, or
//! all that match the filter, through the batch calls: `step=review` runs
//! a dry run and shows what it would do, with the guard to confirm;
//! `step=commit` runs it and shows each connector's result.

use super::access::{Posted, caller_or_return};
use super::actions;
use super::caller::Caller;
use super::contract::Finish;
use super::dialog::{dialog_or_page, refusal, rows_to_put};
use super::failure::{ShownFailure, failure_box};
use super::format::state_name;
use super::forms::BulkForm;
use super::params::FromParams;
use super::start::pull_back_choice;
use super::state::Shared;
use crate::proto::{short_name, v1};
use crate::store::FleetStore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

/// POST /bulk.
pub async fn submit<S: FleetStore>(State(c): Shared<S>, posted: Posted) -> Response {
    let form = BulkForm::from_params(&posted.params);
    let caller = caller_or_return!(c.changer(&posted, Some(form.action()), "").await);
    let title = if form.pause {
        "Pause connectors"
    } else {
        "Start connectors"
    };
    if form.is_empty() {
        let failure = ShownFailure::local(
            tonic::Code::InvalidArgument,
            v1::ErrorReason::NothingSelected,
            "select connectors with the boxes in the first column, or tick \"all matching\"",
        );
        return refusal(&caller, title, &failure);
    }
    let result = if form.pause {
        actions::pause_many(&c, &caller, &form).await
    } else {
        match form.start.choice() {
            Ok(choice) => actions::start_many(&c, &caller, &form, &choice).await,
            Err(failure) => Err(failure),
        }
    };
    let (status, body) = match &result {
        Ok(response) if form.commit => (StatusCode::OK, results(&caller, &form, response)),
        Ok(response) => (StatusCode::OK, review(&caller, &form, Some(response), None)),
        Err(failure) => (
            failure.http_status(),
            review(&caller, &form, None, Some(failure)),
        ),
    };
    let mut response = caller.page(status, dialog_or_page(&caller, title, body));
    if form.commit && result.is_ok() {
        Finish::Keep.mark(&mut response);
    }
    response
}

fn results_table(response: &v1::BatchConnectorsResponse) -> Markup {
    const SHOWN: usize = 100;
    // A dry run changed nothing: what it would change says so.
    let would =
        |outcome: i32| response.validate_only && outcome == v1::BatchOutcome::Changed as i32;
    let label = |outcome: i32| {
        if would(outcome) {
            "WOULD CHANGE".to_owned()
        } else {
            short_name::<v1::BatchOutcome>(outcome)
        }
    };
    let class = |outcome: i32| {
        if would(outcome) {
            "would".to_owned()
        } else {
            short_name::<v1::BatchOutcome>(outcome).to_ascii_lowercase()
        }
    };
    html! {
        div.table-wrap {
            table.results {
                thead { tr { th scope="col" { "Connector" } th scope="col" { "Outcome" } th scope="col" { "State / why" } } }
                tbody {
                    @for result in response.results.iter().take(SHOWN) {
                        tr data-outcome=(short_name::<v1::BatchOutcome>(result.outcome)) {
                            td {
                                (result.connector.as_ref().map_or(result.connector_id.as_str(), |c| c.name.as_str()))
                                br; small.mono { (result.connector_id) }
                            }
                            td { span class={ "outcome outcome-" (class(result.outcome)) } { (label(result.outcome)) } }
                            td {
                                @if let Some(error) = &result.error {
                                    (error_text(error))
                                } @else if let Some(connector) = &result.connector {
                                    (state_name(connector.state))
                                }
                            }
                        }
                    }
                }
            }
        }
        @if response.results.len() > SHOWN {
            p.hint { "… and " (response.results.len() - SHOWN) " more." }
        }
    }
}

/// A batch result's error: its ErrorInfo reason and message.
fn error_text(error: &tonic_types::pb::Status) -> String {
    let reason = error.details.iter().find_map(|any| {
        if any.type_url.ends_with("google.rpc.ErrorInfo") {
            prost::Message::decode(any.value.as_slice())
                .ok()
                .map(|info: tonic_types::pb::ErrorInfo| info.reason)
        } else {
            None
        }
    });
    match reason {
        Some(reason) if !reason.is_empty() => format!("{reason}: {}", error.message),
        _ => error.message.clone(),
    }
}

fn summary_text(response: &v1::BatchConnectorsResponse, dry_run: bool) -> String {
    let verb = if dry_run { "would get" } else { "got" };
    format!(
        "{} chosen: {} {verb} a command, {} already there, {} refused.",
        response.selected, response.changed, response.unchanged, response.failed
    )
}

fn review(
    caller: &Caller,
    form: &BulkForm,
    response: Option<&v1::BatchConnectorsResponse>,
    failure: Option<&ShownFailure>,
) -> Markup {
    let verb = if form.pause { "Pause" } else { "Start" };
    let changed = response.map_or(0, |r| r.changed);
    html! {
        form.dialog-form method="post" action="/bulk" data-dialog-form {
            input type="hidden" name="csrf" value=(caller.csrf);
            input type="hidden" name="action" value=(if form.pause { "pause" } else { "start" });
            input type="hidden" name="request_id" value=(form.request_id);
            input type="hidden" name="total" value=(form.total);
            @if form.all_matching {
                input type="hidden" name="all_matching" value="1";
                (form.filter.hidden())
            } @else {
                @for id in &form.ids { input type="hidden" name="ids" value=(id); }
            }
            h2 #dialog-title { (verb) " connectors" }
            p {
                @if form.all_matching {
                    "All connectors matching: " strong { (form.filter.describe()) } "."
                } @else {
                    (form.ids.len()) " selected connector" @if form.ids.len() != 1 { "s" } "."
                }
            }
            @if let Some(response) = response {
                p.summary data-dry-run { "Dry run, nothing changed yet. " (summary_text(response, true)) }
                (results_table(response))
            }
            @if let Some(failure) = failure { (failure_box(failure)) }
            div.field {
                label for="bulk-max" { "Guard: change at most" }
                input #bulk-max type="number" name="max_connectors" min="1" max="10000" value=(form.max_connectors)
                    aria-describedby="bulk-max-hint";
                p.hint #bulk-max-hint { "A selection larger than this is refused (TOO_MANY_CONNECTORS) and nothing changes." }
            }
            @if form.pause {
                div.field {
                    label for="bulk-reason" { "Reason (optional, kept on every command)" }
                    textarea #bulk-reason name="reason" maxlength="1000" rows="2" { (form.reason) }
                }
            } @else {
                (pull_back_choice("bulk-", &form.start, None, None))
                div.check.skip-choice {
                    input #bulk-skip-to-earliest type="checkbox" name="skip_to_earliest" value="yes"
                        checked[form.start.skip_to_earliest] aria-describedby="bulk-skip-hint";
                    label for="bulk-skip-to-earliest" { "Without pull back: skip to the earliest data where a store no longer holds the checkpoint" }
                    p.hint #bulk-skip-hint {
                        "Otherwise those connectors are refused (CHECKPOINT_OUT_OF_RANGE). Skipped changes are lost; the skip is kept in the audit trail."
                    }
                }
            }
            div.buttons {
                button type="submit" name="step" value="review" { "Check again" }
                button.primary type="submit" name="step" value="commit" disabled[response.is_none() || changed == 0] {
                    (verb) " " (changed) " connector" @if changed != 1 { "s" }
                }
                button type="button" data-close { "Cancel" }
            }
        }
    }
}

fn results(caller: &Caller, form: &BulkForm, response: &v1::BatchConnectorsResponse) -> Markup {
    let verb = if form.pause { "Pause" } else { "Start" };
    let connectors: Vec<v1::Connector> = response
        .results
        .iter()
        .filter_map(|r| r.connector.clone())
        .collect();
    html! {
        h2 #dialog-title { (verb) " connectors: done" }
        p.summary data-batch-done { (summary_text(response, false)) }
        (results_table(response))
        (rows_to_put(&format!("{verb}: {}", summary_text(response, false)), &connectors, caller.can_operate()))
        div.buttons { button.primary type="button" data-close { "Close" } }
    }
}
