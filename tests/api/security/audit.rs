//! The audit trail, and floods of refused calls.

use super::*;

#[tokio::test]
async fn the_audit_trail_names_who_did_what_from_where_allowed_or_not() {
    let (app, _dir) = secured().await;
    let channel = app.channel().await;
    let mut client = ConnectorServiceClient::new(channel.clone());
    create_as_admin(&client, "c1").await;
    client
        .start_connector(with_token(
            v1::StartConnectorRequest {
                request_id: "inc-7-start".into(),
                ..start_request("c1")
            },
            Some(OPERATOR),
        ))
        .await
        .unwrap();
    // Refused: not allowed, then not in a state to start.
    client
        .pause_connector(with_token(pause_request("c1"), Some(VIEWER)))
        .await
        .unwrap_err();
    client
        .start_connector(with_token(start_request("c1"), Some(OPERATOR)))
        .await
        .unwrap_err();
    let agent = connect_as(&channel, Some(AGENT), hello("a1", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    drop(agent);
    let audit = AuditServiceClient::new(channel.clone());
    let list = |request: v1::ListAuditEventsRequest| {
        let mut audit = audit.clone();
        async move {
            audit
                .list_audit_events(with_token(request, Some(VIEWER)))
                .await
                .map(|r| r.into_inner())
        }
    };
    // The session end is written when the server notices the stream closed.
    eventually(Duration::from_secs(10), || async {
        let events = list(v1::ListAuditEventsRequest::default())
            .await
            .unwrap()
            .events;
        events
            .iter()
            .any(|e| e.action == "AGENT_SESSION_END")
            .then_some(())
    })
    .await;
    connect_as(&channel, Some(AGENT), hello("a1", "eu-1", "10.0.2.7"))
        .await
        .unwrap_err();
    let events = list(v1::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .events;
    let summary: Vec<(String, String, String, String)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e.action.clone(),
                e.principal.clone(),
                e.outcome.clone(),
                e.reason.clone(),
            )
        })
        .collect();
    let row = |a: &str, p: &str, o: &str, r: &str| {
        (a.to_owned(), p.to_owned(), o.to_owned(), r.to_owned())
    };
    assert_eq!(
        summary,
        [
            row("CREATE_CONNECTOR", "ada", "OK", ""),
            row("START_CONNECTOR", "otto", "OK", ""),
            row(
                "PAUSE_CONNECTOR",
                "vera",
                "PERMISSION_DENIED",
                "PERMISSION_DENIED"
            ),
            row(
                "START_CONNECTOR",
                "otto",
                "FAILED_PRECONDITION",
                "CONNECTOR_NOT_STOPPED"
            ),
            row("AGENT_SESSION_START", "agent-eu-2", "OK", ""),
            row(
                "AGENT_SESSION_END",
                "agent-eu-2",
                "OK",
                "AGENT_DISCONNECTED"
            ),
            row(
                "AGENT_SESSION_START",
                "agent-eu-2",
                "PERMISSION_DENIED",
                "PERMISSION_DENIED"
            ),
        ]
    );
    let started = &events[events.len() - 2];
    assert_eq!(started.request_id, "inc-7-start");
    assert!(started.peer.starts_with("127.0.0.1:"), "{started:?}");
    assert!(started.detail.starts_with("command "), "{started:?}");

    // One connector, two per page, oldest last.
    let first = list(v1::ListAuditEventsRequest {
        connector_id: "c1".into(),
        page_size: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(first.events.len(), 2);
    let second = list(v1::ListAuditEventsRequest {
        connector_id: "c1".into(),
        page_size: 2,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(second.events.len(), 2);
    assert_eq!(second.events[1].action, "CREATE_CONNECTOR");
    assert!(second.next_page_token.is_empty());
    let by_vera = list(v1::ListAuditEventsRequest {
        principal: "vera".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(by_vera.events.len(), 1);

    let bad = list(v1::ListAuditEventsRequest {
        page_token: "garbage".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(error_info(&bad).reason, "INVALID_PAGE_TOKEN");
    let bad = list(v1::ListAuditEventsRequest {
        page_size: -1,
        start_time: Some(timestamp(chrono::Utc::now())),
        end_time: Some(timestamp(chrono::Utc::now() - chrono::Duration::hours(1))),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["end_time", "page_size"]);
    // Over the most a page holds is lowered, as for every list (AIP-158).
    let lowered = list(v1::ListAuditEventsRequest {
        page_size: 100_000,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!lowered.events.is_empty());
}

#[tokio::test]
async fn a_flood_of_refused_calls_stays_bounded_and_hides_no_real_event() {
    use crate::observability::{sample, scrape};
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let path = auth_file(&dir, "");
    let mut server = ServerProcess::spawn_with(
        &db.url,
        &[
            "--auth-file",
            path.to_str().unwrap(),
            // One window for the whole flood: its refusals are one event
            // now and one, with the count, when the server stops.
            "--refusal-window",
            "1h",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = server.metrics_addr();
    let channel = channel_to(&server.addr).await;
    let client = ConnectorServiceClient::new(channel.clone());
    create_as_admin(&client, "c1").await;
    const FLOOD: usize = 2_000;
    let flood = |token: &'static str| {
        (0..16)
            .map(|caller| {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in (caller..FLOOD).step_by(16) {
                        let status = client
                            .clone()
                            .pause_connector(with_token(
                                pause_request(&format!("c{i}")),
                                Some(token),
                            ))
                            .await
                            .unwrap_err();
                        assert!(
                            matches!(
                                status.code(),
                                Code::PermissionDenied | Code::Unauthenticated
                            ),
                            "{status:?}"
                        );
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    // The viewer may not pause: 2,000 denied calls; and 2,000 with a token
    // nobody has. Meanwhile an operator's real start.
    let mut callers = flood(VIEWER);
    callers.extend(flood("guessed-token"));
    let started = client
        .clone()
        .start_connector(with_token(start_request("c1"), Some(OPERATOR)))
        .await
        .unwrap()
        .into_inner();
    for caller in callers {
        caller.await.unwrap();
    }
    let count = |query: &'static str| {
        let db = &db;
        async move {
            db.client()
                .await
                .query_one(query, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // The real change is recorded at once, the flood as one event so far.
    let command_id = started.command.unwrap().id;
    let real: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE principal = 'otto'
             AND action = 'START_CONNECTOR' AND outcome = 'OK' AND detail LIKE '%' || $1",
            &[&command_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(real, 1);
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE principal = 'vera'").await,
        1
    );
    // Unauthenticated calls: counted by peer, logged once.
    let body = scrape(&metrics).await;
    assert_eq!(
        sample(
            &body,
            "connector_control_unauthenticated_calls_total",
            &["peer=\"127.0.0.1\"", "reason=\"unknown_token\""]
        ),
        Some(FLOOD as f64),
        "{body}"
    );
    let lines = server.count_logged("unauthenticated calls refused");
    assert!((1..=2).contains(&lines), "{lines} log lines for the flood");

    // Stopped: the rest of the window is one more event, with the count.
    server.signal("TERM");
    tokio::task::spawn_blocking(move || {
        server.child.wait().unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE principal = 'vera'").await,
        2
    );
    assert_eq!(
        count(
            "SELECT sum(count)::int8 FROM audit_events WHERE principal = 'vera'
               AND action = 'PAUSE_CONNECTOR' AND outcome = 'PERMISSION_DENIED'"
        )
        .await,
        FLOOD as i64
    );
}
