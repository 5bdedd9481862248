//! `DynamoConnections` over a `ConnectionsTable`: connections are found by user (for fan-out) and
//! by id (on `$disconnect`), and one user's changes never touch another's connections.

use crate::support;
use chrono::{DateTime, Timelike, Utc};
use courier_aws::dynamo::DynamoConnections;
use courier_core::ports::{Connection, ConnectionStore};
use courier_core::{ConnectionId, DeviceId, UserId};

pub(crate) async fn store() -> DynamoConnections {
    let client = support::client();
    let table = support::create_table(&client, "ConnectionsTable").await;
    DynamoConnections::new(client, table)
}

fn now() -> DateTime<Utc> {
    Utc::now().with_nanosecond(555_000_001).unwrap()
}

/// An id shaped like API Gateway's (base64, often ending in `=`).
pub(crate) fn connection_id() -> ConnectionId {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    ConnectionId::new(format!("{}Cx{}=", &hex[..8], &hex[8..14]))
}

pub(crate) fn connection(user: &UserId, device: &DeviceId) -> Connection {
    Connection {
        connection_id: connection_id(),
        user_id: user.clone(),
        device_id: device.clone(),
        connected_at: now(),
    }
}

fn pair(c: &Connection) -> (DeviceId, ConnectionId) {
    (c.device_id.clone(), c.connection_id.clone())
}

pub(crate) fn pairs<'a>(
    cs: impl IntoIterator<Item = &'a Connection>,
) -> Vec<(DeviceId, ConnectionId)> {
    let mut v: Vec<_> = cs.into_iter().map(pair).collect();
    v.sort();
    v
}

async fn listed(store: &DynamoConnections, user: &UserId) -> Vec<(DeviceId, ConnectionId)> {
    let mut v = store.for_user(user).await.unwrap();
    v.sort();
    v
}

#[tokio::test]
async fn add_then_for_user_lists_the_device_and_connection() {
    let store = store().await;
    let user = UserId::generate();
    assert_eq!(
        listed(&store, &user).await,
        Vec::new(),
        "no connections yet"
    );
    let c = connection(&user, &DeviceId::generate());
    store.add(&c).await.unwrap();
    assert_eq!(
        store.for_user(&user).await.unwrap(),
        vec![(c.device_id, c.connection_id)]
    );
}

#[tokio::test]
async fn every_connection_of_a_user_is_listed() {
    let store = store().await;
    let user = UserId::generate();
    let phone = DeviceId::generate();
    let laptop = DeviceId::generate();
    // Two devices, one of them connected twice (two tabs).
    let conns = [
        connection(&user, &phone),
        connection(&user, &laptop),
        connection(&user, &laptop),
    ];
    for c in &conns {
        store.add(c).await.unwrap();
    }
    assert_eq!(listed(&store, &user).await, pairs(&conns));
}

#[tokio::test]
async fn remove_returns_the_connection_and_it_is_no_longer_listed() {
    let store = store().await;
    let user = UserId::generate();
    let device = DeviceId::generate();
    let first = connection(&user, &device);
    let second = connection(&user, &DeviceId::generate());
    store.add(&first).await.unwrap();
    store.add(&second).await.unwrap();

    let removed = store.remove(&first.connection_id).await.unwrap();
    assert_eq!(
        removed,
        Some(first.clone()),
        "every field comes back, connected_at to the nanosecond"
    );
    assert_eq!(listed(&store, &user).await, pairs([&second]));

    // Removing it again is a no-op; removing the last one leaves an empty list.
    assert_eq!(store.remove(&first.connection_id).await.unwrap(), None);
    assert_eq!(
        store.remove(&second.connection_id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(listed(&store, &user).await, Vec::new());

    // The user can connect again afterwards.
    let again = connection(&user, &device);
    store.add(&again).await.unwrap();
    assert_eq!(listed(&store, &user).await, pairs([&again]));
}

#[tokio::test]
async fn removing_an_unknown_connection_is_none_and_changes_nothing() {
    let store = store().await;
    // On an empty table.
    assert_eq!(store.remove(&connection_id()).await.unwrap(), None);

    let user = UserId::generate();
    let c = connection(&user, &DeviceId::generate());
    store.add(&c).await.unwrap();
    assert_eq!(store.remove(&connection_id()).await.unwrap(), None);
    assert_eq!(listed(&store, &user).await, pairs([&c]));
}

#[tokio::test]
async fn other_users_connections_are_untouched() {
    let store = store().await;
    let alice = UserId::generate();
    let bob = UserId::generate();
    let alices = [
        connection(&alice, &DeviceId::generate()),
        connection(&alice, &DeviceId::generate()),
    ];
    let bobs = [
        connection(&bob, &DeviceId::generate()),
        connection(&bob, &DeviceId::generate()),
    ];
    for c in alices.iter().chain(&bobs) {
        store.add(c).await.unwrap();
    }
    assert_eq!(listed(&store, &alice).await, pairs(&alices));
    assert_eq!(listed(&store, &bob).await, pairs(&bobs));

    for c in &alices {
        assert_eq!(
            store.remove(&c.connection_id).await.unwrap(),
            Some(c.clone())
        );
    }
    assert_eq!(listed(&store, &alice).await, Vec::new());
    assert_eq!(listed(&store, &bob).await, pairs(&bobs), "Bob's stay");
    assert_eq!(
        store.remove(&bobs[0].connection_id).await.unwrap(),
        Some(bobs[0].clone())
    );
    assert_eq!(listed(&store, &bob).await, pairs([&bobs[1]]));
}

#[tokio::test]
async fn a_gone_connection_is_forgotten_unless_it_is_still_connecting() {
    let store = store().await;
    let user = UserId::generate();
    let device = DeviceId::generate();
    // Opened an hour ago: a GoneException means it is dead.
    let mut old = connection(&user, &device);
    old.connected_at = now() - chrono::Duration::hours(1);
    // Opened just now: a 410 may only mean its `$connect` has not finished.
    let young = connection(&user, &device);
    store.add(&old).await.unwrap();
    store.add(&young).await.unwrap();
    store
        .remove_stale(&user, &device, &old.connection_id)
        .await
        .unwrap();
    store
        .remove_stale(&user, &device, &young.connection_id)
        .await
        .unwrap();
    assert_eq!(listed(&store, &user).await, pairs([&young]));
    // `$disconnect` still removes a young one.
    assert!(store.remove(&young.connection_id).await.unwrap().is_some());
    assert_eq!(listed(&store, &user).await, Vec::new());
}

#[tokio::test]
async fn a_connection_is_recorded_only_while_its_device_exists() {
    // The `$connect` function's store: revocations delete the device first, so a connection
    // that commits after the delete is refused instead of being missed (docs/security.md).
    use courier_core::ports::AccountStore;
    let accounts = crate::accounts::fixture().await;
    let table = support::create_table(&accounts.client, "ConnectionsTable").await;
    let store = DynamoConnections::new(accounts.client.clone(), table)
        .checking_devices_in(accounts.users_table.clone());
    let user = crate::accounts::user("+14155550100");
    let primary = crate::accounts::device(&user, "phone", true);
    let laptop = crate::accounts::device(&user, "laptop", false);
    accounts
        .store
        .create_account(&user, &primary)
        .await
        .unwrap();
    // The laptop is added as a link completes it: with its key.
    accounts.store.replace_devices(&laptop, &[]).await.unwrap();

    let before = connection(&user.user_id, &laptop.device_id);
    store.add(&before).await.unwrap();
    assert_eq!(
        store.connection(&before.connection_id).await.unwrap(),
        Some(before.clone())
    );

    accounts.store.remove_device(&laptop).await.unwrap();
    let after = connection(&user.user_id, &laptop.device_id);
    assert!(matches!(
        store.add(&after).await,
        Err(courier_core::error::PortError::Conflict)
    ));
    assert_eq!(store.connection(&after.connection_id).await.unwrap(), None);
    assert_eq!(listed(&store, &user.user_id).await, pairs([&before]));
    // An unknown device, too.
    let stranger = connection(&user.user_id, &DeviceId::generate());
    assert!(store.add(&stranger).await.is_err());
}
