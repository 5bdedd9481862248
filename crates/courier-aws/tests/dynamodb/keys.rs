//! `DynamoKeys` and `DynamoDeviceQueues` against DynamoDB Local: one-time keys are handed out at
//! most once even to 20 concurrent claimers, the count follows, a new identity discards the old
//! keys; queue items carry a TTL, reads skip expired items and ack removes; `DynamoAccounts`
//! removes one device with its key and finds a device's owner.

use crate::accounts;
use crate::support::{self, s};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use courier_aws::dynamo::{DynamoDeviceQueues, DynamoKeys};
use courier_core::ports::{
    AccountStore, CredentialStore, DeviceKeys, DeviceMessage, DeviceQueueStore, KeyStore,
    QueuedMessage, SignedKey, UserDirectory,
};
use courier_core::usecases::device_messages::new_ids;
use courier_core::{DeviceId, UserId};
use std::collections::HashSet;

async fn keys_fixture() -> (aws_sdk_dynamodb::Client, String, DynamoKeys) {
    let client = support::client();
    let table = support::create_table(&client, "KeysTable").await;
    let store = DynamoKeys::new(client.clone(), table.clone());
    (client, table, store)
}

fn signed(id: &str) -> SignedKey {
    SignedKey {
        key_id: id.into(),
        key: format!("{id:A<43}"),
        signature: format!("{id:S<86}"),
    }
}

fn entry(user: &UserId, device: &DeviceId, identity: &str) -> DeviceKeys {
    DeviceKeys {
        user_id: user.clone(),
        device_id: device.clone(),
        identity_key: format!("{identity:I<43}"),
        signing_key: format!("{identity:G<43}"),
        fallback: Some(signed("fallback")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_claims_on_ten_keys_hand_each_out_once_and_ten_find_none() {
    let (_, _, store) = keys_fixture().await;
    let (user, device) = (UserId::generate(), DeviceId::generate());
    store
        .put_device_keys(&entry(&user, &device, "id"), false)
        .await
        .unwrap();
    let keys: Vec<SignedKey> = (0..10).map(|i| signed(&format!("k{i}"))).collect();
    store
        .add_one_time_keys(&user, &device, &keys)
        .await
        .unwrap();
    assert_eq!(store.one_time_key_count(&user, &device).await.unwrap(), 10);

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, user, device) = (store.clone(), user.clone(), device.clone());
            tokio::spawn(async move { store.claim_one_time_key(&user, &device).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap());
    }
    let claimed: Vec<String> = got.iter().flatten().map(|k| k.key_id.clone()).collect();
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 10, "ten claims got a key: {claimed:?}");
    assert_eq!(unique.len(), 10, "no key was handed out twice: {claimed:?}");
    assert_eq!(got.iter().filter(|k| k.is_none()).count(), 10);
    assert_eq!(store.one_time_key_count(&user, &device).await.unwrap(), 0);
    // The claimed key is whole: key and signature as uploaded.
    let k3 = got.iter().flatten().find(|k| k.key_id == "k3").unwrap();
    assert_eq!(k3, &signed("k3"));
    // The entry (with its fallback key) stays for the use case to hand out.
    let entries = store.device_keys(&user).await.unwrap();
    assert_eq!(entries, vec![entry(&user, &device, "id")]);
}

#[tokio::test]
async fn ids_count_replacement_and_deletion_stay_within_one_device() {
    let (client, table, store) = keys_fixture().await;
    let user = UserId::generate();
    let (a, b) = (DeviceId::generate(), DeviceId::generate());
    for d in [&a, &b] {
        store
            .put_device_keys(&entry(&user, d, d.as_str()), false)
            .await
            .unwrap();
    }
    // 60 keys: more than one batch of 25.
    let keys: Vec<SignedKey> = (0..60).map(|i| signed(&format!("a{i}"))).collect();
    store.add_one_time_keys(&user, &a, &keys).await.unwrap();
    store
        .add_one_time_keys(&user, &b, &[signed("b0")])
        .await
        .unwrap();
    let mut ids = store.one_time_key_ids(&user, &a).await.unwrap();
    ids.sort();
    assert_eq!(ids.len(), 60);
    assert!(ids.contains(&"a59".to_owned()));
    assert_eq!(store.one_time_key_count(&user, &a).await.unwrap(), 60);
    assert_eq!(store.device_keys(&user).await.unwrap().len(), 2);
    // A new identity on a: its keys go, b's stay.
    store
        .put_device_keys(&entry(&user, &a, "new"), true)
        .await
        .unwrap();
    assert_eq!(store.one_time_key_count(&user, &a).await.unwrap(), 0);
    assert_eq!(store.one_time_key_count(&user, &b).await.unwrap(), 1);
    let got = store.device_keys(&user).await.unwrap();
    assert!(got.contains(&entry(&user, &a, "new")));
    // Deleting b leaves a's entry only.
    store.delete_device_keys(&user, &b).await.unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(s(&items[0], "sk"), format!("DEVICE#{a}"));
}

async fn queue_fixture() -> (aws_sdk_dynamodb::Client, String, DynamoDeviceQueues) {
    let client = support::client();
    let table = support::create_table(&client, "DeviceQueueTable").await;
    let store = DynamoDeviceQueues::new(client.clone(), table.clone());
    (client, table, store)
}

fn queued(
    user: &UserId,
    device: &DeviceId,
    id: String,
    at: chrono::DateTime<Utc>,
    payload: &str,
) -> QueuedMessage {
    QueuedMessage {
        user_id: user.clone(),
        device_id: device.clone(),
        message: DeviceMessage {
            id,
            sender: UserId::generate(),
            sender_device: DeviceId::generate(),
            payload: payload.into(),
            sent_at: at,
        },
        expires_at: at + Duration::days(30),
    }
}

#[tokio::test]
async fn queue_items_carry_a_ttl_read_oldest_first_skipping_expired_and_ack_removes() {
    let (client, table, store) = queue_fixture().await;
    let (user, device) = (UserId::generate(), DeviceId::generate());
    let now = Utc::now();
    // One queued 31 days ago (expired by its id's time and its ttl), one whose ttl has passed
    // though its id is recent (checked in code), and 30 live ones (more than one batch).
    let old_at = now - Duration::days(31);
    let mut messages = vec![queued(
        &user,
        &device,
        new_ids(old_at, 1).remove(0),
        old_at,
        "old",
    )];
    let mut stale = queued(&user, &device, new_ids(now, 1).remove(0), now, "stale");
    stale.expires_at = now - Duration::seconds(1);
    messages.push(stale);
    let live_at = now + Duration::milliseconds(5);
    for (i, id) in new_ids(live_at, 30).into_iter().enumerate() {
        messages.push(queued(&user, &device, id, live_at, &format!("p{i}")));
    }
    store.enqueue(&messages).await.unwrap();
    // Another device's queue is separate.
    let other = DeviceId::generate();
    store
        .enqueue(&[queued(&user, &other, new_ids(now, 1).remove(0), now, "x")])
        .await
        .unwrap();

    let items = support::scan(&client, &table).await;
    assert_eq!(items.len(), 33);
    for item in &items {
        match item.get("ttl") {
            Some(AttributeValue::N(n)) => {
                let ttl: i64 = n.parse().unwrap();
                assert!(ttl <= (now + Duration::days(30)).timestamp() + 1, "{ttl}");
            }
            other => panic!("ttl is not a number: {other:?}"),
        }
    }
    let (page, more) = store.read(&user, &device, now, 20).await.unwrap();
    assert!(more);
    let payloads: Vec<&str> = page.iter().map(|m| m.payload.as_str()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    assert_eq!(payloads, expected, "oldest first, expired skipped");
    let (all, more) = store.read(&user, &device, now, 100).await.unwrap();
    assert_eq!((all.len(), more), (30, false));

    let ids: Vec<String> = all[..5].iter().map(|m| m.id.clone()).collect();
    assert_eq!(store.ack(&user, &device, &ids).await.unwrap(), 5);
    assert_eq!(
        store.ack(&user, &device, &ids).await.unwrap(),
        0,
        "already gone"
    );
    assert_eq!(
        store
            .ack(&user, &other, &[all[5].id.clone()])
            .await
            .unwrap(),
        0,
        "another device's ack removes nothing of this queue"
    );
    let (left, _) = store.read(&user, &device, now, 100).await.unwrap();
    assert_eq!(left.len(), 25);
    assert_eq!(left[0].payload, "p5");

    store.purge(&user, &device).await.unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(items.len(), 1, "only the other device's message is left");
}

#[tokio::test]
async fn one_device_is_removed_with_its_key_and_its_owner_is_found_by_device_id() {
    let f = accounts::fixture().await;
    let user = accounts::user("+14155550123");
    let primary = accounts::device(&user, "phone", true);
    f.store.create_account(&user, &primary).await.unwrap();
    let companion = accounts::device(&user, "web", false);
    f.store.replace_devices(&companion, &[]).await.unwrap();
    assert_eq!(
        f.store.device_owner(&companion.device_id).await.unwrap(),
        Some(user.user_id.clone())
    );
    assert_eq!(
        f.store.device_owner(&DeviceId::generate()).await.unwrap(),
        None
    );
    f.store.remove_device(&companion).await.unwrap();
    assert!(
        f.store
            .device_for_key(&companion.key_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.store
            .device_for_key(&primary.key_hash)
            .await
            .unwrap()
            .is_some()
    );
    let devices = f.store.devices(&user.user_id).await.unwrap();
    assert_eq!(devices, vec![primary.clone()]);
    assert_eq!(
        f.store.device_owner(&companion.device_id).await.unwrap(),
        None
    );
}
