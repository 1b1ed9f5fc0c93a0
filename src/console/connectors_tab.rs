//! The Connector tab (GET /): the filters, the table of connectors with
//! its live stream's address, and the bulk form.

use super::access::Viewer;
use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::filter::Filter;
use super::layout::{Tab, layout};
use super::params::Query;
use super::row::row;
use super::state::Shared;
use crate::domain::ConnectorState;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

/// GET /: the Connector tab.
pub async fn page<S: FleetStore>(
    State(c): Shared<S>,
    Viewer(caller): Viewer,
    Query(filter): Query<Filter>,
) -> Response {
    // The token is read before the page is listed: the live stream then
    // misses nothing the page does not show. The regions meanwhile.
    let page_and_token = async {
        let token = c
            .connectors
            .watch_token_now(caller.request(filter.proto()))
            .await;
        let list =
            ConnectorService::list_connectors(&c.connectors, caller.request(filter.list_request()))
                .await
                .map(tonic::Response::into_inner);
        (token, list)
    };
    let (regions, (token, list)) = tokio::join!(c.regions(&caller), page_and_token);
    let list = list.map_err(ShownFailure::from);
    let status = list
        .as_ref()
        .map_or_else(ShownFailure::http_status, |_| StatusCode::OK);
    let view = ConnectorsView {
        filter: &filter,
        regions,
        list,
        watch_token: token.ok(),
    };
    caller.page(status, markup(&caller, &view))
}

/// What the Connector tab shows.
struct ConnectorsView<'a> {
    filter: &'a Filter,
    regions: Vec<v1::Region>,
    list: Result<v1::ListConnectorsResponse, ShownFailure>,
    /// Where the live stream starts (None: the page is not live).
    watch_token: Option<String>,
}

fn markup(caller: &Caller, view: &ConnectorsView<'_>) -> Markup {
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
