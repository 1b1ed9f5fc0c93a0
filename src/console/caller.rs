//! The browser a request comes from: its session (and so its principal),
//! its CSRF token and address; how the API services are called on its
//! behalf, and how an answer reaches it (with a new session's cookie).

use super::session::Session;
use crate::auth::Permission;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::Markup;
use std::net::SocketAddr;

/// The browser a request comes from.
pub struct Caller {
    pub session: Session,
    pub csrf: String,
    pub peer: SocketAddr,
    /// A new anonymous session's cookie (no auth file), to set.
    pub set_cookie: Option<String>,
    /// The script asked for a fragment (a dialog's content).
    pub fragment: bool,
    /// Sign-in is on: the page shows who is signed in and Log out.
    pub signed_in: bool,
}

impl Caller {
    pub fn can_operate(&self) -> bool {
        self.session.principal.allows(Permission::ConnectorsOperate)
    }

    /// A call to the API services as this caller, from the browser's
    /// address: permissions, rate limits and audit are the API's.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .extensions_mut()
            .insert(self.session.principal.clone());
        request
            .extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(self.peer),
            });
        request
    }

    /// `response`, with the new session's cookie if there is one.
    pub fn with_cookie(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.set_cookie
            && let Ok(value) = HeaderValue::from_str(cookie)
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }

    /// A page for this caller.
    pub fn page(&self, status: StatusCode, markup: Markup) -> Response {
        self.with_cookie((status, markup).into_response())
    }
}
