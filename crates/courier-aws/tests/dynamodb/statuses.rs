//! `DynamoStatuses` over a `StatusTable`: statuses read oldest first with expired ones left out
//! before TTL deletes them, views recorded once with the first time and paged by viewer,
//! `ttl` on every item, removal and account deletion leaving nothing of the poster's.

use crate::support;
use chrono::{Duration, TimeZone, Utc};
use courier_aws::dynamo::{DynamoSettings, DynamoStatuses};
use courier_core::ports::{SettingsStore, Status, StatusStore};
use courier_core::usecases::device_messages::new_ids;
use courier_core::{DeviceId, UserId};

async fn store() -> (DynamoStatuses, aws_sdk_dynamodb::Client, String) {
    let client = support::client();
    let table = support::create_table(&client, "StatusTable").await;
    (DynamoStatuses::new(client.clone(), &table), client, table)
}

fn status(user: &UserId, at: chrono::DateTime<Utc>, lives: Duration, payload: &str) -> Status {
    Status {
        user_id: user.clone(),
        status_id: new_ids(at, 1).remove(0),
        device_id: DeviceId::from_trusted("d_1"),
        payload: payload.to_owned(),
        attachments: vec!["m_1".into(), "m_2".into()],
        posted_at: at,
        expires_at: at + lives,
    }
}

#[tokio::test]
async fn live_statuses_come_oldest_first_without_expired_ones_and_page_after_an_id() {
    let (s, client, table) = store().await;
    let (a, b) = (UserId::generate(), UserId::generate());
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
    let old = status(&a, t0, Duration::seconds(10), "old");
    let first = status(&a, t0 + Duration::seconds(1), Duration::hours(24), "first");
    let second = status(&a, t0 + Duration::seconds(2), Duration::hours(24), "second");
    for st in [&second, &old, &first] {
        s.put_status(st).await.unwrap();
    }
    s.put_status(&status(&b, t0, Duration::hours(24), "b's"))
        .await
        .unwrap();
    let now = t0 + Duration::seconds(10);
    let (live, more) = s.live_statuses(&a, now, None, 30).await.unwrap();
    assert_eq!(
        live,
        vec![first.clone(), second.clone()],
        "round trip, expired left out"
    );
    assert!(!more);
    let (page, more) = s.live_statuses(&a, now, None, 1).await.unwrap();
    assert_eq!((page, more), (vec![first.clone()], true));
    let (page, more) = s
        .live_statuses(&a, now, Some(&first.status_id), 1)
        .await
        .unwrap();
    assert_eq!((page, more), (vec![second.clone()], false));
    assert_eq!(
        s.status(&a, &first.status_id, now).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.status(&a, &old.status_id, now).await.unwrap(), None);
    assert_eq!(s.status(&b, &first.status_id, now).await.unwrap(), None);
    // Every item carries the expiry for DynamoDB TTL (epoch seconds).
    let items = support::scan(&client, &table).await;
    let item = items
        .iter()
        .find(|i| support::s(i, "sk") == format!("STATUS#{}", old.status_id))
        .unwrap();
    assert_eq!(
        item["ttl"].as_n().unwrap(),
        &(t0 + Duration::seconds(10)).timestamp().to_string()
    );
}

#[tokio::test]
async fn views_keep_the_first_time_page_by_viewer_and_go_with_their_status() {
    let (s, client, table) = store().await;
    let a = UserId::generate();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
    let st = status(&a, t0, Duration::hours(24), "x");
    let other = status(&a, t0 + Duration::seconds(1), Duration::hours(24), "y");
    s.put_status(&st).await.unwrap();
    s.put_status(&other).await.unwrap();
    let mut viewers: Vec<UserId> = (0..5).map(|_| UserId::generate()).collect();
    viewers.sort();
    for v in &viewers {
        s.record_views(&a, &[st.clone(), other.clone()], v, t0)
            .await
            .unwrap();
    }
    s.record_views(
        &a,
        std::slice::from_ref(&st),
        &viewers[0],
        t0 + Duration::minutes(5),
    )
    .await
    .unwrap();
    let (page, more) = s.viewers(&a, &st.status_id, None, 3).await.unwrap();
    assert!(more);
    assert_eq!(
        page.iter().map(|v| v.viewer.clone()).collect::<Vec<_>>(),
        viewers[..3]
    );
    assert!(
        page.iter().all(|v| v.viewed_at == t0),
        "the first view's time"
    );
    let (rest, more) = s
        .viewers(&a, &st.status_id, Some(&viewers[2]), 3)
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(
        rest.iter().map(|v| v.viewer.clone()).collect::<Vec<_>>(),
        viewers[3..]
    );
    let items = support::scan(&client, &table).await;
    assert!(
        items.iter().all(|i| i.contains_key("ttl")),
        "views expire with their status"
    );

    s.remove_status(&a, &st.status_id).await.unwrap();
    assert_eq!(s.status(&a, &st.status_id, t0).await.unwrap(), None);
    assert!(
        s.viewers(&a, &st.status_id, None, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        s.viewers(&a, &other.status_id, None, 10)
            .await
            .unwrap()
            .0
            .len(),
        5
    );
}

#[tokio::test]
async fn deleting_a_users_statuses_leaves_only_others() {
    let (s, client, table) = store().await;
    let (a, b) = (UserId::generate(), UserId::generate());
    let t0 = Utc::now();
    for i in 0..30 {
        let st = status(&a, t0 + Duration::milliseconds(i), Duration::hours(24), "x");
        s.put_status(&st).await.unwrap();
        s.record_views(&a, std::slice::from_ref(&st), &b, t0)
            .await
            .unwrap();
    }
    s.put_status(&status(&b, t0, Duration::hours(24), "b"))
        .await
        .unwrap();
    s.delete_statuses(&a).await.unwrap();
    let left = support::scan(&client, &table).await;
    assert_eq!(left.len(), 1);
    assert_eq!(support::s(&left[0], "pk"), b.to_string());
}

#[tokio::test]
async fn contacts_lists_every_contact_of_one_owner() {
    let client = support::client();
    let table = support::create_table(&client, "UsersTable").await;
    let s = DynamoSettings::new(client, table);
    let (a, b) = (UserId::generate(), UserId::generate());
    let mut many: Vec<UserId> = (0..40).map(|_| UserId::generate()).collect();
    s.update_contacts(&a, &many, &[], Utc::now()).await.unwrap();
    s.update_contacts(&b, std::slice::from_ref(&a), &[], Utc::now())
        .await
        .unwrap();
    let mut got = s.contacts(&a).await.unwrap();
    got.sort();
    many.sort();
    assert_eq!(got, many);
    assert!(s.contacts(&many[0]).await.unwrap().is_empty());
}
