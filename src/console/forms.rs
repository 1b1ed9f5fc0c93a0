//! The console's forms as posted: what the Start, Pause and Mark stopped
//! dialogs and the bulk form were filled in with, read once from their
//! fields; and a labelled input, drawn once.

use super::failure::ShownFailure;
use super::filter::Filter;
use super::params::{FromParams, Params};
use crate::domain::AuditAction;
use crate::proto::v1;
use maud::{Markup, html};

/// A dialog's form, as typed.
pub trait DialogForm: Send + Sync + Sized {
    /// The form as the dialog opens for `connector` (with a new request
    /// id).
    fn open(connector: &v1::Connector) -> Self;

    /// The form as posted.
    fn read(params: &Params) -> Self;

    /// The request id the form carries, so that a post sent twice is one
    /// change.
    fn request_id(&self) -> &str;
}

/// What a Start dialog was filled in with.
#[derive(Debug, Default)]
pub struct StartForm {
    pub region: String,
    pub pull_back: bool,
    /// As typed, in the browser's time zone (`datetime-local`).
    pub local_time: String,
    /// The same instant in UTC (RFC 3339), filled in by the script.
    pub utc_time: String,
    pub request_id: String,
    /// Skip the changes the store no longer holds, on purpose.
    pub skip_to_earliest: bool,
}

impl DialogForm for StartForm {
    fn open(_: &v1::Connector) -> Self {
        StartForm {
            request_id: new_request_id(),
            ..Default::default()
        }
    }

    fn read(params: &Params) -> Self {
        StartForm {
            region: params.get("region").to_owned(),
            pull_back: params.get("pull_back") == "yes",
            skip_to_earliest: params.get("skip_to_earliest") == "yes",
            local_time: params.get("pull_back_local").to_owned(),
            utc_time: params.get("pull_back_time").to_owned(),
            request_id: params.get("request_id").to_owned(),
        }
    }

    fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// A Start as the API is asked for it.
#[derive(Debug)]
pub struct StartChoice {
    /// "" for the destination's region.
    pub region: String,
    pub pull_back_time: Option<prost_types::Timestamp>,
    pub skip_to_earliest: bool,
}

impl StartForm {
    /// The Start the form asks for, or the field the console could not
    /// read.
    pub fn choice(&self) -> Result<StartChoice, ShownFailure> {
        let pull_back_time = self.pull_back_time()?;
        Ok(StartChoice {
            region: self.region.clone(),
            pull_back_time,
            // A pull-back skips nothing: the choice counts without one only.
            skip_to_earliest: self.skip_to_earliest && pull_back_time.is_none(),
        })
    }

    /// The pull-back time: the script's UTC value, else the typed one read
    /// as UTC (without the script the field says so).
    fn pull_back_time(&self) -> Result<Option<prost_types::Timestamp>, ShownFailure> {
        if !self.pull_back {
            return Ok(None);
        }
        let parsed = if !self.utc_time.is_empty() {
            chrono::DateTime::parse_from_rfc3339(&self.utc_time)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        } else {
            ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
                .iter()
                .find_map(|format| {
                    chrono::NaiveDateTime::parse_from_str(&self.local_time, format).ok()
                })
                .map(|t| t.and_utc())
        };
        match parsed {
            Some(time) => Ok(Some(crate::api::timestamp_to_proto(time))),
            None => Err(ShownFailure::field(
                "pull_back_time",
                "Pull Back is Yes: choose the date and time to pull back to (or choose No)",
            )),
        }
    }
}

/// What the bulk form asks for.
#[derive(Debug)]
pub struct BulkForm {
    pub pause: bool,
    /// `step=commit`: the change itself, not its dry run.
    pub commit: bool,
    pub ids: Vec<String>,
    pub all_matching: bool,
    pub filter: Filter,
    pub max_connectors: i32,
    pub reason: String,
    pub start: StartForm,
    pub request_id: String,
    /// How many the page said match (the guard's default for "all").
    pub total: i32,
}

impl FromParams for BulkForm {
    fn from_params(params: &Params) -> Self {
        let ids = params.all("ids");
        let all_matching = params.flag("all_matching");
        let total = params.get("total").parse().unwrap_or(0);
        // The guard guards: what the person ticked, or for "all matching"
        // the API's (and the CLI's) default, never the count that matched.
        let default_max = if all_matching {
            i32::try_from(crate::api::DEFAULT_MAX_CONNECTORS).unwrap_or(i32::MAX)
        } else {
            i32::try_from(ids.len()).unwrap_or(i32::MAX)
        };
        BulkForm {
            pause: params.get("action") != "start",
            commit: params.get("step") == "commit",
            ids,
            all_matching,
            filter: Filter::from_params(params),
            max_connectors: params
                .get("max_connectors")
                .parse()
                .unwrap_or(default_max)
                .max(0),
            reason: params.get("reason").to_owned(),
            start: StartForm::read(params),
            request_id: match params.get("request_id") {
                "" => new_request_id(),
                id => id.to_owned(),
            },
            total,
        }
    }
}

impl BulkForm {
    /// What a refused form is audited as.
    pub fn action(&self) -> AuditAction {
        if self.pause {
            AuditAction::PauseConnector
        } else {
            AuditAction::StartConnector
        }
    }

    /// Nothing ticked, and not "all matching".
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && !self.all_matching
    }

    /// The batch call's selection: the filter (for "all matching"), or the
    /// ids ticked.
    pub fn selection(&self) -> (Option<v1::ConnectorFilter>, Vec<String>) {
        if self.all_matching {
            (Some(self.filter.proto()), Vec::new())
        } else {
            (None, self.ids.clone())
        }
    }
}

/// A Pause or Mark stopped form: the reason given, and the request id.
#[derive(Debug, Default)]
pub struct ReasonForm {
    pub reason: String,
    pub request_id: String,
}

impl DialogForm for ReasonForm {
    fn open(_: &v1::Connector) -> Self {
        ReasonForm {
            reason: String::new(),
            request_id: new_request_id(),
        }
    }

    fn read(params: &Params) -> Self {
        ReasonForm {
            reason: params.get("reason").to_owned(),
            request_id: params.get("request_id").to_owned(),
        }
    }

    fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// A form's field: `label`, and the input of `kind` (`text`, `search`)
/// named `name` that holds `value`.
pub fn input_field(id: &str, label: &str, kind: &str, name: &str, value: &str) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            input #(id) type=(kind) name=(name) value=(value);
        }
    }
}

/// A new form's request id.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
