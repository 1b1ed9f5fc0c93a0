//! `connectors list`, `get` and `history`: reading connectors and their
//! commands.

use super::client::{ClientArgs, print_answer};
use super::failure::Failure;
use super::filters::FilterArgs;
use super::render;
use crate::proto::v1;
use clap::Args;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Connectors per page (the server caps it at 1000).
    #[arg(long, default_value_t = 50)]
    pub page_size: i32,
    /// Continue a listing: the token printed after the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Fetch every page.
    #[arg(long, conflicts_with = "page_token")]
    pub all: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The connector id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The connector id.
    pub id: String,
    /// Commands per page (the server caps it at 1000).
    #[arg(long, default_value_t = 50)]
    pub page_size: i32,
    /// Continue: the token printed after the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(super) async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut client = args.client.connectors().await?;
    let filter = args.filter.filter();
    let mut request = v1::ListConnectorsRequest {
        query: filter.query,
        region: filter.region,
        states: filter.states,
        page_size: args.page_size,
        page_token: args.page_token,
        lagging: filter.lagging,
        awaiting_restart: filter.awaiting_restart,
        server_ip: filter.server_ip,
    };
    let mut page = client
        .list_connectors(request.clone())
        .await
        .map_err(Failure::from)?
        .into_inner();
    if args.all {
        let mut all = std::mem::take(&mut page.connectors);
        while !page.next_page_token.is_empty() {
            request.page_token = std::mem::take(&mut page.next_page_token);
            page = client
                .list_connectors(request.clone())
                .await
                .map_err(Failure::from)?
                .into_inner();
            all.append(&mut page.connectors);
        }
        page.connectors = all;
    }
    print!("{}", render::connectors(&page, args.client.output)?);
    Ok(())
}

pub(super) async fn get(args: GetArgs) -> anyhow::Result<()> {
    let answer = args
        .client
        .connectors()
        .await?
        .get_connector(v1::GetConnectorRequest { id: args.id })
        .await;
    print_answer(answer, render::connector, args.client.output)
}

pub(super) async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let request = v1::ListCommandsRequest {
        connector_id: args.id,
        page_size: args.page_size,
        page_token: args.page_token,
    };
    let answer = args.client.connectors().await?.list_commands(request).await;
    print_answer(answer, render::commands, args.client.output)
}
