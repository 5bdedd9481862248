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
        m.add_ref(&u.media_id, place).await.unwrap();
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
    m.add_ref(&kept.media_id, &place).await.unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(ttl_of(&items, &kept.media_id), None, "attached: kept");
    assert_eq!(ttl_of(&items, &dropped.media_id), Some(expiry));
    assert_eq!(m.get(&kept.media_id).await.unwrap(), Some(kept));
}
