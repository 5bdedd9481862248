//! `DynamoSessions` over a `SessionsTable`: a direct session is created once with both
//! memberships, is found by session (`members`) and by user (the `byUser` index), and receipt
//! watermarks only ever move forward, each on its own.

use crate::support::{self, Item};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Timelike, Utc};
use courier_aws::dynamo::DynamoSessions;
use courier_core::chat::{Membership, Receipt, SessionKind, Watermark, timestamp};
use courier_core::ports::SessionStore;
use courier_core::{SessionId, UserId};

pub(crate) struct Fixture {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
    pub(crate) store: DynamoSessions,
}

pub(crate) async fn fixture() -> Fixture {
    let client = support::client();
    let table = support::create_table(&client, "SessionsTable").await;
    let store = DynamoSessions::new(client.clone(), table.clone());
    Fixture {
        client,
        table,
        store,
    }
}

/// Now, with a sub-second part that a lossy encoding would drop.
fn now() -> DateTime<Utc> {
    Utc::now().with_nanosecond(555_000_001).unwrap()
}

/// A fresh direct session: its id and its two users.
fn pair() -> (SessionId, UserId, UserId) {
    let (a, b) = (UserId::generate(), UserId::generate());
    (SessionId::direct(&a, &b), a, b)
}

/// A new pair's direct chat, created at `at`: `(session, a, b)`.
async fn direct_chat(f: &Fixture, at: DateTime<Utc>) -> (SessionId, UserId, UserId) {
    let (session, a, b) = pair();
    assert!(f.store.create_direct(&session, &a, &b, at).await.unwrap());
    (session, a, b)
}

/// Alice's direct chats with Bob and with Carol, both created (by Alice) at `at`:
/// `(alice, bob, carol, with_bob, with_carol)`.
async fn alice_with_bob_and_carol(
    f: &Fixture,
    at: DateTime<Utc>,
) -> (UserId, UserId, UserId, SessionId, SessionId) {
    let alice = UserId::generate();
    let (bob, carol) = (UserId::generate(), UserId::generate());
    let (with_bob, with_carol) = (
        SessionId::direct(&alice, &bob),
        SessionId::direct(&alice, &carol),
    );
    for (s, other) in [(&with_bob, &bob), (&with_carol, &carol)] {
        assert!(f.store.create_direct(s, &alice, other, at).await.unwrap());
    }
    (alice, bob, carol, with_bob, with_carol)
}

/// A member as `create_direct` makes it: no receipts yet.
fn joined(session: &SessionId, user: &UserId, at: DateTime<Utc>) -> Membership {
    Membership {
        session_id: session.clone(),
        kind: SessionKind::Direct,
        user_id: user.clone(),
        joined_at: at,
        joined_seq: 0,
        role: courier_core::chat::Role::Member,
        delivered: Watermark::default(),
        read: Watermark::default(),
    }
}

fn sorted(mut ms: Vec<Membership>) -> Vec<Membership> {
    ms.sort_by(|x, y| (&x.session_id, &x.user_id).cmp(&(&y.session_id, &y.user_id)));
    ms
}

/// What a watermark is expected to read back as: the protocol gives times to the millisecond.
fn mark(seq: u64, at: DateTime<Utc>) -> (u64, Option<String>) {
    (seq, Some(timestamp(at)))
}

fn read_back(w: Watermark) -> (u64, Option<String>) {
    (w.seq, w.at.map(timestamp))
}

impl Fixture {
    async fn member(&self, session: &SessionId, user: &UserId) -> Membership {
        self.store
            .membership(session, user)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{user} is not a member of {session}"))
    }

    async fn members(&self, session: &SessionId) -> Vec<Membership> {
        sorted(self.store.members(session).await.unwrap())
    }

    /// `sessions_of`, read once: it does not depend on the eventually consistent `byUser` index
    /// alone, so a membership written a moment ago is there at once (on AWS too).
    async fn sessions_of(&self, user: &UserId) -> Vec<Membership> {
        sorted(self.store.sessions_of(user).await.unwrap())
    }

    async fn items(&self) -> Vec<Item> {
        support::scan(&self.client, &self.table).await
    }
}

#[tokio::test]
async fn create_direct_creates_the_session_once_with_both_memberships() {
    let f = fixture().await;
    let (session, a, b) = pair();
    let at = now();
    assert!(!f.store.exists(&session).await.unwrap(), "not there yet");
    assert_eq!(f.store.membership(&session, &a).await.unwrap(), None);
    assert_eq!(f.members(&session).await, Vec::new());

    assert!(f.store.create_direct(&session, &a, &b, at).await.unwrap());
    assert!(f.store.exists(&session).await.unwrap());
    assert_eq!(
        f.member(&session, &a).await,
        joined(&session, &a, at),
        "every field comes back, joined_at to the nanosecond"
    );
    assert_eq!(f.member(&session, &b).await, joined(&session, &b, at));
    assert_eq!(
        f.members(&session).await,
        sorted(vec![joined(&session, &a, at), joined(&session, &b, at)])
    );

    // Again, for the same pair in either order and at a later time: nothing is created or changed.
    let later = at + Duration::minutes(5);
    assert!(
        !f.store
            .create_direct(&session, &a, &b, later)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .create_direct(&session, &b, &a, later)
            .await
            .unwrap()
    );
    assert_eq!(
        f.members(&session).await,
        sorted(vec![joined(&session, &a, at), joined(&session, &b, at)]),
        "the first joined_at stays"
    );
    assert_eq!(
        f.items().await.len(),
        5,
        "META, two MEMBER items and their two USER# twins"
    );
}

#[tokio::test]
async fn a_third_user_is_not_a_member_and_other_sessions_do_not_exist() {
    let f = fixture().await;
    let (session, a, _) = direct_chat(&f, now()).await;
    let carol = UserId::generate();
    assert_eq!(f.store.membership(&session, &carol).await.unwrap(), None);
    assert!(!f.members(&session).await.iter().any(|m| m.user_id == carol));
    assert_eq!(f.sessions_of(&carol).await, Vec::new());

    let (other, _, _) = pair();
    assert!(!f.store.exists(&other).await.unwrap());
    assert_eq!(f.store.membership(&other, &a).await.unwrap(), None);
    assert_eq!(f.members(&other).await, Vec::new());
}

#[tokio::test]
async fn sessions_of_finds_every_session_of_a_user_with_current_watermarks() {
    let f = fixture().await;
    let alice = UserId::generate();
    let (bob, carol) = (UserId::generate(), UserId::generate());
    let with_bob = SessionId::direct(&alice, &bob);
    let with_carol = SessionId::direct(&carol, &alice);
    let (t1, t2) = (now(), now() + Duration::seconds(1));
    assert!(
        f.store
            .create_direct(&with_bob, &alice, &bob, t1)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .create_direct(&with_carol, &carol, &alice, t2)
            .await
            .unwrap()
    );

    let alices = [
        joined(&with_bob, &alice, t1),
        joined(&with_carol, &alice, t2),
    ];
    assert_eq!(f.sessions_of(&alice).await, sorted(alices.to_vec()));
    let bobs = [joined(&with_bob, &bob, t1)];
    assert_eq!(f.sessions_of(&bob).await, bobs.to_vec());
    let carols = [joined(&with_carol, &carol, t2)];
    assert_eq!(f.sessions_of(&carol).await, carols.to_vec());

    // The index carries no watermarks, so moving one does not write the index (1 write unit, not
    // 2); the memberships listed are read from the member items, so they have the new one.
    let at = now();
    assert!(
        f.store
            .advance(&with_carol, &alice, Receipt::Read, 4, at)
            .await
            .unwrap()
    );
    let moved = f.member(&with_carol, &alice).await;
    assert_eq!(read_back(moved.read), mark(4, at));
    assert_eq!(
        f.sessions_of(&alice).await,
        sorted(vec![joined(&with_bob, &alice, t1), moved])
    );
}

#[tokio::test]
async fn a_membership_written_before_the_user_items_is_still_listed_and_an_ended_one_is_not() {
    let f = fixture().await;
    let at = now();
    let (session, a, b) = direct_chat(&f, at).await;
    // As stored before `USER#` items existed: the member item alone, found through `byUser`.
    let old = SessionId::direct(&a, &UserId::generate());
    let mut item = support::scan(&f.client, &f.table)
        .await
        .into_iter()
        .find(|i| support::s(i, "sk") == format!("MEMBER#{a}"))
        .expect("a's member item");
    item.insert("pk".into(), AttributeValue::S(format!("SESSION#{old}")));
    item.insert("sessionId".into(), AttributeValue::S(old.to_string()));
    f.client
        .put_item()
        .table_name(&f.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.sessions_of(&a).await,
        sorted(vec![joined(&session, &a, at), joined(&old, &a, at)])
    );

    // A stray `USER#` item (its member item gone) lists nothing: the member item decides.
    f.client
        .delete_item()
        .table_name(&f.table)
        .key("pk", AttributeValue::S(format!("SESSION#{session}")))
        .key("sk", AttributeValue::S(format!("MEMBER#{b}")))
        .send()
        .await
        .unwrap();
    assert_eq!(f.sessions_of(&b).await, Vec::new());
}

#[tokio::test]
async fn members_lists_only_the_sessions_own_members() {
    let f = fixture().await;
    let at = now();
    let (alice, bob, carol, with_bob, with_carol) = alice_with_bob_and_carol(&f, at).await;
    assert_eq!(
        f.members(&with_bob).await,
        sorted(vec![
            joined(&with_bob, &alice, at),
            joined(&with_bob, &bob, at)
        ])
    );
    assert_eq!(
        f.members(&with_carol).await,
        sorted(vec![
            joined(&with_carol, &alice, at),
            joined(&with_carol, &carol, at)
        ])
    );
    assert_eq!(f.store.membership(&with_bob, &carol).await.unwrap(), None);
}

#[tokio::test]
async fn advance_moves_a_watermark_forward_only() {
    let f = fixture().await;
    let joined_at = now();
    let (session, a, b) = direct_chat(&f, joined_at).await;
    let t = |secs: i64| joined_at + Duration::seconds(secs);
    // Whether advancing `a`'s watermark moved it.
    let advance = async |receipt: Receipt, seq: u64, at: chrono::DateTime<Utc>| {
        f.store
            .advance(&session, &a, receipt, seq, at)
            .await
            .unwrap()
    };

    // Zero is where a watermark starts: advancing to it moves nothing.
    assert!(!advance(Receipt::Delivered, 0, t(1)).await);
    assert_eq!(
        f.member(&session, &a).await,
        joined(&session, &a, joined_at)
    );

    assert!(advance(Receipt::Delivered, 3, t(2)).await);
    let m = f.member(&session, &a).await;
    assert_eq!(
        read_back(m.delivered),
        mark(3, t(2)),
        "seq and time recorded"
    );
    assert_eq!(m.read, Watermark::default(), "read is untouched");
    assert_eq!(m.joined_at, joined_at);

    // Equal or lower: false, and the watermark (with its time) stays.
    assert!(!advance(Receipt::Delivered, 3, t(3)).await);
    assert!(!advance(Receipt::Delivered, 2, t(4)).await);
    assert!(!advance(Receipt::Delivered, 1, t(4)).await);
    assert_eq!(
        read_back(f.member(&session, &a).await.delivered),
        mark(3, t(2))
    );

    // Read moves on its own, below delivered, without touching it.
    assert!(advance(Receipt::Read, 2, t(5)).await);
    let m = f.member(&session, &a).await;
    assert_eq!(read_back(m.read), mark(2, t(5)));
    assert_eq!(read_back(m.delivered), mark(3, t(2)));
    assert!(!advance(Receipt::Read, 2, t(6)).await);
    assert!(!advance(Receipt::Read, 1, t(6)).await);

    // And beyond delivered; delivered then still moves on from where it was.
    assert!(advance(Receipt::Read, 7, t(7)).await);
    assert!(advance(Receipt::Delivered, 5, t(8)).await);
    let m = f.member(&session, &a).await;
    assert_eq!(read_back(m.read), mark(7, t(7)));
    assert_eq!(read_back(m.delivered), mark(5, t(8)));

    // `Sent` is not a watermark.
    assert!(!advance(Receipt::Sent, 9, t(9)).await);
    assert_eq!(f.member(&session, &a).await, m);

    // The other member's watermarks never moved.
    assert_eq!(
        f.member(&session, &b).await,
        joined(&session, &b, joined_at)
    );
}

#[tokio::test]
async fn advance_records_the_time_to_the_millisecond() {
    let f = fixture().await;
    let (session, a, _) = direct_chat(&f, now()).await;
    let at = Utc::now().with_nanosecond(123_456_789).unwrap();
    assert!(
        f.store
            .advance(&session, &a, Receipt::Read, 1, at)
            .await
            .unwrap()
    );
    let read = f.member(&session, &a).await.read;
    let expected = at.with_nanosecond(123_000_000).unwrap();
    assert_eq!(read.at.map(timestamp), Some(timestamp(expected)));
}

#[tokio::test]
async fn advance_for_a_non_member_is_false_and_creates_nothing() {
    let f = fixture().await;
    let at = now();
    let (session, a, b) = direct_chat(&f, at).await;
    let before = f.items().await.len();

    let carol = UserId::generate();
    for receipt in [Receipt::Delivered, Receipt::Read] {
        assert!(
            !f.store
                .advance(&session, &carol, receipt, 1, at)
                .await
                .unwrap(),
            "{receipt:?} for a stranger"
        );
        let (unknown, _, _) = pair();
        assert!(
            !f.store.advance(&unknown, &a, receipt, 1, at).await.unwrap(),
            "{receipt:?} in a session that does not exist"
        );
    }
    assert_eq!(f.store.membership(&session, &carol).await.unwrap(), None);
    assert_eq!(f.items().await.len(), before, "no item was created");
    assert_eq!(
        f.members(&session).await,
        sorted(vec![joined(&session, &a, at), joined(&session, &b, at)])
    );
}

#[tokio::test]
async fn create_direct_again_keeps_the_watermarks() {
    let f = fixture().await;
    let at = now();
    let (session, a, b) = direct_chat(&f, at).await;
    assert!(
        f.store
            .advance(&session, &a, Receipt::Delivered, 4, at)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .advance(&session, &b, Receipt::Read, 2, at)
            .await
            .unwrap()
    );
    let before = f.members(&session).await;

    assert!(
        !f.store
            .create_direct(&session, &b, &a, at + Duration::hours(1))
            .await
            .unwrap()
    );
    assert_eq!(f.members(&session).await, before);
    assert_eq!(
        read_back(f.member(&session, &a).await.delivered),
        mark(4, at)
    );
}

#[tokio::test]
async fn leave_all_ends_every_membership_of_the_user_and_no_other() {
    let f = fixture().await;
    let at = now();
    let (alice, bob, _, with_bob, _) = alice_with_bob_and_carol(&f, at).await;
    assert_eq!(f.store.leave_all(&alice).await.unwrap(), 2);
    assert_eq!(f.sessions_of(&alice).await, Vec::new());
    assert_eq!(f.store.membership(&with_bob, &alice).await.unwrap(), None);
    assert_eq!(
        f.sessions_of(&bob).await,
        vec![joined(&with_bob, &bob, at)],
        "bob is still in the chat"
    );
    assert!(
        !f.items()
            .await
            .iter()
            .any(|i| support::s(i, "pk") == format!("USER#{alice}")),
        "alice's USER# items are gone with her memberships"
    );
}
