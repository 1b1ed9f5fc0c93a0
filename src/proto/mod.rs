//! Code generated from `proto/` by `build.rs`, the encoded descriptor
//! set that server reflection serves, and the codec the generated code
//! uses.

pub mod codec;
pub mod convert;

#[allow(clippy::all, clippy::pedantic)]
pub mod connector {
    pub mod v1 {
        tonic::include_proto!("connector.v1");
    }
}

pub use connector::v1;

/// Every file under `proto/` and its imports, encoded, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/connector_descriptor.bin"));

/// The domain that scopes every `google.rpc.ErrorInfo.reason` we send.
pub const ERROR_DOMAIN: &str = "connector.v1";

impl v1::ErrorReason {
    /// The `ErrorInfo.reason` string: the value name without its prefix.
    pub fn reason(self) -> &'static str {
        self.short_name()
    }
}

impl v1::ListConnectorsRequest {
    /// The search for what `filter` chooses (ListConnectors takes the
    /// filter's fields as its own), a page at a time.
    pub fn matching(filter: v1::ConnectorFilter, page_size: i32, page_token: String) -> Self {
        v1::ListConnectorsRequest {
            query: filter.query,
            region: filter.region,
            states: filter.states,
            lagging: filter.lagging,
            awaiting_restart: filter.awaiting_restart,
            server_ip: filter.server_ip,
            page_size,
            page_token,
        }
    }
}

/// An enum value as people read it, in the CLI and the console alike:
/// `RUNNING` for `CONNECTOR_STATE_RUNNING`.
pub trait ShortName: Copy + TryFrom<i32> {
    /// The prefix every value's proto name starts with.
    const PREFIX: &'static str;

    /// The value's proto name.
    fn proto_name(self) -> &'static str;

    /// The proto name without the enum's prefix.
    fn short_name(self) -> &'static str {
        let name = self.proto_name();
        name.strip_prefix(Self::PREFIX).unwrap_or(name)
    }
}

/// The short name of an enum field's raw value; a value this build does not
/// know (a newer server's) is shown as its number.
pub fn short_name<E: ShortName>(value: i32) -> String {
    E::try_from(value).map_or_else(|_| value.to_string(), |e| e.short_name().to_owned())
}

macro_rules! short_names {
    ($($enum:ident => $prefix:literal),* $(,)?) => {$(
        impl ShortName for v1::$enum {
            const PREFIX: &'static str = $prefix;
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
        }
    )*};
}

short_names! {
    AgentState => "AGENT_STATE_",
    ReplicaState => "REPLICA_STATE_",
    ErrorReason => "ERROR_REASON_",
    ConnectorKind => "CONNECTOR_KIND_",
    ConnectorState => "CONNECTOR_STATE_",
    LagCause => "LAG_CAUSE_",
    CommandKind => "COMMAND_KIND_",
    CommandStatus => "COMMAND_STATUS_",
    RestartMode => "RESTART_MODE_",
    WatchEventType => "WATCH_EVENT_TYPE_",
    BatchOutcome => "BATCH_OUTCOME_",
}
