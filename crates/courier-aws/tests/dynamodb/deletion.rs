//! Deleting for everyone over DynamoDB Local: `DynamoMessages::erase` leaves a tombstone at the
//! message's number without its payload or attachments (and nothing else in the session moves);
//! `DynamoMedia::remove_ref` forgets one place and keeps the others.

use crate::messages::{client_msg_id, draft, fixture, id, new, now, session};
use crate::support;
use chrono::Utc;
use courier_aws::dynamo::DynamoMedia;
use courier_core::chat::MessageKind;
use courier_core::media::{MediaId, MediaRef, MediaStore, MediaUpload};
use courier_core::ports::MessageStore;
use courier_core::{SessionId, UserId};

#[tokio::test]
async fn an_erased_message_keeps_its_place_without_its_ciphertext() {
    let f = fixture().await;
    let s = session();
    let sender = UserId::generate();
    let mut with_media = draft(&sender, &client_msg_id(), "ciphertext-1");
    with_media.attachments = vec![MediaId::generate().to_string()];
    let first = new(f.store.append(&s, &with_media, now()).await.unwrap());
    let second = new(f
        .store
        .append(&s, &draft(&sender, &client_msg_id(), "ciphertext-2"), now())
        .await
        .unwrap());

    assert!(f.store.erase(&id(&s, 1)).await.unwrap());
    let gone = f.store.get(&id(&s, 1)).await.unwrap().unwrap();
    assert_eq!(gone.kind, MessageKind::Deleted);
    assert!(gone.payload.is_empty() && gone.attachments.is_empty());
    assert_eq!(
        (&gone.msg_id, gone.seq, &gone.sender, &gone.sent_at),
        (&first.msg_id, first.seq, &first.sender, &first.sent_at),
        "its place stays"
    );
    let (page, more) = f.store.after(&s, 0, 10).await.unwrap();
    assert!(!more);
    assert_eq!(
        page,
        vec![gone.clone(), second.clone()],
        "the next one is untouched"
    );
    // Erasing again changes nothing; a message that is not there is `false`, and not created.
    assert!(f.store.erase(&id(&s, 1)).await.unwrap());
    assert!(!f.store.erase(&id(&s, 9)).await.unwrap());
    assert_eq!(f.store.get(&id(&s, 9)).await.unwrap(), None);
    assert_eq!(f.store.last_seq(&s).await.unwrap(), 2);
}

#[tokio::test]
async fn removing_a_reference_forgets_that_place_only() {
    let client = support::client();
    let table = support::create_table(&client, "MediaTable").await;
    let m = DynamoMedia::new(client, &table);
    let media = MediaId::generate();
    m.create(&MediaUpload {
        media_id: media.clone(),
        uploader: UserId::generate(),
        size: 10,
        content_type: "image/jpeg".into(),
        created_at: Utc::now(),
    })
    .await
    .unwrap();
    let place = |seq| MediaRef::Session {
        session: SessionId::from_trusted("g_abc"),
        seq: Some(seq),
    };
    m.add_ref(&media, &place(1), None).await.unwrap();
    m.add_ref(&media, &place(2), None).await.unwrap();
    m.remove_ref(&media, &place(1)).await.unwrap();
    assert_eq!(m.refs(&media).await.unwrap(), vec![place(2)]);
    // Absent: nothing happens.
    m.remove_ref(&media, &place(1)).await.unwrap();
    assert_eq!(m.refs(&media).await.unwrap(), vec![place(2)]);
}
