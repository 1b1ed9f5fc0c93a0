//! The console's HTML, rendered with maud (escaped by construction). Pages
//! show what the API answered; the only rules here are which buttons a
//! state enables, and those are the domain's (`rules::may_start`,
//! `may_pause`).

use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::filter::Filter;
use super::forms::{BulkForm, StartForm};
use super::params::query;
use crate::domain::ConnectorState;
use crate::domain::rules::{may_pause, may_start};
use crate::proto::{short_name, v1};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// What the Connector tab shows.
pub struct ConnectorsView<'a> {
    pub filter: &'a Filter,
    pub regions: Vec<v1::Region>,
    pub list: Result<v1::ListConnectorsResponse, ShownFailure>,
    /// Where the live stream starts (None: the page is not live).
    pub watch_token: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Connectors,
    Agents,
    Audit,
    None,
}

/// A connector id in a URL path.
pub fn path_segment(id: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(id, KEEP).to_string()
}

/// A state's name without its prefix.
pub fn state_name(state: i32) -> String {
    short_name::<v1::ConnectorState>(state)
}

fn domain_state(state: i32) -> Option<ConnectorState> {
    ConnectorState::parse(&state_name(state))
}

/// Text from agents (status messages, errors, versions), shown with its
/// control and display-changing characters (a right-to-left override,
/// say) as visible escapes: what the page shows reads as what was sent.
fn shown(text: &str) -> String {
    crate::domain::validate::agent_text(text)
}

pub fn time_text(time: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
        .map_or_else(
            || "?".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

fn rfc3339(time: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
        .map_or_else(String::new, |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
}

fn time_cell(time: Option<&prost_types::Timestamp>) -> Markup {
    match time {
        Some(time) => html! { time datetime=(rfc3339(time)) { (time_text(time)) } },
        None => html! { span.muted { "—" } },
    }
}

fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    match duration {
        None => "—".to_owned(),
        Some(d) => {
            let seconds = d.seconds as f64 + f64::from(d.nanos) / 1e9;
            if seconds < 1.0 {
                format!("{:.0} ms", seconds * 1000.0)
            } else if seconds < 120.0 {
                format!("{seconds:.1} s")
            } else if seconds < 7200.0 {
                format!("{:.1} min", seconds / 60.0)
            } else {
                format!("{:.1} h", seconds / 3600.0)
            }
        }
    }
}

fn kind_name(kind: i32) -> String {
    short_name::<v1::ConnectorKind>(kind)
}

fn layout(caller: &Caller, title: &str, tab: Tab, body: Markup) -> Markup {
    let principal = &caller.session.principal;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(caller.csrf);
                title { (title) " · connector-control" }
                link rel="stylesheet" href="/assets/console.css";
                link rel="icon" type="image/svg+xml" href="/favicon.ico";
                script src="/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "connector-control" }
                    nav aria-label="Sections" {
                        a href="/" aria-current=[(tab == Tab::Connectors).then_some("page")] { "Connectors" }
                        a href="/agents" aria-current=[(tab == Tab::Agents).then_some("page")] { "Agents" }
                        a href="/audit" aria-current=[(tab == Tab::Audit).then_some("page")] { "Audit" }
                    }
                    div.who {
                        @if caller.signed_in {
                            span data-principal=(principal.name) { (principal.name) " · " (principal.role.as_str()) }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(caller.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        } @else {
                            span.muted title="the server runs without --auth-file" { "no sign-in (loopback only)" }
                        }
                    }
                }
                div #banner .banner role="alert" hidden {}
                main #main { (body) }
                div #toast .toast role="status" aria-live="polite" {}
                dialog #dialog aria-labelledby="dialog-title" {}
            }
        }
    }
}

/// A page with nothing but a failure (no session to render a layout with).
pub fn bare_failure(status: StatusCode, failure: &ShownFailure) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (failure.reason) " · connector-control" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body { main #main { h1 { "Refused" } (failure_box(failure)) p { a href="/" { "Back to the console" } } } }
        }
    };
    (status, markup).into_response()
}

pub fn failure_page(caller: &Caller, title: &str, failure: &ShownFailure) -> Markup {
    layout(
        caller,
        title,
        Tab::None,
        html! { h1 { (title) } (failure_box(failure)) p { a href="/" { "Back to the connectors" } } },
    )
}

fn state_badge(connector: &v1::Connector) -> Markup {
    let state = state_name(connector.state);
    let lag = v1::LagCause::try_from(connector.lag_cause).unwrap_or_default();
    html! {
        span class={ "state state-" (state.to_ascii_lowercase()) } { (state) }
        @match lag {
            v1::LagCause::Latency => { " " span.badge.badge-lagging { "LAGGING" } }
            v1::LagCause::AgentOffline => { " " span.badge.badge-offline { "AGENT OFFLINE" } }
            v1::LagCause::Unspecified => {}
        }
    }
}

fn actions(connector: &v1::Connector) -> Markup {
    let state = domain_state(connector.state);
    let id = path_segment(&connector.id);
    let startable = state.is_some_and(may_start);
    let pausable = state.is_some_and(may_pause);
    html! {
        @if startable {
            a.button href={ "/connectors/" (id) "/start" } data-dialog aria-label={ "Start " (connector.name) } { "Start" }
        } @else {
            button type="button" disabled title="Start needs a STOPPED or FAILED connector" { "Start" }
        }
        " "
        @if pausable {
            a.button href={ "/connectors/" (id) "/pause" } data-dialog aria-label={ "Pause " (connector.name) } { "Pause" }
        } @else {
            button type="button" disabled title="Pause needs a RUNNING, STARTING or FAILED connector" { "Pause" }
        }
        // Its agent is gone: Start and Pause wait for it (or a pause no
        // agent answers); this is the way out, refused while it is online.
        @if matches!(state, Some(ConnectorState::Unknown | ConnectorState::Pausing)) {
            " "
            a.button href={ "/connectors/" (id) "/mark-stopped" } data-dialog aria-label={ "Mark " (connector.name) " stopped" } { "Mark stopped" }
        }
    }
}

/// One connector's row of the Connector tab (also sent live).
pub fn row(connector: &v1::Connector, can_operate: bool) -> Markup {
    let state = state_name(connector.state);
    html! {
        tr id={ "row-" (connector.id) } data-id=(connector.id) data-state=(state) {
            @if can_operate {
                td.select {
                    input type="checkbox" form="bulk" name="ids" value=(connector.id)
                        aria-label={ "Select " (connector.name) };
                }
            }
            td data-label="Connector" {
                a href={ "/connectors/" (path_segment(&connector.id)) } { (connector.name) }
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
                td.actions data-label="Actions" { (actions(connector)) }
            }
        }
    }
}

pub fn connectors(caller: &Caller, view: &ConnectorsView<'_>) -> Markup {
    let filter = view.filter;
    let can_operate = caller.can_operate();
    let single_region = (view.regions.len() == 1).then(|| view.regions[0].name.clone());
    let list = view.list.as_ref();
    let total = list.map_or(0, |l| l.total_size);
    let body = html! {
        div.heading {
            h1 { "Connectors" }
            @if let Some(region) = &single_region {
                span.region-name title="the only region" { "Region: " strong { (region) } }
            }
        }
        form.filters method="get" action="/" role="search" aria-label="Find connectors" {
            div.field.grow {
                label for="q" { "Search" }
                input #q type="search" name="q" value=(filter.query) autocomplete="off"
                    placeholder="Name, project name or ID, connector ID, server IP (or its prefix)";
            }
            @if view.regions.len() > 1 {
                div.field {
                    label for="region" { "Region" }
                    select #region name="region" data-autosubmit {
                        option value="" selected[filter.region.is_empty()] { "All regions" }
                        @for region in &view.regions {
                            option value=(region.name) selected[filter.region == region.name] {
                                (region.name) " (" (region.connectors) ")"
                            }
                        }
                    }
                }
            } @else if !filter.region.is_empty() {
                input type="hidden" name="region" value=(filter.region);
            }
            div.field {
                label for="server" { "Server" }
                input #server type="text" name="server" value=(filter.server) autocomplete="off"
                    inputmode="decimal" size="16" placeholder="10.2.1.7 or 10.2.1.0/24"
                    title="One server's IP, or a network in CIDR notation (its servers, by address)";
            }
            div.field {
                label for="state" { "State" }
                select #state name="state" data-autosubmit {
                    option value="" selected[filter.state.is_empty()] { "All states" }
                    @for state in ConnectorState::ALL {
                        option value=(state.as_str()) selected[filter.state == state.as_str()] { (state.as_str()) }
                    }
                }
            }
            div.field.check {
                input #lagging type="checkbox" name="lagging" value="1" checked[filter.lagging] data-autosubmit;
                label for="lagging" { "Lagging only" }
            }
            div.field { button.primary type="submit" { "Search" } }
            @if filter.is_filtered() { div.field { a href="/" { "Clear" } } }
        }
        @match list {
            Err(failure) => {
                @if failure.unavailable() {
                    div.banner data-unavailable {
                        "The service cannot reach its database right now; this page retries by itself."
                    }
                }
                (failure_box(failure))
            }
            Ok(list) => {
                p.summary #summary {
                    (list.total_size) @if list.total_size == 1 { " connector matches" } @else { " connectors match" }
                    @if !filter.page.is_empty() { " · a later page" }
                    span #live .live hidden { " · live" }
                }
                @if can_operate {
                    form #bulk .bulk method="post" action="/bulk" data-dialog-form aria-label="Bulk actions" {
                        input type="hidden" name="csrf" value=(caller.csrf);
                        input type="hidden" name="total" value=(total);
                        (filter.hidden())
                        span { span #selected-count { "0" } " selected" }
                        div.check {
                            input #all-matching type="checkbox" name="all_matching" value="1" data-total=(total);
                            label for="all-matching" { "All " (total) " matching" }
                        }
                        button type="submit" name="action" value="pause" { "Pause selected…" }
                        button type="submit" name="action" value="start" { "Start selected…" }
                    }
                }
                div.table-wrap {
                    table #connectors data-watch=[view.watch_token.as_ref().map(|t| filter.events_url(t))] {
                        caption.visually-hidden { "Connectors matching the filters" }
                        thead {
                            tr {
                                @if can_operate {
                                    th scope="col" {
                                        input #select-page type="checkbox" aria-label="Select every connector on this page";
                                    }
                                }
                                th scope="col" { "Name and ID" }
                                th scope="col" { "Project" }
                                th scope="col" { "Region" }
                                th scope="col" { "State" }
                                th scope="col" { "Server IP" }
                                th scope="col" { "Latency" }
                                th scope="col" { "Checkpoint" }
                                th scope="col" { "Last heartbeat" }
                                @if can_operate { th scope="col" { "Actions" } }
                            }
                        }
                        tbody {
                            @for connector in &list.connectors { (row(connector, can_operate)) }
                        }
                    }
                }
                @if list.connectors.is_empty() {
                    p.empty { "No connector matches. " @if filter.is_filtered() { a href="/" { "Clear the filters" } } }
                }
                nav.pager aria-label="Pages" {
                    @if !filter.page.is_empty() { a href=(filter.link("")) { "← First page" } }
                    @if !list.next_page_token.is_empty() {
                        a href=(filter.link(&list.next_page_token)) rel="next" { "Next page →" }
                    }
                }
            }
        }
    };
    layout(caller, "Connectors", Tab::Connectors, body)
}

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

fn facts(connector: &v1::Connector) -> Markup {
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
        form.dialog-form method="post" action={ "/connectors/" (path_segment(&connector.id)) "/start" } data-dialog-form {
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
        form.dialog-form method="post" action={ "/connectors/" (path_segment(&connector.id)) "/pause" } data-dialog-form {
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

fn outcome_name(outcome: i32) -> &'static str {
    match v1::BatchOutcome::try_from(outcome).unwrap_or_default() {
        v1::BatchOutcome::Changed => "CHANGED",
        v1::BatchOutcome::Unchanged => "UNCHANGED",
        v1::BatchOutcome::Failed => "FAILED",
        v1::BatchOutcome::Unspecified => "?",
    }
}

fn results_table(response: &v1::BatchConnectorsResponse) -> Markup {
    const SHOWN: usize = 100;
    // A dry run changed nothing: what it would change says so.
    let label = |outcome: i32| match outcome_name(outcome) {
        "CHANGED" if response.validate_only => "WOULD CHANGE",
        name => name,
    };
    let class = |outcome: i32| match outcome_name(outcome) {
        "CHANGED" if response.validate_only => "would".to_owned(),
        name => name.to_ascii_lowercase(),
    };
    html! {
        div.table-wrap {
            table.results {
                thead { tr { th scope="col" { "Connector" } th scope="col" { "Outcome" } th scope="col" { "State / why" } } }
                tbody {
                    @for result in response.results.iter().take(SHOWN) {
                        tr data-outcome=(outcome_name(result.outcome)) {
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

pub fn bulk_review(
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
                fieldset.pull-back {
                    legend { "Whether to Pull Back" }
                    div.choices {
                        div.check {
                            input #bulk-pull-back-no type="radio" name="pull_back" value="no" checked[!form.start.pull_back];
                            label for="bulk-pull-back-no" { "No" }
                        }
                        div.check {
                            input #bulk-pull-back-yes type="radio" name="pull_back" value="yes" checked[form.start.pull_back];
                            label for="bulk-pull-back-yes" { "Yes" }
                        }
                    }
                    div.field data-pull-back-time hidden[!form.start.pull_back] {
                        label for="bulk-pull-back-local" { "Pull back to " span data-tz-label { "(UTC)" } }
                        input #bulk-pull-back-local type="datetime-local" step="1" name="pull_back_local"
                            value=(form.start.local_time) data-utc-target="bulk-pull-back-utc";
                        input #bulk-pull-back-utc type="hidden" name="pull_back_time" value=(form.start.utc_time);
                        p.hint data-utc-text {}
                    }
                }
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

pub fn bulk_results(
    caller: &Caller,
    form: &BulkForm,
    response: &v1::BatchConnectorsResponse,
) -> Markup {
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
        (done(&format!("{verb}: {}", summary_text(response, false)), &connectors, caller.can_operate()))
        div.buttons { button.primary type="button" data-close { "Close" } }
    }
}

fn command_kind(kind: i32) -> String {
    short_name::<v1::CommandKind>(kind)
}

fn command_status(status: i32) -> String {
    short_name::<v1::CommandStatus>(status)
}

pub fn connector_page(
    caller: &Caller,
    connector: &v1::Connector,
    commands: Result<Vec<v1::Command>, ShownFailure>,
    audit: Result<Vec<v1::AuditEvent>, ShownFailure>,
) -> Markup {
    let can_operate = caller.can_operate();
    let endpoint = |e: Option<&v1::Endpoint>| {
        e.map_or_else(String::new, |e| {
            format!("{} · {} · {}", e.r#type, e.region, e.address)
        })
    };
    let policy = connector.restart_policy.unwrap_or_default();
    let body = html! {
        p { a href="/" { "← Connectors" } }
        div.heading { h1 { (connector.name) } (state_badge(connector)) }
        @if can_operate {
            table.hidden-table { tbody { (row(connector, can_operate)) } }
            div.buttons { (actions(connector)) }
        }
        @if !connector.status_message.is_empty() { p.status { (shown(&connector.status_message)) } }
        dl.facts.wide {
            dt { "ID" } dd.mono { (connector.id) }
            dt { "Project" } dd { (connector.project_name) " " small.mono { (connector.project_id) } }
            dt { "Kind" } dd { (kind_name(connector.kind)) }
            dt { "Region" } dd { (connector.region) }
            dt { "Source" } dd { (endpoint(connector.source.as_ref())) }
            dt { "Destination" } dd { (endpoint(connector.destination.as_ref())) }
            dt { "Agent" } dd { (connector.agent_id) " " span.mono { (connector.server_ip) } }
            dt { "Desired state" } dd { (state_name(connector.desired_state)) }
            dt { "Latency" } dd { (duration_text(connector.latency.as_ref())) }
            dt { "Checkpoint" } dd { (time_cell(connector.checkpoint_time.as_ref())) }
            dt { "Store range" } dd {
                @match &connector.store_range {
                    Some(range) => { (time_cell(range.earliest_time.as_ref())) " – " (time_cell(range.latest_time.as_ref())) }
                    None => { span.muted { "not reported" } }
                }
            }
            dt { "Last heartbeat" } dd { (time_cell(connector.last_heartbeat_time.as_ref())) }
            dt { "Restart policy" } dd #restart-policy {
                (crate::proto::convert::restart_policy_text(&policy))
                @if can_operate {
                    " "
                    a.button href={ "/connectors/" (path_segment(&connector.id)) "/restart-policy" } data-dialog { "Change" }
                }
            }
            dt { "Next automatic start" } dd { (time_cell(connector.next_restart_time.as_ref())) }
            dt { "Created" } dd { (time_cell(connector.create_time.as_ref())) }
            dt { "Updated" } dd { (time_cell(connector.update_time.as_ref())) }
        }
        h2 { "Commands" }
        @match &commands {
            Err(failure) => { (failure_box(failure)) }
            Ok(commands) if commands.is_empty() => { p.muted { "No commands yet." } }
            Ok(commands) => {
                div.table-wrap { table #commands {
                    thead { tr { th scope="col" { "Created" } th scope="col" { "Kind" } th scope="col" { "Status" } th scope="col" { "Region" } th scope="col" { "Pull back" } th scope="col" { "By" } th scope="col" { "Reason / error" } } }
                    tbody {
                        @for command in commands {
                            tr {
                                td { (time_cell(command.create_time.as_ref())) }
                                td { (command_kind(command.kind)) }
                                td { (command_status(command.status)) }
                                td { (command.region) }
                                td { (time_cell(command.pull_back_time.as_ref())) }
                                td { (command.principal) }
                                td {
                                    (command.reason)
                                    @if !command.error_reason.is_empty() { " " strong { (shown(&command.error_reason)) } ": " (shown(&command.error_message)) }
                                }
                            }
                        }
                    }
                } }
            }
        }
        h2 { "Audit" }
        (audit_table(&audit))
    };
    layout(caller, &connector.name, Tab::None, body)
}

fn audit_table(audit: &Result<Vec<v1::AuditEvent>, ShownFailure>) -> Markup {
    html! {
        @match audit {
            Err(failure) => { (failure_box(failure)) }
            Ok(events) if events.is_empty() => { p.muted { "No audit events." } }
            Ok(events) => {
                p.scroll-hint { "The table is wider than the screen: scroll it sideways for more columns." }
                div.table-wrap { table #audit {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Principal" } th scope="col" { "Action" } th scope="col" { "Connector" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
                    tbody {
                        @for event in events {
                            tr data-outcome=(event.outcome) {
                                td { (time_cell(event.time.as_ref())) }
                                td { (event.principal) br; small.muted { (event.peer) } }
                                td { (event.action) }
                                td.mono {
                                    @if !event.connector_id.is_empty() {
                                        a href={ "/connectors/" (path_segment(&event.connector_id)) } { (event.connector_id) }
                                    }
                                }
                                td { (event.outcome) @if !event.reason.is_empty() { " " small { (event.reason) } } @if event.count > 1 { " ×" (event.count) } }
                                td { (event.detail) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

pub fn agents(
    caller: &Caller,
    agents: Result<Vec<v1::Agent>, ShownFailure>,
    replicas: Result<Vec<v1::Replica>, ShownFailure>,
) -> Markup {
    let body = html! {
        h1 { "Agents" }
        @match &agents {
            Err(failure) => { (failure_box(failure)) }
            Ok(agents) if agents.is_empty() => { p.muted { "No agent has connected yet." } }
            Ok(agents) => {
                @let regions = {
                    let mut regions: Vec<&str> = agents.iter().map(|a| a.region.as_str()).collect();
                    regions.dedup();
                    regions
                };
                @for region in &regions {
                    @let members: Vec<&v1::Agent> = agents.iter().filter(|a| a.region == *region).collect();
                    @let online = members.iter().filter(|a| a.state == v1::AgentState::Online as i32).count();
                    section.region {
                        h2 { "Region " (region) " " span.muted { (online) " of " (members.len()) " online" } }
                        div.table-wrap { table {
                            thead { tr { th scope="col" { "Agent" } th scope="col" { "State" } th scope="col" { "Server IP" } th scope="col" { "Connectors" } th scope="col" { "Last heartbeat" } th scope="col" { "Version" } th scope="col" { "Replica" } } }
                            tbody {
                                @for agent in members {
                                    @let state = short_name::<v1::AgentState>(agent.state);
                                    tr data-agent=(agent.id) {
                                        td.mono { (agent.id) }
                                        td { span class={ "state state-" (state.to_ascii_lowercase()) } { (state) } }
                                        td.mono { (agent.server_ip) }
                                        td { a href={ "/?" (query(&[("q", agent.server_ip.as_str())])) } { (agent.connectors) } }
                                        td { (time_cell(agent.last_heartbeat_time.as_ref())) }
                                        td { (shown(&agent.version)) }
                                        td.mono { (agent.replica_id) }
                                    }
                                }
                            }
                        } }
                    }
                }
            }
        }
        h2 { "Control-plane replicas" }
        @match &replicas {
            Err(failure) => { (failure_box(failure)) }
            Ok(replicas) => {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Replica" } th scope="col" { "Address" } th scope="col" { "State" } th scope="col" { "Leader" } th scope="col" { "Agents" } th scope="col" { "Started" } th scope="col" { "Heartbeat" } } }
                    tbody {
                        @for replica in replicas {
                            tr {
                                td.mono { (replica.id) }
                                td.mono { (replica.address) }
                                td { (short_name::<v1::ReplicaState>(replica.state)) }
                                td { @if replica.leader { "leader (term " (replica.leader_term) ")" } }
                                td { (replica.agents) }
                                td { (time_cell(replica.start_time.as_ref())) }
                                td { (time_cell(replica.heartbeat_time.as_ref())) }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout(caller, "Agents", Tab::Agents, body)
}

/// The Audit tab's filters.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub principal: String,
    pub connector_id: String,
    pub page: String,
}

pub fn audit(
    caller: &Caller,
    filter: &AuditFilter,
    events: Result<v1::ListAuditEventsResponse, ShownFailure>,
) -> Markup {
    let next = events
        .as_ref()
        .map(|e| e.next_page_token.clone())
        .unwrap_or_default();
    let events = events.map(|e| e.events);
    let body = html! {
        h1 { "Audit" }
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit trail" {
            div.field {
                label for="audit-principal" { "Principal" }
                input #audit-principal type="search" name="principal" value=(filter.principal);
            }
            div.field {
                label for="audit-connector" { "Connector ID" }
                input #audit-connector type="search" name="connector_id" value=(filter.connector_id);
            }
            div.field { button.primary type="submit" { "Filter" } }
        }
        (audit_table(&events))
        nav.pager aria-label="Pages" {
            @if !filter.page.is_empty() {
                a href={ "/audit?" (query(&[("principal", &filter.principal), ("connector_id", &filter.connector_id)])) } { "← Newest" }
            }
            @if !next.is_empty() {
                a rel="next" href={ "/audit?" (query(&[("principal", &filter.principal), ("connector_id", &filter.connector_id), ("page", &next)])) } { "Older →" }
            }
        }
    };
    layout(caller, "Audit", Tab::Audit, body)
}

pub fn login(next: &str, failure: Option<&ShownFailure>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · connector-control" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                main #main .login {
                    h1 { "connector-control" }
                    form.panel method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        div.field {
                            label for="token" { "Token" }
                            input #token type="password" name="token" required autocomplete="current-password" autofocus
                                aria-describedby="token-hint";
                            p.hint #token-hint { "The bearer token you use with grpcurl or the CLI; the same roles apply." }
                        }
                        @if let Some(failure) = failure { (failure_box(failure)) }
                        div.buttons { button.primary type="submit" { "Sign in" } }
                    }
                }
            }
        }
    }
}
