//! Where the control plane is and how to reach it: the flags every verb of
//! the people's CLI shares (address, output, token, TLS), the connected,
//! token-carrying gRPC clients they make, and how an answer is printed.

use super::failure::{Exit, Failure};
use super::render::Output;
use crate::auth::Bearer;
use crate::proto::v1::{
    agent_service_client::AgentServiceClient, connector_service_client::ConnectorServiceClient,
};
use clap::Args;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Where the control plane is and how to print answers.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The control plane's gRPC address.
    #[arg(
        long,
        env = "CONNECTOR_CONTROL_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,

    /// `table` for people, `json` (the API's JSON mapping) for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The bearer token calls carry, when the control plane has an auth file
/// (the people's CLI and `agent`).
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Bearer token, when the control plane has an auth file.
    #[arg(long, env = "CONNECTOR_CONTROL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A file whose content is the bearer token (instead of --token).
    #[arg(long, env = "CONNECTOR_CONTROL_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    pub fn bearer(&self) -> anyhow::Result<Bearer> {
        Bearer::from_args(self.token.as_deref(), self.token_file.as_deref())
    }
}

/// TLS towards the control plane (an `https://` address).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// The CA certificate (PEM) the control plane's certificate chains to.
    #[arg(long, env = "CONNECTOR_CONTROL_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// Mutual TLS: this client's certificate (PEM).
    #[arg(long, env = "CONNECTOR_CONTROL_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,

    /// Mutual TLS: this client's private key (PEM).
    #[arg(long, env = "CONNECTOR_CONTROL_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    pub fn config(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        crate::tls::client(
            self.ca_cert.as_deref(),
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        )
    }
}

/// A client channel that sends the bearer token with every call.
pub(super) type Authed = InterceptedService<Channel, Bearer>;

impl ClientArgs {
    async fn channel(&self) -> anyhow::Result<Channel> {
        let unreachable = |error: String| -> anyhow::Error {
            Failure {
                exit_code: Exit::Unavailable,
                message: format!(
                    "error: cannot reach the control plane at {}: {error} (is `connector-control \
                     serve` running? set --server or CONNECTOR_CONTROL_SERVER)",
                    self.server
                ),
            }
            .into()
        };
        let mut endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = self.tls.config()? {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| unreachable(e.to_string()))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))
    }

    /// The token is read first: a missing token file is said before an
    /// unreachable server.
    async fn authed(&self) -> anyhow::Result<Authed> {
        let bearer = self.token.bearer()?;
        Ok(InterceptedService::new(self.channel().await?, bearer))
    }

    pub(super) async fn connectors(&self) -> anyhow::Result<ConnectorServiceClient<Authed>> {
        Ok(ConnectorServiceClient::new(self.authed().await?))
    }

    pub(super) async fn agents(&self) -> anyhow::Result<AgentServiceClient<Authed>> {
        Ok(AgentServiceClient::new(self.authed().await?))
    }
}

/// A call's answer printed as `render` shows it for `output`; a refused
/// call is the `Failure` it says.
pub(super) fn print_answer<M>(
    answer: Result<tonic::Response<M>, tonic::Status>,
    render: impl FnOnce(&M, Output) -> anyhow::Result<String>,
    output: Output,
) -> anyhow::Result<()> {
    let message = answer.map_err(Failure::from)?.into_inner();
    print!("{}", render(&message, output)?);
    Ok(())
}
