use crate::helpers::*;
use connector_control::proto::v1;
use tonic::Code;

fn search(query: &str) -> v1::ListConnectorsRequest {
    v1::ListConnectorsRequest {
        query: query.to_owned(),
        ..Default::default()
    }
}

fn ids(response: &v1::ListConnectorsResponse) -> Vec<&str> {
    response.connectors.iter().map(|c| c.id.as_str()).collect()
}

/// Three connectors in two projects; c3 has been reported on 10.0.1.17.
async fn small_fleet(app: &TestApp) {
    app.create(connector("c1", "Orders to Warehouse")).await;
    let mut payments = connector("c2", "payments-stream");
    payments.project_id = "proj-pay".to_owned();
    payments.project_name = "Payments CDC".to_owned();
    app.create(payments).await;
    let mut audit = connector("c3", "audit log");
    audit.project_id = "proj-audit".to_owned();
    audit.project_name = "Audit".to_owned();
    app.create(audit).await;
    app.sql("UPDATE connectors SET server_ip = '10.0.1.17' WHERE id = 'c3'")
        .await;
}

#[tokio::test]
async fn list_orders_by_name_then_id_and_pages_through_everything() {
    let app = spawn_app().await;
    for (id, name) in [
        ("k5", "delta"),
        ("k2", "alpha"),
        ("k7", "charlie"),
        ("k1", "bravo"),
        ("k3", "alpha"),
        ("k6", "echo"),
        ("k4", "Alpha"),
    ] {
        app.create(connector(id, name)).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .list(v1::ListConnectorsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page.total_size, 7);
        assert!(page.connectors.len() <= 3);
        seen.extend(
            page.connectors
                .iter()
                .map(|c| (c.name.clone(), c.id.clone())),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let names: Vec<_> = seen.iter().map(|(n, i)| format!("{n}/{i}")).collect();
    assert_eq!(
        names,
        [
            "Alpha/k4",
            "alpha/k2",
            "alpha/k3",
            "bravo/k1",
            "charlie/k7",
            "delta/k5",
            "echo/k6"
        ]
    );
}

#[tokio::test]
async fn pages_stay_consistent_when_connectors_are_added_between_them() {
    let app = spawn_app().await;
    for id in ["b", "d", "f"] {
        app.create(connector(id, id)).await;
    }
    let first = app
        .list(v1::ListConnectorsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&first), ["b", "d"]);
    // Added before the cursor: not repeated; after it: included.
    app.create(connector("a", "a")).await;
    app.create(connector("e", "e")).await;
    let second = app
        .list(v1::ListConnectorsRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&second), ["e", "f"]);
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn search_matches_name_and_project_name_substrings_case_insensitively() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    assert_eq!(ids(&app.list(search("WAREHOUSE")).await.unwrap()), ["c1"]);
    assert_eq!(ids(&app.list(search("ments-str")).await.unwrap()), ["c2"]);
    assert_eq!(ids(&app.list(search("cdc")).await.unwrap()), ["c2"]);
    assert_eq!(ids(&app.list(search("  audit ")).await.unwrap()), ["c3"]);
    let none = app.list(search("nothing-like-this")).await.unwrap();
    assert!(none.connectors.is_empty());
    assert_eq!(none.total_size, 0);
    assert!(none.next_page_token.is_empty());
}

#[tokio::test]
async fn search_matches_connector_and_project_ids_exactly_or_by_prefix() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    assert_eq!(ids(&app.list(search("c2")).await.unwrap()), ["c2"]);
    assert_eq!(ids(&app.list(search("C")).await.unwrap()).len(), 3);
    assert_eq!(ids(&app.list(search("proj-pa")).await.unwrap()), ["c2"]);
    assert_eq!(ids(&app.list(search("PROJ-AUDIT")).await.unwrap()), ["c3"]);
    // Ids match by prefix only, not in the middle.
    assert!(
        app.list(search("roj-pay"))
            .await
            .unwrap()
            .connectors
            .is_empty()
    );
}

#[tokio::test]
async fn search_matches_server_ips_exactly_or_by_prefix() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    assert_eq!(ids(&app.list(search("10.0.1.17")).await.unwrap()), ["c3"]);
    assert_eq!(ids(&app.list(search("10.0.1.")).await.unwrap()), ["c3"]);
    assert!(
        app.list(search("0.1.17"))
            .await
            .unwrap()
            .connectors
            .is_empty()
    );
    assert!(
        app.list(search("10.0.1.18"))
            .await
            .unwrap()
            .connectors
            .is_empty()
    );
}

#[tokio::test]
async fn search_treats_like_wildcards_literally() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    app.create(connector("pct", "100% done_ok")).await;
    assert!(app.list(search("%")).await.unwrap().connectors.len() == 1);
    assert_eq!(ids(&app.list(search("0% d")).await.unwrap()), ["pct"]);
    assert_eq!(ids(&app.list(search("e_o")).await.unwrap()), ["pct"]);
    assert!(app.list(search("c_")).await.unwrap().connectors.is_empty());
}

#[tokio::test]
async fn region_and_state_filters_combine_with_the_query() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    let mut us = connector("c4", "orders us");
    us.destination.as_mut().unwrap().region = "us-1".to_owned();
    app.create(us).await;
    app.observe("c1", "RUNNING").await;
    app.observe("c2", "FAILED").await;

    let in_region = |region: &str| v1::ListConnectorsRequest {
        region: region.to_owned(),
        ..Default::default()
    };
    assert_eq!(ids(&app.list(in_region("us-1")).await.unwrap()), ["c4"]);
    assert_eq!(app.list(in_region("eu-2")).await.unwrap().total_size, 3);
    assert_eq!(app.list(in_region("ap-9")).await.unwrap().total_size, 0);

    let running_or_failed = v1::ListConnectorsRequest {
        states: vec![
            v1::ConnectorState::Running as i32,
            v1::ConnectorState::Failed as i32,
            v1::ConnectorState::Running as i32,
        ],
        ..Default::default()
    };
    assert_eq!(
        ids(&app.list(running_or_failed).await.unwrap()),
        ["c1", "c2"]
    );

    let combined = v1::ListConnectorsRequest {
        query: "orders".to_owned(),
        region: "eu-2".to_owned(),
        states: vec![v1::ConnectorState::Running as i32],
        ..Default::default()
    };
    let page = app.list(combined).await.unwrap();
    assert_eq!(ids(&page), ["c1"]);
    assert_eq!(page.total_size, 1);
}

/// Inserts connectors bulk-FROM..=TO in one statement, to keep tests quick.
async fn bulk_insert(app: &TestApp, from: u32, to: u32) {
    app.sql(&format!(
        "INSERT INTO connectors (id, name, project_id, project_name, name_folded, project_name_folded, kind,
            source_type, source_region, source_address,
            destination_type, destination_region, destination_address,
            region, state, desired_state)
         SELECT 'bulk-' || lpad(n::text, 5, '0'), 'bulk ' || lpad(n::text, 5, '0'), 'p', 'P',
                'bulk ' || lpad(n::text, 5, '0'), 'p', 'FULL_MIGRATION', 'MYSQL', 'eu-1', 'h:1', 'MYSQL', 'eu-2', 'h:2',
                'eu-2', 'STOPPED', 'STOPPED'
         FROM generate_series({from}, {to}) AS n"
    ))
    .await;
}

#[tokio::test]
async fn total_size_is_exact_up_to_ten_thousand_and_estimated_beyond() {
    let app = spawn_app().await;
    bulk_insert(&app, 1, 10_000).await;
    let all = v1::ListConnectorsRequest {
        query: "bulk".to_owned(),
        page_size: 1,
        ..Default::default()
    };
    assert_eq!(app.list(all.clone()).await.unwrap().total_size, 10_000);
    bulk_insert(&app, 10_001, 12_000).await;
    app.sql("ANALYZE connectors").await;
    let estimated = app.list(all).await.unwrap().total_size;
    assert!(
        (10_001..=14_400).contains(&estimated),
        "estimate {estimated} for 12000 matches"
    );
}

#[tokio::test]
async fn page_size_zero_means_fifty_and_large_sizes_are_capped_at_a_thousand() {
    let app = spawn_app().await;
    bulk_insert(&app, 1, 1005).await;
    let default = app
        .list(v1::ListConnectorsRequest::default())
        .await
        .unwrap();
    assert_eq!(default.connectors.len(), 50);
    assert_eq!(default.total_size, 1005);
    let capped = app
        .list(v1::ListConnectorsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(capped.connectors.len(), 1000);
    let rest = app
        .list(v1::ListConnectorsRequest {
            page_size: 5000,
            page_token: capped.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(&rest),
        [
            "bulk-01001",
            "bulk-01002",
            "bulk-01003",
            "bulk-01004",
            "bulk-01005"
        ]
    );
}

#[tokio::test]
async fn a_negative_page_size_is_invalid_argument() {
    let app = spawn_app().await;
    let status = assert_error(
        app.list(v1::ListConnectorsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn unknown_and_unspecified_state_filters_are_invalid_argument() {
    let app = spawn_app().await;
    let status = assert_error(
        app.list(v1::ListConnectorsRequest {
            states: vec![v1::ConnectorState::Running as i32, 99, 0],
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["states[1]", "states[2]"]);
    assert!(status.message().contains("CONNECTOR_STATE_RUNNING"));
}

#[tokio::test]
async fn oversized_queries_and_malformed_regions_are_invalid_argument() {
    let app = spawn_app().await;
    let status = assert_error(
        app.list(v1::ListConnectorsRequest {
            query: "q".repeat(201),
            region: "Eu 1".to_owned(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["query", "region"]);
}

#[tokio::test]
async fn a_forged_page_token_is_rejected() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    let page = app
        .list(v1::ListConnectorsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let token = page.next_page_token;
    assert!(!token.is_empty());
    let mut forged = token.clone().into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(forged).unwrap(),
        "garbage!".to_owned(),
        token[..10].to_owned(),
    ] {
        let status = assert_error(
            app.list(v1::ListConnectorsRequest {
                page_size: 1,
                page_token: bad,
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
        );
        assert_eq!(violated_fields(&status), ["page_token"]);
    }
}

#[tokio::test]
async fn a_page_token_from_another_search_is_rejected() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    let page = app
        .list(v1::ListConnectorsRequest {
            query: "c".to_owned(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let status = assert_error(
        app.list(v1::ListConnectorsRequest {
            query: "c".to_owned(),
            region: "eu-2".to_owned(),
            page_size: 1,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    assert!(
        status.message().contains("first page"),
        "{}",
        status.message()
    );
    // The same search with another page size is fine.
    let next = app
        .list(v1::ListConnectorsRequest {
            query: "c".to_owned(),
            page_size: 10,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.connectors.len(), 2);
}

#[tokio::test]
async fn search_folds_case_beyond_ascii() {
    let app = spawn_app().await;
    let mut apples = connector("c1", "Äpfel Bestellungen");
    apples.project_name = "ÉCOLE Données".to_owned();
    app.create(apples).await;
    app.create(connector("c2", "apfel")).await;
    assert_eq!(ids(&app.list(search("äpfel")).await.unwrap()), ["c1"]);
    assert_eq!(ids(&app.list(search("ÄPFEL")).await.unwrap()), ["c1"]);
    assert_eq!(ids(&app.list(search("école")).await.unwrap()), ["c1"]);
}

#[tokio::test]
async fn a_page_token_accepts_the_same_search_written_differently() {
    let app = spawn_app().await;
    small_fleet(&app).await;
    let first = app
        .list(v1::ListConnectorsRequest {
            query: "c".to_owned(),
            states: vec![
                v1::ConnectorState::Stopped as i32,
                v1::ConnectorState::Running as i32,
            ],
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let same = v1::ListConnectorsRequest {
        query: " c ".to_owned(),
        states: vec![
            v1::ConnectorState::Running as i32,
            v1::ConnectorState::Stopped as i32,
            v1::ConnectorState::Running as i32,
        ],
        page_size: 1,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    };
    assert_eq!(ids(&app.list(same).await.unwrap()), ["c3"]);
    let other_states = v1::ListConnectorsRequest {
        query: "c".to_owned(),
        states: vec![v1::ConnectorState::Stopped as i32],
        page_size: 1,
        page_token: first.next_page_token,
        ..Default::default()
    };
    assert_error(
        app.list(other_states).await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
}
