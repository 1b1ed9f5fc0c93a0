//! The names the server and the page's script (`assets/console.js`) share,
//! kept once, here: the headers a request or an answer carries, what a
//! completed dialog asks of the page, the live stream's event names, and a
//! row's id. Every page of a session carries them (`<body data-names>`,
//! written by the layout) and the script reads them from there, so the two
//! cannot drift apart.

use std::sync::LazyLock;

/// The header the script sends when it wants a dialog's content rather
/// than a whole page, and its value.
pub const FRAGMENT_HEADER: &str = "x-console-fragment";
pub const FRAGMENT_VALUE: &str = "1";

/// The header the script sends the session's CSRF token in (a form without
/// the script sends it as the field `csrf`).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Set on an answer that completed a dialog's action: what the page does.
pub const DONE_HEADER: &str = "x-console-done";

/// What a completed action asks of the page.
#[derive(Clone, Copy, Debug)]
pub enum Finish {
    /// Close the dialog, say what was done, put the rows in place.
    Close,
    /// Keep the dialog (it shows each connector's result); put the rows in
    /// place.
    Keep,
}

impl Finish {
    pub fn value(self) -> &'static str {
        match self {
            Finish::Close => "close",
            Finish::Keep => "keep",
        }
    }

    /// Marks `response` as the answer that completed the action.
    pub fn mark(self, response: &mut axum::response::Response) {
        response.headers_mut().insert(
            DONE_HEADER,
            axum::http::HeaderValue::from_static(self.value()),
        );
    }
}

/// The live stream's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveEvent {
    /// The stream is live (again).
    Ready,
    /// A connector's new row (its HTML).
    Row,
    /// A connector left the filter (its id).
    Removed,
    /// The watch moved on with nothing to show.
    Progress,
    /// The database or the service is unavailable; the stream retries.
    Unavailable,
    /// The resume token is no longer kept: the page reloads.
    Expired,
    /// The stream ended with a refusal.
    Failure,
    /// The session ended or the server drains: the page reloads.
    Reload,
}

impl LiveEvent {
    pub const ALL: [LiveEvent; 8] = [
        LiveEvent::Ready,
        LiveEvent::Row,
        LiveEvent::Removed,
        LiveEvent::Progress,
        LiveEvent::Unavailable,
        LiveEvent::Expired,
        LiveEvent::Failure,
        LiveEvent::Reload,
    ];

    /// The event's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            LiveEvent::Ready => "ready",
            LiveEvent::Row => "row",
            LiveEvent::Removed => "removed",
            LiveEvent::Progress => "progress",
            LiveEvent::Unavailable => "unavailable",
            LiveEvent::Expired => "expired",
            LiveEvent::Failure => "failure",
            LiveEvent::Reload => "reload",
        }
    }

    /// An event of this kind carrying `data`.
    pub fn with(self, data: impl AsRef<str>) -> axum::response::sse::Event {
        axum::response::sse::Event::default()
            .event(self.name())
            .data(data)
    }
}

/// A connector's row's id is this prefix and the connector's id.
pub const ROW_ID_PREFIX: &str = "row-";

/// The names above as the script reads them: JSON in `<body data-names>`.
pub fn names_json() -> &'static str {
    static NAMES: LazyLock<String> = LazyLock::new(|| {
        let events: serde_json::Map<String, serde_json::Value> = LiveEvent::ALL
            .iter()
            // The script knows an event by its variant's name, and hears
            // it by its name on the wire.
            .map(|event| (format!("{event:?}").to_lowercase(), event.name().into()))
            .collect();
        serde_json::json!({
            "fragmentHeader": FRAGMENT_HEADER,
            "fragmentValue": FRAGMENT_VALUE,
            "csrfHeader": CSRF_HEADER,
            "doneHeader": DONE_HEADER,
            "done": { "close": Finish::Close.value(), "keep": Finish::Keep.value() },
            "events": events,
            "rowIdPrefix": ROW_ID_PREFIX,
        })
        .to_string()
    });
    &NAMES
}
