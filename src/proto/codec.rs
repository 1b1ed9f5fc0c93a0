//! The protobuf codec of every generated service and client: prost's
//! encoding, with undecodable bytes reported as what they are, the
//! caller's fault. prost's own codec answers them with INTERNAL and no
//! details, which tells a client nothing and pages the server's on-call.

use super::{ERROR_DOMAIN, v1::ErrorReason};
use prost::Message;
use std::collections::HashMap;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Named in `build.rs` as the codec of the generated code.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder::default()
    }
}

/// Decodes `U`; bytes that are not a valid `U` are INVALID_ARGUMENT with
/// the reason `MALFORMED_MESSAGE`.
#[derive(Debug)]
pub struct MessageDecoder<U>(PhantomData<U>);

impl<U> Default for MessageDecoder<U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<U: Message + Default> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|error| malformed(message_name::<U>(), &error))
    }
}

/// `connector.v1.StartConnectorRequest` for the generated type.
fn message_name<U>() -> String {
    let short = std::any::type_name::<U>()
        .rsplit("::")
        .next()
        .unwrap_or("message");
    format!("connector.v1.{short}")
}

fn malformed(message: String, error: &prost::DecodeError) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        ErrorReason::MalformedMessage.reason(),
        ERROR_DOMAIN,
        HashMap::from([("message".to_owned(), message.clone())]),
    );
    Status::with_error_details(
        Code::InvalidArgument,
        format!(
            "the bytes received are not a valid {message} ({error}); messages must be encoded \
             from the published proto (grpcurl describe {message})"
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_named_as_in_the_proto() {
        assert_eq!(
            message_name::<crate::proto::v1::StartConnectorRequest>(),
            "connector.v1.StartConnectorRequest"
        );
    }
}
