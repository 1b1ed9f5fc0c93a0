//! What the console serves besides pages, from inside the binary: its
//! script, style sheet and icon; the answer to a path it does not serve;
//! and the security headers on every answer.

use super::failure::ShownFailure;
use super::layout::bare_failure;
use crate::proto::v1;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// GET /assets/console.js: the page's script.
pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

/// GET /assets/console.css: the style sheet.
pub async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

/// GET /favicon.ico: the console's icon (browsers ask for it on every
/// page), an SVG of a connector.
pub async fn favicon() -> Response {
    asset(
        "image/svg+xml",
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
         <rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#0b5cad\"/>\
         <path d=\"M3 8h4M9 8h4M7 5v6M9 5v6\" stroke=\"#fff\" stroke-width=\"2\"/></svg>",
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The fallback: a path the console does not serve.
pub async fn not_found() -> Response {
    let failure = ShownFailure::local(
        tonic::Code::NotFound,
        v1::ErrorReason::PageNotFound,
        "no such page in the console",
    );
    bare_failure(&failure)
}

/// Headers on every answer: no framing, no foreign scripts or styles, no
/// sniffing, pages not cached.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
