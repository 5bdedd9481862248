//! `DynamoMedia` over a `MediaTable`: upload records round-trip, ids are never reused, and
//! references are recorded once per place however often they are added.

use crate::support;
use chrono::{TimeZone, Utc};
use courier_aws::dynamo::DynamoMedia;
use courier_core::error::PortError;
use courier_core::media::{MediaId, MediaRef, MediaStore, MediaUpload};
use courier_core::{SessionId, UserId};

async fn store() -> DynamoMedia {
    let client = support::client();
    let table = support::create_table(&client, "MediaTable").await;
    DynamoMedia::new(client, &table)
}

fn upload() -> MediaUpload {
    MediaUpload {
        media_id: MediaId::generate(),
        uploader: UserId::generate(),
        size: 16 * 1024 * 1024,
        content_type: "video/mp4".into(),
        created_at: Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap(),
    }
}

#[tokio::test]
async fn uploads_round_trip_and_an_id_is_never_reused() {
    let m = store().await;
    let u = upload();
    assert_eq!(m.get(&u.media_id).await.unwrap(), None);
    m.create(&u).await.unwrap();
    assert_eq!(m.get(&u.media_id).await.unwrap(), Some(u.clone()));
    let mut again = upload();
    again.media_id = u.media_id.clone();
    assert!(matches!(m.create(&again).await, Err(PortError::Conflict)));
    assert_eq!(m.get(&u.media_id).await.unwrap(), Some(u));
}

#[tokio::test]
async fn references_are_recorded_once_per_place() {
    let m = store().await;
    let u = upload();
    m.create(&u).await.unwrap();
    assert!(m.refs(&u.media_id).await.unwrap().is_empty());
    let a = MediaRef::Session {
        session: SessionId::from_trusted("s_0123456789abcdef0123456789abcdef"),
        seq: Some(3),
    };
    // Two messages of one session are two places (each names its message).
    let b = MediaRef::Session {
        session: SessionId::from_trusted("g_abc"),
        seq: Some(1),
    };
    let c = MediaRef::Session {
        session: SessionId::from_trusted("g_abc"),
        seq: Some(2),
    };
    for place in [&a, &b, &a, &c] {
        m.add_ref(&u.media_id, place, None).await.unwrap();
    }
    let mut refs = m.refs(&u.media_id).await.unwrap();
    refs.sort();
    let mut want = vec![a, b, c];
    want.sort();
    assert_eq!(refs, want);
    // Another media's references are its own.
    assert!(m.refs(&MediaId::generate()).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_upload_record_expires_until_something_refers_to_it() {
    use courier_core::media::UNATTACHED_RECORD_SECS;
    let client = support::client();
    let table = support::create_table(&client, "MediaTable").await;
    let m = DynamoMedia::new(client.clone(), &table);
    // Handed out now: with a `ttl` in the past DynamoDB Local may already have removed it.
    let now = Utc::now();
    let (mut kept, mut dropped) = (upload(), upload());
    kept.created_at = now;
    dropped.created_at = now;
    m.create(&kept).await.unwrap();
    m.create(&dropped).await.unwrap();
    let ttl_of = |items: &[support::Item], id: &MediaId| {
        let item = items
            .iter()
            .find(|i| {
                support::s(i, "pk") == format!("MEDIA#{id}") && support::s(i, "sk") == "UPLOAD"
            })
            .expect("the upload record");
        item.contains_key("ttl").then(|| support::n(item, "ttl"))
    };
    let items = support::scan(&client, &table).await;
    // DynamoDB TTL (the template's MediaTable TimeToLiveSpecification) removes it after two days.
    let expiry = kept.created_at.timestamp() + UNATTACHED_RECORD_SECS;
    assert_eq!(ttl_of(&items, &kept.media_id), Some(expiry));
    assert_eq!(ttl_of(&items, &dropped.media_id), Some(expiry));

    let place = MediaRef::Session {
        session: SessionId::from_trusted("g_abc"),
        seq: Some(1),
    };
    m.add_ref(&kept.media_id, &place, None).await.unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(ttl_of(&items, &kept.media_id), None, "attached: kept");
    assert_eq!(ttl_of(&items, &dropped.media_id), Some(expiry));
    assert_eq!(m.get(&kept.media_id).await.unwrap(), Some(kept));
}

#[tokio::test]
async fn a_status_keeps_an_upload_record_until_it_expires_and_a_message_keeps_it_for_good() {
    let client = support::client();
    let table = support::create_table(&client, "MediaTable").await;
    let m = DynamoMedia::new(client.clone(), &table);
    let now = Utc::now();
    let mut u = upload();
    u.created_at = now;
    m.create(&u).await.unwrap();
    let id = u.media_id.clone();
    let ttl_of = |items: &[support::Item], sk: &str| {
        let item = items
            .iter()
            .find(|i| support::s(i, "pk") == format!("MEDIA#{id}") && support::s(i, "sk") == sk)
            .unwrap_or_else(|| panic!("item {sk}"));
        item.contains_key("ttl").then(|| support::n(item, "ttl"))
    };
    let status = |n: u32| MediaRef::Status {
        poster: UserId::from_trusted("u_poster"),
        status_id: format!("st_{n}"),
    };
    let unattached = now.timestamp() + courier_core::media::UNATTACHED_RECORD_SECS;

    // A status expiring later than the record would go: the record waits for it, and the
    // reference itself goes then too.
    let later = now + chrono::Duration::days(3);
    m.add_ref(&id, &status(1), Some(later)).await.unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(ttl_of(&items, "UPLOAD"), Some(later.timestamp()));
    assert_eq!(
        ttl_of(&items, &format!("REF#{}", status(1).key())),
        Some(later.timestamp())
    );
    // A status expiring sooner never brings the record's end forward.
    m.add_ref(&id, &status(2), Some(now)).await.unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(ttl_of(&items, "UPLOAD"), Some(later.timestamp()));
    assert!(later.timestamp() > unattached);

    // A message: kept for good; a status after it changes nothing.
    let message = MediaRef::Session {
        session: SessionId::from_trusted("g_abc"),
        seq: Some(1),
    };
    m.add_ref(&id, &message, None).await.unwrap();
    m.add_ref(&id, &status(3), Some(later + chrono::Duration::days(1)))
        .await
        .unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(ttl_of(&items, "UPLOAD"), None, "a message keeps it");
    assert_eq!(ttl_of(&items, &format!("REF#{}", message.key())), None);
    let mut refs = m.refs(&id).await.unwrap();
    refs.sort();
    let mut want = vec![status(1), status(2), status(3), message];
    want.sort();
    assert_eq!(refs, want);
    // A reference to media whose record is gone is harmless.
    m.add_ref(&MediaId::generate(), &status(4), Some(later))
        .await
        .unwrap();
}
