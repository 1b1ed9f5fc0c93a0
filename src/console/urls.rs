//! The console's URLs of one connector, written once: its page and its
//! dialogs (the router's patterns name the same actions).

/// The dialogs' last path segments: `/connectors/{id}/start`, ...
pub const START: &str = "start";
pub const PAUSE: &str = "pause";
pub const MARK_STOPPED: &str = "mark-stopped";
pub const RESTART_POLICY: &str = "restart-policy";

/// A connector id in a URL path.
pub fn path_segment(id: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(id, KEEP).to_string()
}

/// A connector's page.
pub fn connector(id: &str) -> String {
    format!("/connectors/{}", path_segment(id))
}

/// One of a connector's dialogs (`action`: `START`, ...).
pub fn connector_action(id: &str, action: &str) -> String {
    format!("/connectors/{}/{action}", path_segment(id))
}
