//! The Connector tab's filters, as its URL holds them: read from a query
//! string (or the bulk form's hidden fields), and turned into the API's
//! filter, the page's links, the live stream's URL and words.

use super::params::{FromParams, Params, query};
use crate::proto::v1;
use maud::{Markup, html};

/// The Connector tab's filters, as the URL holds them.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub query: String,
    pub region: String,
    /// A server's IP or a CIDR network, or "".
    pub server: String,
    /// A state's name without its prefix (RUNNING), or "".
    pub state: String,
    pub lagging: bool,
    pub page: String,
}

impl FromParams for Filter {
    fn from_params(params: &Params) -> Self {
        Filter {
            query: params.get("q").to_owned(),
            region: params.get("region").to_owned(),
            server: params.get("server").trim().to_owned(),
            state: params.get("state").to_ascii_uppercase(),
            lagging: params.flag("lagging"),
            page: params.get("page").to_owned(),
        }
    }
}

impl Filter {
    fn states(&self) -> Vec<i32> {
        if self.state.is_empty() {
            return Vec::new();
        }
        // An unknown name becomes UNSPECIFIED, which the API refuses by name.
        vec![
            v1::ConnectorState::from_str_name(&format!("CONNECTOR_STATE_{}", self.state))
                .map_or(0, |state| state as i32),
        ]
    }

    pub fn proto(&self) -> v1::ConnectorFilter {
        v1::ConnectorFilter {
            query: self.query.clone(),
            region: self.region.clone(),
            states: self.states(),
            lagging: self.lagging,
            awaiting_restart: false,
            server_ip: self.server.clone(),
        }
    }

    pub fn list_request(&self) -> v1::ListConnectorsRequest {
        v1::ListConnectorsRequest::matching(self.proto(), 50, self.page.clone())
    }

    fn pairs<'a>(&'a self, page: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("q", self.query.as_str()),
            ("region", self.region.as_str()),
            ("server", self.server.as_str()),
            ("state", self.state.as_str()),
            ("lagging", if self.lagging { "1" } else { "" }),
            ("page", page),
        ]
    }

    /// This view's URL at `page` ("" for the first).
    pub fn link(&self, page: &str) -> String {
        let query = query(&self.pairs(page));
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }

    pub fn events_url(&self, token: &str) -> String {
        let mut pairs = self.pairs("");
        pairs.push(("resume", token));
        format!("/events?{}", query(&pairs))
    }

    pub fn is_filtered(&self) -> bool {
        !self.query.is_empty()
            || !self.region.is_empty()
            || !self.server.is_empty()
            || !self.state.is_empty()
            || self.lagging
    }

    /// The filter in words, for the bulk dialog.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.query.is_empty() {
            parts.push(format!("search \"{}\"", self.query));
        }
        if !self.region.is_empty() {
            parts.push(format!("region {}", self.region));
        }
        if !self.server.is_empty() {
            parts.push(format!("server {}", self.server));
        }
        if !self.state.is_empty() {
            parts.push(format!("state {}", self.state));
        }
        if self.lagging {
            parts.push("lagging".to_owned());
        }
        if parts.is_empty() {
            "every connector".to_owned()
        } else {
            parts.join(", ")
        }
    }

    pub fn hidden(&self) -> Markup {
        html! {
            input type="hidden" name="q" value=(self.query);
            input type="hidden" name="region" value=(self.region);
            input type="hidden" name="server" value=(self.server);
            input type="hidden" name="state" value=(self.state);
            @if self.lagging { input type="hidden" name="lagging" value="1"; }
        }
    }
}
