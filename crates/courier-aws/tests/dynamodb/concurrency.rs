//! Races: the conditional writes hold when many requests hit the same item at once.

use crate::{accounts, connections, registrations};
use courier_core::error::PortError;
use courier_core::ports::{AccountStore, ConnectionStore, RegistrationStore};
use courier_core::{DeviceId, UserId};
use std::sync::Arc;
use tokio::sync::Barrier;

const WRITERS: usize = 10;

/// Runs `WRITERS` tasks that start together, and returns their results in spawn order.
async fn race<T, F, Fut>(make: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|i| {
            let barrier = barrier.clone();
            let work = make(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(WRITERS);
    for h in handles {
        results.push(h.await.expect("task panicked"));
    }
    results
}

/// Index of the single `Ok`, after checking every other result is `Conflict`.
fn one_winner(results: &[Result<(), PortError>]) -> usize {
    let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(PortError::Conflict)))
        .count();
    assert_eq!(
        (winners.len(), conflicts),
        (1, results.len() - 1),
        "expected exactly one success and only Conflicts otherwise: {results:?}"
    );
    winners[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_puts_of_a_phone_let_exactly_one_win() {
    let f = registrations::fixture().await;
    let phone = registrations::phone("+14155550100");
    let regs: Vec<_> = (0..WRITERS)
        .map(|_| registrations::registration(&phone, 1))
        .collect();
    let results = race(|i| {
        let store = f.store.clone();
        let reg = regs[i].clone();
        async move { store.put(&reg, None).await }
    })
    .await;
    let winner = one_winner(&results);
    assert_eq!(
        f.store.get(&phone).await.unwrap(),
        Some(regs[winner].clone()),
        "the stored code is the winner's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_versioned_updates_let_exactly_one_win() {
    let f = registrations::fixture().await;
    let phone = registrations::phone("+14155550100");
    let base = registrations::registration(&phone, 1);
    f.store.put(&base, None).await.unwrap();
    let results = race(|i| {
        let store = f.store.clone();
        let reg = courier_core::ports::PendingRegistration {
            failed_attempts: i as u32 + 1,
            version: 2,
            ..base.clone()
        };
        async move { store.put(&reg, Some(1)).await }
    })
    .await;
    let winner = one_winner(&results);
    let stored = f.store.get(&phone).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.failed_attempts),
        (2, winner as u32 + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_accounts_for_one_phone_let_exactly_one_win() {
    let f = accounts::fixture().await;
    let users: Vec<_> = (0..WRITERS)
        .map(|_| accounts::user("+14155550100"))
        .collect();
    let devices: Vec<_> = users
        .iter()
        .map(|u| accounts::device(u, "phone", true))
        .collect();
    let results = race(|i| {
        let store = f.store.clone();
        let (user, device) = (users[i].clone(), devices[i].clone());
        async move { store.create_account(&user, &device).await }
    })
    .await;
    let winner = one_winner(&results);
    assert_eq!(
        f.store.user_by_phone(&users[winner].phone).await.unwrap(),
        Some(users[winner].user_id.clone())
    );
    for (i, u) in users.iter().enumerate().filter(|&(i, _)| i != winner) {
        assert_eq!(f.store.user(&u.user_id).await.unwrap(), None, "loser {i}");
        assert_eq!(f.store.devices(&u.user_id).await.unwrap(), Vec::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connections_of_one_user_are_all_recorded() {
    let store = connections::store().await;
    let user = UserId::generate();
    let conns: Vec<_> = (0..WRITERS)
        .map(|_| connections::connection(&user, &DeviceId::generate()))
        .collect();
    let results = race(|i| {
        let store = store.clone();
        let c = conns[i].clone();
        async move { store.add(&c).await }
    })
    .await;
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "connection {i} failed to register: {r:?}");
    }
    let mut listed = store.for_user(&user).await.unwrap();
    listed.sort();
    assert_eq!(listed, connections::pairs(&conns));
}
