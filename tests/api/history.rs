//! ListCommands: a connector's commands, newest first, with who asked.

use crate::helpers::*;
use connector_control::proto::v1;
use tonic::Code;

async fn list(
    app: &TestApp,
    connector_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<v1::ListCommandsResponse, tonic::Status> {
    app.client
        .clone()
        .list_commands(v1::ListCommandsRequest {
            connector_id: connector_id.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_connectors_history_lists_its_commands_newest_first_in_pages() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.create(connector("c2", "billing")).await;
    app.start(v1::StartConnectorRequest {
        request_id: "r-1".to_owned(),
        ..start_request("c1")
    })
    .await
    .unwrap();
    app.pause(v1::PauseConnectorRequest {
        reason: "INC-4 latency".to_owned(),
        ..pause_request("c1")
    })
    .await
    .unwrap();
    app.start(start_request("c2")).await.unwrap();

    let first = list(&app, "c1", 1, "").await.unwrap();
    assert_eq!(first.commands.len(), 1);
    let pause = &first.commands[0];
    assert_eq!(pause.kind, v1::CommandKind::Pause as i32);
    assert_eq!(pause.generation, 2);
    assert_eq!(pause.reason, "INC-4 latency");
    assert_eq!(pause.principal, "anonymous");
    assert_eq!(pause.status, v1::CommandStatus::Pending as i32);
    assert!(!first.next_page_token.is_empty());

    let second = list(&app, "c1", 1, &first.next_page_token).await.unwrap();
    assert_eq!(second.commands.len(), 1);
    let start = &second.commands[0];
    assert_eq!((start.generation, start.request_id.as_str()), (1, "r-1"));
    assert_eq!(start.status, v1::CommandStatus::Superseded as i32);
    assert!(second.next_page_token.is_empty(), "the last page");

    let all = list(&app, "c1", 0, "").await.unwrap();
    assert_eq!(all.commands.len(), 2);
    assert!(all.commands.iter().all(|c| c.connector_id == "c1"));
}

#[tokio::test]
async fn history_refuses_what_it_cannot_answer() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.create(connector("c2", "billing")).await;
    for id in ["c1", "c2"] {
        app.start(start_request(id)).await.unwrap();
        app.pause(pause_request(id)).await.unwrap();
    }
    let empty = list(&app, "c1", 0, "").await.unwrap();
    assert_eq!(empty.commands.len(), 2);

    assert_error(
        list(&app, "ghost", 0, "").await,
        Code::NotFound,
        "CONNECTOR_NOT_FOUND",
    );
    let status = assert_error(
        list(&app, "bad id!", -1, "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["connector_id", "page_size"]);
    let c2_token = list(&app, "c2", 1, "").await.unwrap().next_page_token;
    let status = assert_error(
        list(&app, "c1", 1, &c2_token).await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    assert!(
        status.message().contains("another connector"),
        "{}",
        status.message()
    );
    assert_error(
        list(&app, "c1", 1, "garbage").await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
}
