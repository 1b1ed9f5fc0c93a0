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
    let mut request =
        v1::ListConnectorsRequest::matching(args.filter.filter(), args.page_size, args.page_token);
    // With --all, every page's connectors in the last page's answer.
    let mut connectors = Vec::new();
    let page = loop {
        let mut page = client
            .list_connectors(request.clone())
            .await
            .map_err(Failure::from)?
            .into_inner();
        connectors.append(&mut page.connectors);
        if !args.all || page.next_page_token.is_empty() {
            page.connectors = connectors;
            break page;
        }
        request.page_token = std::mem::take(&mut page.next_page_token);
    };
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
