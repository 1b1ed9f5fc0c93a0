//! Message size limits, enforced on the gRPC framing before a message is
//! read: a message whose 5-byte gRPC prefix announces more than its
//! service accepts is refused with RESOURCE_EXHAUSTED (what gRPC's own
//! size limit answers, and what clients and dashboards expect), an
//! ErrorInfo `MESSAGE_TOO_LARGE` naming the limit, and without buffering
//! any of it.

use crate::proto::{ERROR_DOMAIN, v1::ErrorReason};
use bytes::{Buf, Bytes};
use http_body::Frame;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The largest request an operator's call needs is a few kilobytes (ids,
/// names and addresses are bounded): anything far larger is refused.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// An agent message carries up to 10,000 connector statuses.
pub const MAX_AGENT_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// The limit for a call to `path` (`/package.Service/Method`).
fn limit_for(path: &str) -> usize {
    if path == "/connector.v1.AgentService/Connect" {
        MAX_AGENT_MESSAGE_BYTES
    } else {
        MAX_REQUEST_BYTES
    }
}

/// Wraps the server's routes: every request body's messages are checked
/// against the limit of the called method.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageLimitLayer;

impl<S> tower::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> MessageLimit<S> {
        MessageLimit { inner }
    }
}

/// The service `MessageLimitLayer` builds.
#[derive(Clone, Debug)]
pub struct MessageLimit<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for MessageLimit<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limit = limit_for(request.uri().path());
        self.inner
            .call(request.map(|body| Body::new(Limited::new(body, limit))))
    }
}

/// Where the scan is in the stream of length-prefixed messages.
#[derive(Debug)]
enum Framing {
    /// Reading a message's 5-byte prefix; `read` bytes of it so far.
    Prefix { bytes: [u8; 5], read: usize },
    /// Inside a message; this many of its bytes are still to come.
    Payload { left: usize },
}

/// A request body that fails, with the status tonic then answers, as soon
/// as a message prefix announces more than `limit` bytes.
struct Limited {
    inner: Body,
    limit: usize,
    framing: Framing,
}

impl Limited {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            framing: Framing::Prefix {
                bytes: [0; 5],
                read: 0,
            },
        }
    }

    /// Follows the framing through `data`; the message length that is
    /// over the limit, if one is announced.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), usize> {
        while !data.is_empty() {
            match &mut self.framing {
                Framing::Payload { left } => {
                    let skip = (*left).min(data.len());
                    data.advance(skip);
                    *left -= skip;
                    if *left == 0 {
                        self.framing = Framing::Prefix {
                            bytes: [0; 5],
                            read: 0,
                        };
                    }
                }
                Framing::Prefix { bytes, read } => {
                    let take = (5 - *read).min(data.len());
                    bytes[*read..*read + take].copy_from_slice(&data[..take]);
                    data.advance(take);
                    *read += take;
                    if *read == 5 {
                        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                        let len = usize::try_from(len).unwrap_or(usize::MAX);
                        if len > self.limit {
                            return Err(len);
                        }
                        self.framing = if len == 0 {
                            Framing::Prefix {
                                bytes: [0; 5],
                                read: 0,
                            }
                        } else {
                            Framing::Payload { left: len }
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// RESOURCE_EXHAUSTED / `MESSAGE_TOO_LARGE` for a `len`-byte message.
pub fn too_large(len: usize, limit: usize) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        ErrorReason::MessageTooLarge.reason(),
        ERROR_DOMAIN,
        HashMap::from([
            ("limit_bytes".to_owned(), limit.to_string()),
            ("message_bytes".to_owned(), len.to_string()),
        ]),
    );
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "the message is {len} bytes; this method accepts messages of at most {limit} bytes \
             (requests hold bounded ids, names and filters; agents send at most 10,000 statuses \
             per message)"
        ),
        details,
    )
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(len) = self.scan(data)
        {
            let limit = self.limit;
            return Poll::Ready(Some(Err(too_large(len, limit))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(len: u32) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&len.to_be_bytes());
        frame
    }

    #[test]
    fn prefixes_are_followed_across_chunks_and_messages() {
        let mut body = Limited::new(Body::empty(), 10);
        let mut stream = prefixed(3);
        stream.extend_from_slice(b"abc");
        stream.extend(prefixed(0));
        stream.extend(prefixed(10));
        stream.extend_from_slice(&[7; 10]);
        for chunk in stream.chunks(2) {
            assert_eq!(body.scan(chunk), Ok(()));
        }
        let mut over = prefixed(11);
        over.push(1);
        assert_eq!(body.scan(&over[..3]), Ok(()));
        assert_eq!(body.scan(&over[3..]), Err(11));
    }
}
