//! The Audit tab (GET /audit): who did what, filterable by principal and
//! connector; its table is also a connector page's audit trail.

use super::access::Viewer;
use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::format::time_cell;
use super::forms::input_field;
use super::layout::{Tab, layout};
use super::params::{FromParams, Params, Query, query};
use super::state::Shared;
use super::urls;
use crate::proto::v1::{self, audit_service_server::AuditService};
use crate::store::FleetStore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

/// The Audit tab's filters.
#[derive(Debug, Default)]
pub struct AuditFilter {
    principal: String,
    connector_id: String,
    page: String,
}

impl FromParams for AuditFilter {
    fn from_params(params: &Params) -> Self {
        AuditFilter {
            principal: params.get("principal").to_owned(),
            connector_id: params.get("connector_id").to_owned(),
            page: params.get("page").to_owned(),
        }
    }
}

impl AuditFilter {
    /// The page of the audit trail the filters ask for.
    fn request(&self) -> v1::ListAuditEventsRequest {
        v1::ListAuditEventsRequest {
            connector_id: self.connector_id.clone(),
            principal: self.principal.clone(),
            page_size: 50,
            page_token: self.page.clone(),
            ..Default::default()
        }
    }
}

/// GET /audit: who did what, filterable by principal and connector.
pub async fn page<S: FleetStore>(
    State(c): Shared<S>,
    Viewer(caller): Viewer,
    Query(filter): Query<AuditFilter>,
) -> Response {
    let events = AuditService::list_audit_events(&c.audit, caller.request(filter.request()))
        .await
        .map(tonic::Response::into_inner)
        .map_err(ShownFailure::from);
    caller.page(StatusCode::OK, markup(&caller, &filter, events))
}

fn markup(
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
            (input_field("audit-principal", "Principal", "search", "principal", &filter.principal))
            (input_field("audit-connector", "Connector ID", "search", "connector_id", &filter.connector_id))
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

pub fn audit_table(audit: &Result<Vec<v1::AuditEvent>, ShownFailure>) -> Markup {
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
                                        a href=(urls::connector(&event.connector_id)) { (event.connector_id) }
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
