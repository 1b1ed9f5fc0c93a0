//! What every scenario uses.

pub(crate) use crate::common::{self, ms, percentile};
pub(crate) use crate::runner::*;
pub(crate) use crate::server::*;
pub(crate) use connector_control::proto::v1::{
    self, agent_message, agent_service_client::AgentServiceClient,
    connector_service_client::ConnectorServiceClient, control_message,
};
pub(crate) use std::process::{Child, Command, Stdio};
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
pub(crate) use std::time::{Duration, Instant};
pub(crate) use tokio::sync::mpsc;
pub(crate) use tokio_stream::wrappers::ReceiverStream;
pub(crate) use tonic::transport::Channel;
