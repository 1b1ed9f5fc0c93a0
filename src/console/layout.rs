//! The page shell: the HTML document every console page is (its head
//! written once), the header with the tabs and who is signed in, and the
//! pages that are nothing but a failure.

use super::caller::Caller;
use super::contract;
use super::failure::{ShownFailure, failure_box};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// Which tab a page belongs to (marked in the header).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Connectors,
    Agents,
    Audit,
    None,
}

/// An HTML document titled `title`. With `csrf` (a page of a session) it
/// carries the session's CSRF token, loads the script and tells it the
/// names it shares with the server; without (the sign-in page, a refusal
/// without a session) it is plain HTML.
pub fn document(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(csrf) = csrf { meta name="csrf-token" content=(csrf); }
                title { (title) " · connector-control" }
                link rel="stylesheet" href="/assets/console.css";
                link rel="icon" type="image/svg+xml" href="/favicon.ico";
                @if csrf.is_some() { script src="/assets/console.js" defer {} }
            }
            body data-names=[csrf.map(|_| contract::names_json())] { (body) }
        }
    }
}

/// A page of `caller`'s session: the header, the tab's `body`, and the
/// places the script fills (banner, toast, dialog).
pub fn layout(caller: &Caller, title: &str, tab: Tab, body: Markup) -> Markup {
    let principal = &caller.session.principal;
    let body = html! {
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
    };
    document(title, Some(&caller.csrf), body)
}

/// A page with nothing but a failure (no session to render a layout
/// with), served with the failure's HTTP status.
pub fn bare_failure(failure: &ShownFailure) -> Response {
    let markup = document(
        &failure.reason,
        None,
        html! { main #main { h1 { "Refused" } (failure_box(failure)) p { a href="/" { "Back to the console" } } } },
    );
    (failure.http_status(), markup).into_response()
}

/// A page of the session that shows only why it could not be shown.
pub fn failure_page(caller: &Caller, title: &str, failure: &ShownFailure) -> Markup {
    layout(
        caller,
        title,
        Tab::None,
        html! { h1 { (title) } (failure_box(failure)) p { a href="/" { "Back to the connectors" } } },
    )
}
