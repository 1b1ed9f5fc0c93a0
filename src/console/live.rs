//! The Connector tab's live stream (GET /events): WatchConnectors with the
//! page's filter, as server-sent events that replace rows as connectors
//! change, with the database's outages and the session's end.

use super::access::Viewer;
use super::contract::LiveEvent;
use super::failure::ShownFailure;
use super::filter::Filter;
use super::params::{FromParams, Query};
use super::row::row;
use super::state::{Console, Shared};
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::convert::Infallible;
use std::time::Duration;
use tonic::Status;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;

/// How long a browser waits before reconnecting a live stream.
const RECONNECT: Duration = Duration::from_secs(2);

/// GET /events: the live stream of the Connector tab's filter, as
/// server-sent events (`row`: a connector's new row; `removed`: it left the
/// filter; `unavailable`, `expired`, `failure`, `ready`, `reload`). The
/// event id is the watch's resume token, so the browser's reconnection
/// (`Last-Event-ID`) resumes where it stopped.
pub async fn events<S: FleetStore>(
    State(c): Shared<S>,
    viewer: Result<Viewer, Response>,
    headers: HeaderMap,
    Query(params): Query,
) -> Response {
    let Ok(Viewer(caller)) = viewer else {
        // 204 ends the browser's reconnections; the script reloads the
        // page, which asks to sign in.
        return StatusCode::NO_CONTENT.into_response();
    };
    let filter = Filter::from_params(&params);
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| params.get("resume"))
        .to_owned();
    let watch = ConnectorService::watch_connectors(
        &c.connectors,
        caller.request(v1::WatchConnectorsRequest {
            filter: Some(filter.proto()),
            resume_token: resume,
        }),
    )
    .await;
    let retry = Event::default()
        .retry(RECONNECT)
        .comment("connector-control");
    let stream: BoxStream<'static, Event> = match watch {
        Err(status) => futures_util::stream::iter([retry, ending(&status)]).boxed(),
        Ok(response) => {
            let can_operate = caller.can_operate();
            let ready = LiveEvent::Ready.with("live");
            let changes = response.into_inner().map(move |item| match item {
                Ok(event) => change_event(&event, can_operate),
                Err(status) => ending(&status),
            });
            // A session's stream ends when the session does: the page
            // reloads and asks to sign in again.
            let left = Duration::from_secs(
                caller
                    .session
                    .expires
                    .saturating_sub(chrono::Utc::now().timestamp().max(0) as u64),
            );
            let mut draining = c.draining.clone();
            let end = async move {
                tokio::select! {
                    () = tokio::time::sleep(left) => {}
                    _ = draining.wait_for(|d| *d) => {}
                }
            };
            let changes = futures_util::stream::select(changes, store_health(&c).await);
            futures_util::stream::iter([retry, ready])
                .chain(changes.take_until(end))
                .chain(futures_util::stream::iter([
                    LiveEvent::Reload.with("session ended")
                ]))
                .boxed()
        }
    };
    let mut response = caller.with_cookie(
        Sse::new(stream.map(Ok::<_, Infallible>))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The health service's name for the whole server, which the server
/// reports NOT_SERVING while its database does not answer.
const WHOLE_SERVER: &str = "";

/// `unavailable` when the server finds its database unreachable (its own
/// check, which the health service reports), `ready` when it is back: an
/// outage shows as a banner while nothing changes.
async fn store_health<S: FleetStore>(c: &Console<S>) -> BoxStream<'static, Event> {
    let request = tonic::Request::new(HealthCheckRequest {
        service: WHOLE_SERVER.to_owned(),
    });
    let Ok(statuses) = Health::watch(&c.health, request).await else {
        return futures_util::stream::pending().boxed();
    };
    statuses
        .into_inner()
        .map(|status| status.is_ok_and(|s| s.status == ServingStatus::Serving as i32))
        // The page was served live: only a change is news.
        .scan(true, |healthy, now| {
            let changed = std::mem::replace(healthy, now) != now;
            std::future::ready(Some(changed.then_some(now)))
        })
        .filter_map(|change| {
            std::future::ready(change.map(|healthy| {
                if healthy {
                    LiveEvent::Ready.with("live")
                } else {
                    LiveEvent::Unavailable
                        .with("the control plane cannot reach its database; changes are not shown")
                }
            }))
        })
        .boxed()
}

fn change_event(event: &v1::WatchConnectorsResponse, can_operate: bool) -> Event {
    let kind = v1::WatchEventType::try_from(event.r#type).unwrap_or_default();
    let sse = match (kind, &event.connector) {
        (v1::WatchEventType::Removed, Some(connector)) => LiveEvent::Removed.with(&connector.id),
        (_, Some(connector)) => LiveEvent::Row.with(row(connector, can_operate).into_string()),
        _ => LiveEvent::Progress.with("-"),
    };
    // The browser resumes from the last id it saw.
    if event.resume_token.is_empty() {
        sse
    } else {
        sse.id(event.resume_token.clone())
    }
}

/// The last event of a stream that ends with `status`.
fn ending(status: &Status) -> Event {
    let failure = ShownFailure::from(status);
    let kind = if failure.is(v1::ErrorReason::ResumeTokenExpired)
        || failure
            .fields
            .iter()
            .any(|(field, _)| field == "resume_token")
    {
        LiveEvent::Expired
    } else if status.code() == tonic::Code::Unavailable {
        LiveEvent::Unavailable
    } else {
        LiveEvent::Failure
    };
    kind.with(failure.one_line().replace(['\n', '\r'], " "))
}
