//! `connectors ...`: the verbs on connectors, each handed to the file that
//! does it.

use super::inspect::{self, GetArgs, HistoryArgs, ListArgs};
use super::mark_stopped::{self, MarkStoppedArgs};
use super::restart_policy::{self, RestartPolicyArgs};
use super::start_pause::{self, PauseArgs, StartArgs};
use super::watch::{self, WatchArgs};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Search connectors: QUERY matches names and project names (any case,
    /// any part), connector and project ids and server IPs (exact or prefix).
    List(ListArgs),
    /// Show one connector.
    Get(GetArgs),
    /// Start a stopped or failed connector, optionally pulling it back; or,
    /// without an id, every connector the filters choose (shown first).
    Start(StartArgs),
    /// Pause a running, starting or failed connector; or, without an id,
    /// every connector the filters choose (shown first).
    Pause(PauseArgs),
    /// The way out for a connector whose agent is gone (UNKNOWN, or a start
    /// or pause no agent answers): record it STOPPED so that it can be
    /// started again; what the lost agent says later changes nothing.
    /// Refused while its agent is online (pause it instead). Audited.
    MarkStopped(MarkStoppedArgs),
    /// Change when a failed connector is started again automatically:
    /// what you give changes, the rest of its policy stays (audited).
    RestartPolicy(RestartPolicyArgs),
    /// A connector's commands, newest first: who asked what, and what the
    /// agent answered.
    History(HistoryArgs),
    /// Follow connectors as they change: first those matching, then one
    /// line per change (entering, changing within or leaving the filters),
    /// until interrupted. Reconnects by itself when the server drains or
    /// the output was read too slowly.
    Watch(WatchArgs),
}

impl ConnectorsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ConnectorsCommand::List(args) => inspect::list(args).await,
            ConnectorsCommand::Get(args) => inspect::get(args).await,
            ConnectorsCommand::Start(args) => start_pause::start(args).await,
            ConnectorsCommand::Pause(args) => start_pause::pause(args).await,
            ConnectorsCommand::MarkStopped(args) => mark_stopped::run(args).await,
            ConnectorsCommand::RestartPolicy(args) => restart_policy::run(args).await,
            ConnectorsCommand::History(args) => inspect::history(args).await,
            ConnectorsCommand::Watch(args) => watch::run(args).await,
        }
    }
}
