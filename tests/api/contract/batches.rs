//! Several changes in one transaction, and the records of batch calls.

use super::*;

pub(super) async fn several_changes_in_one_transaction_each_get_their_own_outcome<S: FleetStore>(
    store: &S,
) {
    for id in ["c1", "c2", "c3"] {
        store
            .create_connector(new_connector(id, id, ConnectorKind::IncrementalSync))
            .await
            .unwrap();
    }
    store.start_connector(&start("c2")).await.unwrap();
    let changes = [
        Change::Start(start("c1")),
        Change::Start(start("ghost")),
        Change::Start(start("c2")),
        Change::Start(start("c3")),
    ];
    let previews = store.preview_commands(&changes).await.unwrap();
    assert_eq!(previews.len(), 4);
    assert!(
        store
            .list_commands(&history("c1", None, 10))
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        store.get_connector("c3").await.unwrap().state,
        ConnectorState::Stopped,
        "a preview writes nothing"
    );

    let outcomes = store.issue_commands(&changes).await.unwrap();
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0].as_ref().unwrap().command.generation, 1);
    assert!(matches!(outcomes[1], Err(StoreError::ConnectorNotFound(_))));
    assert!(matches!(
        outcomes[2],
        Err(StoreError::Rejected(Rejection::NotStopped { .. }))
    ));
    assert_eq!(outcomes[3].as_ref().unwrap().command.connector_id, "c3");
    for (id, commands) in [("c1", 1), ("c2", 1), ("c3", 1)] {
        assert_eq!(
            store
                .list_commands(&history(id, None, 10))
                .await
                .unwrap()
                .0
                .len(),
            commands,
            "{id}"
        );
    }
    let c1 = store.get_connector("c1").await.unwrap();
    assert_eq!((c1.state, c1.generation), (ConnectorState::Starting, 1));
}

pub(super) async fn a_batch_record_keeps_its_first_selection_and_answer<S: FleetStore>(store: &S) {
    let ids = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(store.find_batch("b-1").await.unwrap(), None);
    let first = store
        .begin_batch(NewBatch {
            request_id: "b-1",
            fingerprint: "fp",
            principal: "otto",
            connector_ids: &ids,
        })
        .await
        .unwrap();
    assert_eq!(first.connector_ids, ids);
    assert_eq!(first.principal, "otto");
    assert_eq!(first.response, None);
    // A second call with the id finds the first one's record.
    let again = store
        .begin_batch(NewBatch {
            request_id: "b-1",
            fingerprint: "other",
            principal: "ada",
            connector_ids: &["z".to_owned()],
        })
        .await
        .unwrap();
    assert_eq!(again, first);
    store.finish_batch("b-1", b"answer").await.unwrap();
    let done = store.find_batch("b-1").await.unwrap().unwrap();
    assert_eq!(done.response.as_deref(), Some(&b"answer"[..]));
    assert_eq!(done.fingerprint, "fp");
}
