//! Races: the conditional writes hold when many requests hit the same item at once.

use crate::{accounts, connections, messages, registrations};
use courier_core::chat::Appended;
use courier_core::error::PortError;
use courier_core::ports::{
    AccountStore, ConnectionStore, MessageStore, RegistrationStore, UserDirectory,
};
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
    race_n(WRITERS, make).await
}

/// Runs `writers` tasks that start together, and returns their results in spawn order.
async fn race_n<T, F, Fut>(writers: usize, make: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|i| {
            let barrier = barrier.clone();
            let work = make(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(writers);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_one_session_get_every_number_once() {
    const SENDERS: usize = 20;
    let f = messages::fixture().await;
    let session = messages::session();
    let at = messages::now();
    let drafts: Vec<_> = (0..SENDERS)
        .map(|i| {
            messages::draft(
                &UserId::generate(),
                &messages::client_msg_id(),
                &format!("from sender {i}"),
            )
        })
        .collect();
    let results = race_n(SENDERS, |i| {
        let store = f.store.clone();
        let (session, draft) = (session.clone(), drafts[i].clone());
        async move { store.append(&session, &draft, at).await }
    })
    .await;

    let mut sent = Vec::with_capacity(SENDERS);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(Appended::New(m)) => {
                let m = *m;
                assert_eq!(m, messages::expected(&session, m.seq, &drafts[i], at));
                sent.push(m);
            }
            other => panic!("sender {i}: expected a new message, got {other:?}"),
        }
    }
    let mut seqs: Vec<u64> = sent.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=SENDERS as u64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    // What is stored is what each sender was told.
    sent.sort_by_key(|m| m.seq);
    assert_eq!(
        f.store.after(&session, 0, 100).await.unwrap(),
        (sent.clone(), false)
    );
    assert_eq!(f.store.last(&session).await.unwrap(), sent.last().cloned());
    assert_eq!(f.message_items().await.len(), SENDERS);
    assert_eq!(f.idempotency_items().await.len(), SENDERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_client_msg_id_store_one_message() {
    let f = messages::fixture().await;
    let session = messages::session();
    let sender = UserId::generate();
    let cmid = messages::client_msg_id();
    let start = messages::now();
    let drafts: Vec<_> = (0..WRITERS)
        .map(|i| messages::draft(&sender, &cmid, &format!("attempt {i}")))
        .collect();
    // Each retry arrives at its own time, so a Duplicate must carry the winner's, not its own.
    let results = race(|i| {
        let store = f.store.clone();
        let (session, draft) = (session.clone(), drafts[i].clone());
        let at = start + chrono::Duration::milliseconds(i as i64 * 10);
        async move {
            // A retry that finds the first attempt still writing gets Conflict and, as clients
            // do, tries again.
            loop {
                match store.append(&session, &draft, at).await {
                    Err(courier_core::error::PortError::Conflict) => {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    other => return other,
                }
            }
        }
    })
    .await;

    let results: Vec<Appended> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("attempt {i} failed: {e:?}")))
        .collect();
    let winners: Vec<usize> = (0..WRITERS)
        .filter(|&i| matches!(results[i], Appended::New(_)))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one New: {results:?}");
    let winner = winners[0];
    let Appended::New(stored) = &results[winner] else {
        unreachable!()
    };
    let stored: &courier_core::chat::Message = stored;
    let at = start + chrono::Duration::milliseconds(winner as i64 * 10);
    assert_eq!(
        *stored,
        messages::expected(&session, 1, &drafts[winner], at)
    );
    let duplicate = messages::duplicate_of(stored);
    for (i, r) in results.iter().enumerate().filter(|&(i, _)| i != winner) {
        assert_eq!(*r, duplicate, "attempt {i}");
    }
    assert_eq!(
        f.store.after(&session, 0, 100).await.unwrap(),
        (vec![stored.clone()], false),
        "one stored message"
    );
    assert_eq!(f.message_items().await.len(), 1);
    assert_eq!(f.idempotency_items().await.len(), 1);
}
