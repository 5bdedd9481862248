//! `DynamoConnections` as a `PresenceStore`: the connections and push endpoints of many users in
//! one call (batched, more than 100 keys included), in the order asked, duplicates and all.

use crate::connections::{connection, pairs, store};
use courier_aws::dynamo::DynamoConnections;
use courier_core::ports::{Connection, ConnectionStore, Presence, PresenceStore};
use courier_core::{DeviceId, UserId};

fn endpoint(device: &DeviceId, n: u32) -> String {
    format!("arn:aws:sns:us-east-1:123456789012:endpoint/APNS/courier/{device}-{n}")
}

fn presence(user: &UserId, connections: &[&Connection], push: &[(&DeviceId, String)]) -> Presence {
    let mut push: Vec<_> = push
        .iter()
        .map(|(d, e)| ((*d).clone(), e.clone()))
        .collect();
    push.sort();
    Presence {
        user_id: user.clone(),
        connections: pairs(connections.iter().copied()),
        push,
    }
}

fn nobody(user: &UserId) -> Presence {
    presence(user, &[], &[])
}

/// `presence`, with each user's lists sorted (their order is not part of the contract).
async fn looked_up(store: &DynamoConnections, users: &[UserId]) -> Vec<Presence> {
    let mut found = store.presence(users).await.unwrap();
    assert_eq!(found.len(), users.len(), "one presence per user asked for");
    for p in &mut found {
        p.connections.sort();
        p.push.sort();
    }
    found
}

#[tokio::test]
async fn presence_of_several_users_comes_back_in_the_order_given() {
    let store = store().await;
    let (alice, bob, carol, dave) = (
        UserId::generate(),
        UserId::generate(),
        UserId::generate(),
        UserId::generate(),
    );
    let (alice_phone, alice_laptop) = (DeviceId::generate(), DeviceId::generate());
    let alices = [
        connection(&alice, &alice_phone),
        connection(&alice, &alice_laptop),
        connection(&alice, &alice_laptop),
    ];
    for c in &alices {
        store.add(c).await.unwrap();
    }
    store
        .set_push_endpoint(&alice, &alice_phone, &endpoint(&alice_phone, 1))
        .await
        .unwrap();
    // Bob is offline with two phones registered for push; Carol has nothing; Dave is online only.
    let (bob_phone, bob_tablet) = (DeviceId::generate(), DeviceId::generate());
    for d in [&bob_phone, &bob_tablet] {
        store
            .set_push_endpoint(&bob, d, &endpoint(d, 1))
            .await
            .unwrap();
    }
    let daves = connection(&dave, &DeviceId::generate());
    store.add(&daves).await.unwrap();

    let alice_p = presence(
        &alice,
        &alices.iter().collect::<Vec<_>>(),
        &[(&alice_phone, endpoint(&alice_phone, 1))],
    );
    let bob_p = presence(
        &bob,
        &[],
        &[
            (&bob_phone, endpoint(&bob_phone, 1)),
            (&bob_tablet, endpoint(&bob_tablet, 1)),
        ],
    );
    let dave_p = presence(&dave, &[&daves], &[]);
    assert_eq!(
        looked_up(
            &store,
            &[dave.clone(), carol.clone(), alice.clone(), bob.clone()]
        )
        .await,
        vec![
            dave_p.clone(),
            nobody(&carol),
            alice_p.clone(),
            bob_p.clone()
        ]
    );
    assert_eq!(
        looked_up(
            &store,
            &[bob.clone(), alice.clone(), carol.clone(), dave.clone()]
        )
        .await,
        vec![bob_p, alice_p, nobody(&carol), dave_p]
    );
}

#[tokio::test]
async fn a_user_with_nothing_has_empty_lists() {
    let store = store().await;
    let user = UserId::generate();
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![nobody(&user)]
    );
    assert_eq!(
        store.presence(&[]).await.unwrap(),
        Vec::new(),
        "nobody asked"
    );

    // Someone who was connected and left has nothing again.
    let c = connection(&user, &DeviceId::generate());
    store.add(&c).await.unwrap();
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![presence(&user, &[&c], &[])]
    );
    store.remove(&c.connection_id).await.unwrap();
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![nobody(&user)]
    );
}

#[tokio::test]
async fn set_push_endpoint_records_and_overwrites_per_device() {
    let store = store().await;
    let user = UserId::generate();
    let (phone, tablet) = (DeviceId::generate(), DeviceId::generate());
    store
        .set_push_endpoint(&user, &phone, &endpoint(&phone, 1))
        .await
        .unwrap();
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![presence(&user, &[], &[(&phone, endpoint(&phone, 1))])]
    );

    // A second call for the same device replaces its endpoint; other devices keep theirs.
    store
        .set_push_endpoint(&user, &tablet, &endpoint(&tablet, 1))
        .await
        .unwrap();
    store
        .set_push_endpoint(&user, &phone, &endpoint(&phone, 2))
        .await
        .unwrap();
    let expected = |conns: &[&Connection]| {
        presence(
            &user,
            conns,
            &[
                (&phone, endpoint(&phone, 2)),
                (&tablet, endpoint(&tablet, 1)),
            ],
        )
    };
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![expected(&[])]
    );

    // Connections and push endpoints live on the same item without disturbing each other.
    let c = connection(&user, &phone);
    store.add(&c).await.unwrap();
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![expected(&[&c])]
    );
    assert_eq!(store.for_user(&user).await.unwrap(), pairs([&c]));
    store
        .set_push_endpoint(&user, &phone, &endpoint(&phone, 2))
        .await
        .unwrap();
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![expected(&[&c])]
    );
    assert_eq!(
        store.remove(&c.connection_id).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&user)).await,
        vec![expected(&[])]
    );

    // Another user's endpoints are their own.
    let other = UserId::generate();
    assert_eq!(
        looked_up(&store, std::slice::from_ref(&other)).await,
        vec![nobody(&other)]
    );
}

#[tokio::test]
async fn more_than_a_hundred_users_in_one_call() {
    const USERS: usize = 250;
    let store = store().await;
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::generate()).collect();
    let mut expected = Vec::with_capacity(USERS);
    for (i, u) in users.iter().enumerate() {
        // Every third user has nothing; the others a push endpoint, every fifth a connection too.
        let p = if i % 3 == 0 {
            nobody(u)
        } else {
            let device = DeviceId::generate();
            let e = endpoint(&device, i as u32);
            store.set_push_endpoint(u, &device, &e).await.unwrap();
            if i % 5 == 0 {
                let c = connection(u, &device);
                store.add(&c).await.unwrap();
                presence(u, &[&c], &[(&device, e)])
            } else {
                presence(u, &[], &[(&device, e)])
            }
        };
        expected.push(p);
    }
    assert_eq!(looked_up(&store, &users).await, expected);

    // In another order, with users that have never been seen in between.
    let mut asked = Vec::new();
    let mut wanted = Vec::new();
    for (u, p) in users.iter().zip(&expected).rev() {
        asked.push(u.clone());
        wanted.push(p.clone());
        if asked.len() % 40 == 0 {
            let stranger = UserId::generate();
            wanted.push(nobody(&stranger));
            asked.push(stranger);
        }
    }
    assert!(asked.len() > USERS);
    assert_eq!(looked_up(&store, &asked).await, wanted);
}

#[tokio::test]
async fn duplicate_users_are_answered_each_time() {
    let store = store().await;
    let (alice, bob) = (UserId::generate(), UserId::generate());
    let device = DeviceId::generate();
    let c = connection(&alice, &device);
    store.add(&c).await.unwrap();
    store
        .set_push_endpoint(&alice, &device, &endpoint(&device, 1))
        .await
        .unwrap();
    let alice_p = presence(&alice, &[&c], &[(&device, endpoint(&device, 1))]);
    assert_eq!(
        looked_up(
            &store,
            &[
                alice.clone(),
                bob.clone(),
                alice.clone(),
                alice.clone(),
                bob.clone()
            ]
        )
        .await,
        vec![
            alice_p.clone(),
            nobody(&bob),
            alice_p.clone(),
            alice_p.clone(),
            nobody(&bob)
        ]
    );

    // 150 copies of one user (one key after de-duplication) and 101 distinct ones repeated.
    let many = vec![alice.clone(); 150];
    assert_eq!(looked_up(&store, &many).await, vec![alice_p.clone(); 150]);
    let mut distinct: Vec<UserId> = (0..100).map(|_| UserId::generate()).collect();
    distinct.push(alice.clone());
    let twice: Vec<UserId> = distinct.iter().chain(&distinct).cloned().collect();
    let found = looked_up(&store, &twice).await;
    for (u, p) in twice.iter().zip(&found) {
        if *u == alice {
            assert_eq!(*p, alice_p);
        } else {
            assert_eq!(*p, nobody(u));
        }
    }
}
