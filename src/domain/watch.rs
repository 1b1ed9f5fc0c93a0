//! Watching connectors: what a search looks at in a connector
//! (`Searchable`, also recorded as it was before each change), whether a
//! filter matches it, and what a change means to a watcher of that filter.

use super::model::{Connector, ConnectorState, SearchFilter};

/// How names and queries compare: case-insensitively. The stores keep
/// folded copies of the names the same way.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// The fields of a connector that a search filter reads, as of one
/// moment. Stores record them as they were before each change, so that a
/// watcher learns that a connector left its filter.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Searchable {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub project_name: String,
    pub server_ip: String,
    pub region: String,
    #[serde(deserialize_with = "state")]
    pub state: ConnectorState,
    #[serde(deserialize_with = "state")]
    pub desired_state: ConnectorState,
    pub latency_us: Option<i64>,
    pub awaiting_restart: bool,
}

fn state<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ConnectorState, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    ConnectorState::parse(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown state {text:?}")))
}

impl From<&Connector> for Searchable {
    fn from(c: &Connector) -> Self {
        Searchable {
            id: c.id.clone(),
            name: c.name.clone(),
            project_id: c.project_id.clone(),
            project_name: c.project_name.clone(),
            server_ip: c.server_ip.clone(),
            region: c.region.clone(),
            state: c.state,
            desired_state: c.desired_state,
            latency_us: c.latency.map(super::micros),
            awaiting_restart: c.restart.next_time.is_some(),
        }
    }
}

impl SearchFilter {
    /// Whether the filter matches: the rule ListConnectors applies in SQL
    /// (the store contract tests that both agree), for the watchers that
    /// test every change against their filter.
    pub fn matches(&self, c: &Searchable) -> bool {
        let query = fold(&self.query);
        let text = query.is_empty()
            || fold(&c.name).contains(&query)
            || fold(&c.project_name).contains(&query)
            || fold(&c.id).starts_with(&query)
            || fold(&c.project_id).starts_with(&query)
            || c.server_ip.starts_with(&query);
        let lagging = self.lagging_over.is_none_or(|alert| {
            c.desired_state == ConnectorState::Running
                && (c.state == ConnectorState::Unknown
                    || (c.state == ConnectorState::Running
                        && c.latency_us.is_some_and(|us| us > super::micros(alert))))
        });
        text && (self.region.is_empty() || c.region == self.region)
            && self
                .server
                .as_ref()
                .is_none_or(|server| server.contains(&c.server_ip))
            && (self.states.is_empty() || self.states.contains(&c.state))
            && lagging
            && (!self.awaiting_restart || c.awaiting_restart)
    }
}

/// What one change means to a watcher of a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// It matches now: it entered the filter or changed within it.
    Changed,
    /// It matched before the change and no longer does (or is gone).
    Left,
    /// It is outside the filter before and after.
    Outside,
}

/// A change of a connector, to a watcher of `filter`: `before` is how it
/// was before the change (None: it did not exist), `now` how it is now
/// (None: it is gone).
pub fn seen(filter: &SearchFilter, before: Option<&Searchable>, now: Option<&Connector>) -> Seen {
    if now.is_some_and(|c| filter.matches(&Searchable::from(c))) {
        Seen::Changed
    } else if before.is_some_and(|b| filter.matches(b)) {
        Seen::Left
    } else {
        Seen::Outside
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn searchable() -> Searchable {
        Searchable::from(&crate::domain::sample::connector(ConnectorState::Running))
    }

    #[test]
    fn a_filter_matches_as_the_search_does() {
        let mut c = searchable();
        c.name = "Orders EU".into();
        c.server_ip = "10.0.1.5".into();
        let filter = |query: &str| SearchFilter {
            query: query.into(),
            ..Default::default()
        };
        assert!(filter("").matches(&c));
        assert!(
            filter("ders e").matches(&c),
            "a substring of the name, any case"
        );
        assert!(filter("C1").matches(&c), "an id prefix, any case");
        assert!(filter("10.0.1.").matches(&c), "an IP prefix");
        assert!(!filter("0.1.5").matches(&c), "IPs match by prefix only");
        let lagging = SearchFilter {
            lagging_over: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        c.desired_state = ConnectorState::Running;
        c.latency_us = Some(60_000_000);
        assert!(!lagging.matches(&c), "strictly over the alert");
        c.latency_us = Some(60_000_001);
        assert!(lagging.matches(&c));
        let region = SearchFilter {
            region: "eu-1".into(),
            states: vec![ConnectorState::Running],
            ..Default::default()
        };
        assert!(!region.matches(&c), "runs in eu-2");
        c.region = "eu-1".into();
        assert!(region.matches(&c));
    }

    #[test]
    fn a_change_enters_changes_within_or_leaves_a_filter() {
        let running = SearchFilter {
            states: vec![ConnectorState::Running],
            ..Default::default()
        };
        let mut connector = crate::domain::sample::connector(ConnectorState::Running);
        let before = Searchable::from(&connector);
        assert_eq!(seen(&running, None, Some(&connector)), Seen::Changed);
        connector.state = ConnectorState::Stopped;
        assert_eq!(seen(&running, Some(&before), Some(&connector)), Seen::Left);
        assert_eq!(seen(&running, Some(&before), None), Seen::Left, "gone");
        let stopped = Searchable::from(&connector);
        assert_eq!(
            seen(&running, Some(&stopped), Some(&connector)),
            Seen::Outside
        );
    }
}
