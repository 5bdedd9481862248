//! `DynamoSettings` over a `UsersTable` and last seen on `DynamoConnections`: settings round-trip
//! with defaults for users who never set any, contacts are single items found by one lookup,
//! and account deletion leaves nothing of them.

use crate::support;
use chrono::{TimeZone, Utc};
use courier_aws::dynamo::{DynamoConnections, DynamoSettings};
use courier_core::UserId;
use courier_core::ports::{
    ActivityStore, ConnectionStore, FirstActivity, LastSeenStore, SettingsStore,
};
use courier_core::settings::{Audience, GroupsAdd, Settings};

async fn store() -> (DynamoSettings, aws_sdk_dynamodb::Client, String) {
    let client = support::client();
    let table = support::create_table(&client, "UsersTable").await;
    (DynamoSettings::new(client.clone(), &table), client, table)
}

#[tokio::test]
async fn settings_round_trip_and_batch_read_leaves_out_users_without_any() {
    let (s, _, _) = store().await;
    let (a, b, c) = (UserId::generate(), UserId::generate(), UserId::generate());
    assert_eq!(s.settings(&a).await.unwrap(), None);
    let mut mine = Settings::default();
    mine.display.name = Some("Alice".into());
    mine.display.about = Some("é ✓".into());
    mine.privacy.last_seen = Audience::Nobody;
    mine.privacy.read_receipts = false;
    mine.privacy.groups_add = GroupsAdd::Contacts;
    s.put_settings(&a, &mine).await.unwrap();
    s.put_settings(&b, &Settings::default()).await.unwrap();
    assert_eq!(s.settings(&a).await.unwrap(), Some(mine.clone()));
    let many = s
        .settings_of(&[a.clone(), b.clone(), c.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[&a], mine);
    assert_eq!(many[&b], Settings::default());
    assert!(!many.contains_key(&c));
}

#[tokio::test]
async fn contacts_are_items_counted_and_looked_up_one_by_one() {
    let (s, _, _) = store().await;
    let (a, b, c) = (UserId::generate(), UserId::generate(), UserId::generate());
    let at = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
    let many: Vec<UserId> = (0..60).map(|_| UserId::generate()).collect();
    s.update_contacts(&a, &many, &[], at).await.unwrap();
    s.update_contacts(&a, &[b.clone(), b.clone()], &[], at)
        .await
        .unwrap();
    assert_eq!(s.contact_count(&a).await.unwrap(), 61);
    assert!(s.is_contact(&a, &b).await.unwrap());
    assert!(!s.is_contact(&b, &a).await.unwrap(), "contacts are one-way");
    assert!(!s.is_contact(&a, &c).await.unwrap());
    s.update_contacts(
        &a,
        std::slice::from_ref(&c),
        &[b.clone(), many[0].clone()],
        at,
    )
    .await
    .unwrap();
    assert_eq!(s.contact_count(&a).await.unwrap(), 60);
    assert!(!s.is_contact(&a, &b).await.unwrap());
    assert!(s.is_contact(&a, &c).await.unwrap());
}

#[tokio::test]
async fn delete_settings_removes_settings_and_contacts_only_of_that_user() {
    let (s, client, table) = store().await;
    let (a, b) = (UserId::generate(), UserId::generate());
    let at = Utc::now();
    s.put_settings(&a, &Settings::default()).await.unwrap();
    s.put_settings(&b, &Settings::default()).await.unwrap();
    let many: Vec<UserId> = (0..30).map(|_| UserId::generate()).collect();
    s.update_contacts(&a, &many, &[], at).await.unwrap();
    s.update_contacts(&b, std::slice::from_ref(&a), &[], at)
        .await
        .unwrap();
    s.delete_settings(&a).await.unwrap();
    assert_eq!(s.settings(&a).await.unwrap(), None);
    assert_eq!(s.contact_count(&a).await.unwrap(), 0);
    let left = support::scan(&client, &table).await;
    assert!(
        left.iter()
            .all(|i| support::s(i, "pk") != format!("USER#{a}")),
        "nothing of a is left"
    );
    assert!(s.settings(&b).await.unwrap().is_some());
    assert!(
        s.is_contact(&b, &a).await.unwrap(),
        "others' lists are theirs"
    );
}

#[tokio::test]
async fn last_seen_is_recorded_on_presence_and_not_after_the_presence_is_forgotten() {
    let client = support::client();
    let table = support::create_table(&client, "ConnectionsTable").await;
    let store = DynamoConnections::new(client, table);
    let u = UserId::generate();
    let d = courier_core::DeviceId::from_trusted("d_1");
    assert_eq!(store.last_seen(&u).await.unwrap(), Default::default());
    let c = crate::connections::connection(&u, &d);
    store.add(&c).await.unwrap();
    let seen = store.last_seen(&u).await.unwrap();
    assert!(seen.online && seen.at.is_none());
    store.remove(&c.connection_id).await.unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 1).unwrap();
    store.record_last_seen(&u, at).await.unwrap();
    let seen = store.last_seen(&u).await.unwrap();
    assert!(!seen.online);
    assert_eq!(seen.at, Some(at));
    // After account deletion forgot the presence, a late $disconnect writes nothing back.
    store.forget_user(&u).await.unwrap();
    store.record_last_seen(&u, at).await.unwrap();
    assert_eq!(store.last_seen(&u).await.unwrap(), Default::default());
}

#[tokio::test]
async fn activity_counts_a_user_once_a_day_and_once_a_month_even_when_marks_race() {
    let client = support::client();
    let table = support::create_table(&client, "ConnectionsTable").await;
    let store = DynamoConnections::new(client, table);
    let u = UserId::generate();
    let d = courier_core::DeviceId::from_trusted("d_1");
    store
        .add(&crate::connections::connection(&u, &d))
        .await
        .unwrap();
    let nov29 = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    // Eight devices connecting at once: exactly one of them is the first of the day.
    let marks = futures_util::future::join_all((0..8).map(|_| store.mark_active(&u, nov29))).await;
    let firsts: Vec<FirstActivity> = marks.into_iter().map(Result::unwrap).collect();
    assert_eq!(firsts.iter().filter(|f| f.of_day).count(), 1, "{firsts:?}");
    assert_eq!(
        firsts.iter().filter(|f| f.of_month).count(),
        1,
        "{firsts:?}"
    );
    let nov30 = nov29.succ_opt().unwrap();
    assert_eq!(
        store.mark_active(&u, nov30).await.unwrap(),
        FirstActivity {
            of_day: true,
            of_month: false
        }
    );
    let dec1 = nov30.succ_opt().unwrap();
    assert_eq!(
        store.mark_active(&u, dec1).await.unwrap(),
        FirstActivity {
            of_day: true,
            of_month: true
        }
    );
    // A deleted account (its presence forgotten) is not counted, nor written back.
    store.forget_user(&u).await.unwrap();
    let dec2 = dec1.succ_opt().unwrap();
    assert_eq!(
        store.mark_active(&u, dec2).await.unwrap(),
        FirstActivity::default()
    );
}
