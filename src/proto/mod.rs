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
        self.as_str_name()
            .strip_prefix("ERROR_REASON_")
            .unwrap_or("UNSPECIFIED")
    }
}
