//! `DynamoMessages` over a `MessagesTable` (with its idempotency claims in a `SessionsTable`):
//! messages get consecutive sequence numbers per session, a retried (sender, clientMsgId) is
//! answered with the first result and stores nothing, an attempt that died between its claim and
//! its message is taken over only after the claim's lease, a write the SDK resends after losing its
//! reply stores nothing twice, and pages end exactly where the messages do; the outcome of a
//! message's inline delivery is kept beside it, where no reader of messages sees it.

use crate::support::{self, Item};
use chrono::{DateTime, Duration, Timelike, Utc};
use courier_aws::dynamo::DynamoMessages;
use courier_core::chat::InlineOutcome;
use courier_core::chat::{Appended, Draft, MAX_ATTACHMENTS, MAX_PAYLOAD_CHARS, Message, timestamp};
use courier_core::ports::{DeliveryLog, MessageStore};
use courier_core::{DeviceId, MsgId, SessionId, UserId};

pub(crate) struct Fixture {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) messages_table: String,
    pub(crate) sessions_table: String,
    pub(crate) store: DynamoMessages,
}

pub(crate) async fn fixture() -> Fixture {
    let client = support::client();
    let messages_table = support::create_table(&client, "MessagesTable").await;
    let sessions_table = support::create_table(&client, "SessionsTable").await;
    let store = DynamoMessages::new(
        client.clone(),
        messages_table.clone(),
        sessions_table.clone(),
    );
    Fixture {
        client,
        messages_table,
        sessions_table,
        store,
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().with_nanosecond(250_000_000).unwrap()
}

pub(crate) fn session() -> SessionId {
    SessionId::direct(&UserId::generate(), &UserId::generate())
}

pub(crate) fn client_msg_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A text message from `sender`.
pub(crate) fn draft(sender: &UserId, client_msg_id: &str, payload: &str) -> Draft {
    Draft {
        sender: sender.clone(),
        sender_device: DeviceId::generate(),
        client_msg_id: client_msg_id.to_owned(),
        kind: "text".into(),
        payload: payload.to_owned(),
        attachments: Vec::new(),
        hidden_from: None,
        disappears: false,
        inline: false,
    }
}

/// The message `append` is expected to store for `draft` at `seq`.
pub(crate) fn expected(session: &SessionId, seq: u64, d: &Draft, at: DateTime<Utc>) -> Message {
    Message {
        msg_id: format!("{session}.{seq}"),
        session_id: session.clone(),
        seq,
        sender: d.sender.clone(),
        sender_device: d.sender_device.clone(),
        client_msg_id: d.client_msg_id.clone(),
        kind: d.kind.clone(),
        payload: d.payload.clone(),
        attachments: d.attachments.clone(),
        sent_at: timestamp(at),
        expires_at: None,
        hidden_from: d.hidden_from.clone(),
    }
}

pub(crate) fn new(appended: Appended) -> Message {
    match appended {
        Appended::New(m) => *m,
        other => panic!("expected a new message, got {other:?}"),
    }
}

/// What `append` answers a retry of `m`'s (sender, clientMsgId) with.
pub(crate) fn duplicate_of(m: &Message) -> Appended {
    Appended::Duplicate {
        msg_id: m.msg_id.clone(),
        seq: m.seq,
        sent_at: m.sent_at.clone(),
    }
}

pub(crate) fn id(session: &SessionId, seq: u64) -> MsgId {
    MsgId {
        session: session.clone(),
        seq,
    }
}

impl Fixture {
    /// Appends `n` messages from one sender, a second apart, and returns them.
    async fn append_many(&self, session: &SessionId, n: u64) -> Vec<Message> {
        let sender = UserId::generate();
        let start = now();
        let mut out = Vec::new();
        for i in 1..=n {
            let d = draft(&sender, &client_msg_id(), &format!("message {i}"));
            let at = start + Duration::seconds(i as i64);
            let m = new(self.store.append(session, &d, at).await.unwrap());
            assert_eq!(m, expected(session, i, &d, at));
            out.push(m);
        }
        out
    }

    /// Appends a new message from `sender` with a fresh clientMsgId and returns it.
    async fn append_new(
        &self,
        session: &SessionId,
        sender: &UserId,
        payload: &str,
        at: DateTime<Utc>,
    ) -> Message {
        let d = draft(sender, &client_msg_id(), payload);
        new(self.store.append(session, &d, at).await.unwrap())
    }

    async fn all(&self, session: &SessionId) -> Vec<Message> {
        let (messages, more) = self.store.after(session, 0, 1000).await.unwrap();
        assert!(!more);
        messages
    }

    pub(crate) async fn message_items(&self) -> Vec<Item> {
        support::scan(&self.client, &self.messages_table).await
    }

    pub(crate) async fn idempotency_items(&self) -> Vec<Item> {
        support::scan(&self.client, &self.sessions_table)
            .await
            .into_iter()
            .filter(|i| support::s(i, "pk").starts_with("IDEMP#"))
            .collect()
    }
}

#[tokio::test]
async fn append_numbers_messages_from_1_with_session_scoped_ids() {
    let f = fixture().await;
    let session = session();
    let (alice, bob) = (UserId::generate(), UserId::generate());
    let start = now();
    let drafts = [
        draft(&alice, &client_msg_id(), "hi"),
        draft(&bob, &client_msg_id(), "hello"),
        draft(&alice, &client_msg_id(), "how are you?"),
    ];
    let mut sent = Vec::new();
    for (i, d) in drafts.iter().enumerate() {
        let seq = i as u64 + 1;
        let at = start + Duration::milliseconds(i as i64 * 1500);
        let m = new(f.store.append(&session, d, at).await.unwrap());
        assert_eq!(m, expected(&session, seq, d, at));
        assert_eq!(m.msg_id, format!("{session}.{seq}"));
        assert_eq!(m.id(), id(&session, seq));
        sent.push(m);
    }
    for m in &sent {
        assert_eq!(f.store.get(&m.id()).await.unwrap(), Some(m.clone()));
    }
    assert_eq!(f.store.last(&session).await.unwrap(), sent.last().cloned());
    assert_eq!(f.all(&session).await, sent);
}

#[tokio::test]
async fn a_retried_client_msg_id_returns_the_first_result_and_stores_nothing() {
    let f = fixture().await;
    let session = session();
    let alice = UserId::generate();
    let cmid = client_msg_id();
    let first_draft = draft(&alice, &cmid, "first");
    let at = now();
    let first = new(f.store.append(&session, &first_draft, at).await.unwrap());
    let items = (f.message_items().await, f.idempotency_items().await);
    assert_eq!((items.0.len(), items.1.len()), (1, 1));

    // The retry comes later, from another device, with another payload: still the first result.
    let retry = Draft {
        payload: "second".into(),
        kind: "media".into(),
        attachments: vec!["m_1".into()],
        ..draft(&alice, &cmid, "")
    };
    for later in [1, 60] {
        let res = f
            .store
            .append(&session, &retry, at + Duration::seconds(later))
            .await
            .unwrap();
        assert_eq!(res, duplicate_of(&first));
    }
    assert_eq!(
        (f.message_items().await, f.idempotency_items().await),
        items,
        "nothing was written"
    );
    assert_eq!(f.all(&session).await, vec![first.clone()]);
    assert_eq!(f.store.last(&session).await.unwrap(), Some(first));

    // The next new message takes the next number: the duplicate left no gap.
    let next = draft(&alice, &client_msg_id(), "next");
    let m = new(f.store.append(&session, &next, at).await.unwrap());
    assert_eq!(m.seq, 2);
}

#[tokio::test]
async fn the_same_client_msg_id_from_another_sender_is_a_new_message() {
    let f = fixture().await;
    let session = session();
    let (alice, bob) = (UserId::generate(), UserId::generate());
    let cmid = client_msg_id();
    let at = now();
    let from_alice = draft(&alice, &cmid, "from alice");
    let from_bob = draft(&bob, &cmid, "from bob");
    let a = new(f.store.append(&session, &from_alice, at).await.unwrap());
    let b = new(f.store.append(&session, &from_bob, at).await.unwrap());
    assert_eq!(a, expected(&session, 1, &from_alice, at));
    assert_eq!(b, expected(&session, 2, &from_bob, at));
    assert_eq!(f.all(&session).await, vec![a, b]);
    assert_eq!(f.idempotency_items().await.len(), 2);
}

#[tokio::test]
async fn after_pages_in_order_and_has_more_ends_exactly_at_the_last_message() {
    let f = fixture().await;
    let session = session();
    let sent = f.append_many(&session, 7).await;
    let page = |from: u64, n: usize| sent[from as usize..(from as usize + n).min(7)].to_vec();

    // Walking the whole session three at a time.
    assert_eq!(
        f.store.after(&session, 0, 3).await.unwrap(),
        (page(0, 3), true)
    );
    assert_eq!(
        f.store.after(&session, 3, 3).await.unwrap(),
        (page(3, 3), true),
        "four left, limit three"
    );
    assert_eq!(
        f.store.after(&session, 6, 3).await.unwrap(),
        (page(6, 1), false)
    );

    // At the boundary: exactly `limit` left is the end; `limit + 1` left is not.
    assert_eq!(
        f.store.after(&session, 4, 3).await.unwrap(),
        (page(4, 3), false),
        "three left, limit three"
    );
    assert_eq!(
        f.store.after(&session, 0, 7).await.unwrap(),
        (page(0, 7), false)
    );
    assert_eq!(
        f.store.after(&session, 0, 6).await.unwrap(),
        (page(0, 6), true)
    );
    assert_eq!(
        f.store.after(&session, 5, 1).await.unwrap(),
        (page(5, 1), true)
    );
    assert_eq!(
        f.store.after(&session, 6, 1).await.unwrap(),
        (page(6, 1), false)
    );

    // Nothing after the last, or far beyond it; a large limit returns everything.
    assert_eq!(
        f.store.after(&session, 7, 3).await.unwrap(),
        (vec![], false)
    );
    assert_eq!(
        f.store.after(&session, 1000, 3).await.unwrap(),
        (vec![], false)
    );
    assert_eq!(
        f.store.after(&session, 0, 100).await.unwrap(),
        (sent.clone(), false)
    );
    assert_eq!(
        f.store.after(&session, 2, 100).await.unwrap(),
        (page(2, 5), false)
    );
}

#[tokio::test]
async fn get_and_last_of_missing_messages_are_none() {
    let f = fixture().await;
    let session = session();
    assert_eq!(f.store.last(&session).await.unwrap(), None, "empty session");
    assert_eq!(f.store.get(&id(&session, 1)).await.unwrap(), None);
    assert_eq!(
        f.store.after(&session, 0, 10).await.unwrap(),
        (vec![], false)
    );

    let sent = f.append_many(&session, 2).await;
    assert_eq!(f.store.get(&id(&session, 3)).await.unwrap(), None);
    assert_eq!(
        f.store.get(&id(&session, 2)).await.unwrap(),
        Some(sent[1].clone())
    );
    assert_eq!(f.store.last(&session).await.unwrap(), Some(sent[1].clone()));
}

/// 65,536 characters mixing one- to four-byte UTF-8 (about 160 KB), plus quotes, escapes and
/// whitespace a careless encoding would mangle.
fn largest_payload() -> String {
    let pattern: Vec<char> = "aé日🦀 \"\\\n\t<>&'ß€𝄞".chars().collect();
    let payload: String = pattern.iter().cycle().take(MAX_PAYLOAD_CHARS).collect();
    assert_eq!(payload.chars().count(), MAX_PAYLOAD_CHARS);
    payload
}

#[tokio::test]
async fn a_message_round_trips_every_field_including_the_largest_payload() {
    let f = fixture().await;
    let session = session();
    let d = Draft {
        sender: UserId::generate(),
        sender_device: DeviceId::generate(),
        client_msg_id: "c".repeat(64),
        kind: "media".into(),
        payload: largest_payload(),
        attachments: (0..MAX_ATTACHMENTS)
            .map(|i| format!("m_{i:02}_ü"))
            .collect(),
        // Kept beside the message, though never on the wire.
        hidden_from: Some(UserId::generate()),
        disappears: false,
        inline: false,
    };
    let at = Utc::now().with_nanosecond(999_999_999).unwrap();
    let m = new(f.store.append(&session, &d, at).await.unwrap());
    assert_eq!(m, expected(&session, 1, &d, at));
    assert_eq!(m.sent_at, timestamp(at), "RFC 3339, milliseconds, Z");
    assert_eq!(f.store.get(&m.id()).await.unwrap().as_ref(), Some(&m));
    assert_eq!(f.store.last(&session).await.unwrap().as_ref(), Some(&m));
    assert_eq!(f.all(&session).await, vec![m.clone()]);

    // A message without attachments comes back with none.
    let plain = draft(&d.sender, &client_msg_id(), "");
    let p = new(f.store.append(&session, &plain, at).await.unwrap());
    assert_eq!(p, expected(&session, 2, &plain, at));
    assert_eq!(f.store.get(&p.id()).await.unwrap(), Some(p));
}

#[tokio::test]
async fn messages_of_one_session_are_not_visible_in_another() {
    let f = fixture().await;
    let (one, two) = (session(), session());
    let ones = f.append_many(&one, 3).await;
    let twos = f.append_many(&two, 2).await;
    assert_eq!(twos[0].seq, 1, "each session is numbered from 1");
    assert_eq!(f.all(&one).await, ones);
    assert_eq!(f.all(&two).await, twos);
    assert_eq!(f.store.get(&id(&two, 3)).await.unwrap(), None);
    assert_eq!(
        f.store.get(&id(&two, 1)).await.unwrap(),
        Some(twos[0].clone())
    );
    assert_eq!(
        f.store.get(&id(&one, 1)).await.unwrap(),
        Some(ones[0].clone())
    );
    assert_eq!(f.store.last(&one).await.unwrap(), Some(ones[2].clone()));
    assert_eq!(f.store.last(&two).await.unwrap(), Some(twos[1].clone()));
    assert_eq!(
        f.store.after(&two, 1, 10).await.unwrap(),
        (vec![twos[1].clone()], false)
    );
    assert_eq!(f.all(&session()).await, Vec::new());
}

#[tokio::test]
async fn pages_cut_short_by_dynamodbs_1_mb_limit_say_more_follows() {
    let f = fixture().await;
    let session = session();
    let sender = UserId::generate();
    let at = now();
    // Twelve messages of about 115 KB: more than one 1 MB query page.
    let mut sent = Vec::new();
    for _ in 0..12 {
        let d = draft(&sender, &client_msg_id(), &largest_payload());
        sent.push(new(f.store.append(&session, &d, at).await.unwrap()));
    }
    let mut read = Vec::new();
    let mut pages = 0;
    loop {
        let from = read.last().map_or(0, |m: &Message| m.seq);
        let (page, more) = f.store.after(&session, from, 50).await.unwrap();
        pages += 1;
        assert!(!page.is_empty() || !more, "an empty page must be the last");
        read.extend(page);
        if !more {
            break;
        }
        assert!(pages < 20, "paging does not end");
    }
    assert_eq!(read, sent, "every message once, in order");
    assert!(pages > 1, "DynamoDB cut the first page at 1 MB");
}

#[tokio::test]
async fn a_client_msg_id_is_once_per_sender_across_sessions() {
    let f = fixture().await;
    let (one, two) = (session(), session());
    let alice = UserId::generate();
    let d = draft(&alice, &client_msg_id(), "hi");
    let at = now();
    let first = new(f.store.append(&one, &d, at).await.unwrap());
    assert_eq!(
        f.store.append(&two, &d, at).await.unwrap(),
        duplicate_of(&first),
        "the port keys idempotency on (sender, clientMsgId) only"
    );
    assert_eq!(
        f.store.last(&two).await.unwrap(),
        None,
        "nothing in the other session"
    );
    assert_eq!(f.message_items().await.len(), 1);
}

/// What an attempt that died right after claiming (before writing its message) leaves behind.
async fn orphan_claim(f: &Fixture, session: &SessionId, d: &Draft, floor: u64, at: DateTime<Utc>) {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    f.client
        .put_item()
        .table_name(&f.sessions_table)
        .item(
            "pk",
            V::S(format!("IDEMP#{}#{}", d.sender, d.client_msg_id)),
        )
        .item("sk", V::S("IDEMP".into()))
        .item("sessionId", V::S(session.to_string()))
        .item("floor", V::N(floor.to_string()))
        .item("claimedAt", V::N(at.timestamp().to_string()))
        .item("ttl", V::N((at.timestamp() + 3600).to_string()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_claim_whose_attempt_died_is_taken_over_only_after_its_lease() {
    use courier_aws::dynamo::CLAIM_LEASE_SECS;
    use courier_core::error::PortError;
    let f = fixture().await;
    let session = session();
    let alice = UserId::generate();
    let at = now();
    let before = f.append_new(&session, &alice, "before", at).await;
    let d = draft(&alice, &client_msg_id(), "the one that died");
    orphan_claim(&f, &session, &d, before.seq, at).await;

    // Within the lease the first attempt may still be writing: the retry is told to come back.
    let soon = at + Duration::seconds(CLAIM_LEASE_SECS - 1);
    assert!(matches!(
        f.store.append(&session, &d, soon).await,
        Err(PortError::Conflict)
    ));
    assert_eq!(
        f.all(&session).await,
        vec![before.clone()],
        "nothing written"
    );

    // After it, the retry takes the claim over and writes the message, once.
    let late = at + Duration::seconds(CLAIM_LEASE_SECS + 1);
    let m = new(f.store.append(&session, &d, late).await.unwrap());
    assert_eq!(m, expected(&session, 2, &d, late));
    let again = f
        .store
        .append(&session, &d, late + Duration::seconds(CLAIM_LEASE_SECS * 2))
        .await
        .unwrap();
    assert_eq!(again, duplicate_of(&m));
    assert_eq!(f.all(&session).await, vec![before, m]);
    assert_eq!(
        f.idempotency_items().await.len(),
        2,
        "one claim per clientMsgId"
    );
}

/// The SDK resends a write whose reply it lost although the write was applied (a dropped
/// connection, a 500 from DynamoDB, a restart). Whichever of `append`'s writes that is, the
/// message is stored once, at the next number, and the call answers with it: neither `Conflict`
/// (its own claim taken for another attempt's) nor a second copy one number further (its own
/// message taken for another member's).
#[tokio::test]
async fn writes_whose_replies_were_lost_are_resent_and_store_the_message_once() {
    use courier_aws::dynamo::CLAIM_LEASE_SECS;
    use std::sync::atomic::Ordering::SeqCst;
    let f = fixture().await;
    let alice = UserId::generate();
    let cases = [
        ("PutItem", &f.messages_table, "the message"),
        ("PutItem", &f.sessions_table, "the claim"),
        (
            "UpdateItem",
            &f.sessions_table,
            "the take-over of a dead attempt's claim",
        ),
    ];
    for (operation, table, what) in cases {
        let (client, lost) = support::client_losing_replies(operation, table, 1);
        let lossy = DynamoMessages::new(client, f.messages_table.clone(), f.sessions_table.clone());
        let session = session();
        let at = now();
        let before = f.append_new(&session, &alice, "before", at).await;
        let d = draft(&alice, &client_msg_id(), what);
        let at = if operation == "UpdateItem" {
            orphan_claim(&f, &session, &d, before.seq, at).await;
            at + Duration::seconds(CLAIM_LEASE_SECS + 1)
        } else {
            at
        };
        let m = new(lossy
            .append(&session, &d, at)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}")));
        assert_eq!(lost.load(SeqCst), 1, "{what}: one reply lost");
        assert_eq!(m, expected(&session, 2, &d, at), "{what}");
        assert_eq!(
            f.all(&session).await,
            vec![before, m.clone()],
            "{what}: stored once"
        );
        // A later retry of the same clientMsgId gets the same answer.
        let again = f
            .store
            .append(&session, &d, at + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(again, duplicate_of(&m), "{what}");
    }
}

#[tokio::test]
async fn a_retry_finds_its_message_behind_many_later_ones() {
    let f = fixture().await;
    let session = session();
    let (alice, bob) = (UserId::generate(), UserId::generate());
    let at = now();
    let d = draft(&alice, &client_msg_id(), "first");
    let first = new(f.store.append(&session, &d, at).await.unwrap());
    for i in 0..30 {
        let sender = if i % 2 == 0 { &bob } else { &alice };
        f.store
            .append(&session, &draft(sender, &client_msg_id(), "later"), at)
            .await
            .unwrap();
    }
    // Long after the lease: the claim is found with its message, not taken over.
    let res = f
        .store
        .append(&session, &d, at + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(res, duplicate_of(&first));
    assert_eq!(f.message_items().await.len(), 31);
}

#[tokio::test]
async fn the_outcome_of_an_inline_delivery_is_kept_beside_its_message_and_no_reader_sees_it() {
    let f = fixture().await;
    let session = session();
    let sender = UserId::generate();
    let inline = Draft {
        inline: true,
        ..draft(&sender, &client_msg_id(), "inline")
    };
    let m = new(f.store.append(&session, &inline, now()).await.unwrap());
    assert_eq!(
        f.store.outcome(&m.id()).await.unwrap(),
        None,
        "nothing recorded yet"
    );
    f.store.record(&m.id(), InlineOutcome::Done).await.unwrap();
    assert_eq!(
        f.store.outcome(&m.id()).await.unwrap(),
        Some(InlineOutcome::Done)
    );

    // The stream consumer reads `inline` from the message item and the outcome from an item of
    // the same session at -seq; both are there.
    let items = f.message_items().await;
    assert_eq!(items.len(), 2);
    let message_item = items
        .iter()
        .find(|i| support::n(i, "seq") == 1)
        .expect("the message item");
    assert_eq!(
        message_item.get(courier_aws::dynamo::INLINE_ATTRIBUTE),
        Some(&aws_sdk_dynamodb::types::AttributeValue::Bool(true))
    );
    let outcome_item = items
        .iter()
        .find(|i| support::n(i, "seq") == courier_aws::dynamo::outcome_seq(1))
        .expect("the outcome item");
    assert_eq!(support::s(outcome_item, "outcome"), "done");

    // Readers of messages see the message only: the last one, pages, the next number.
    assert_eq!(f.store.last(&session).await.unwrap().as_ref(), Some(&m));
    assert_eq!(f.all(&session).await, vec![m.clone()]);
    let next = f.append_new(&session, &sender, "next", now()).await;
    assert_eq!(next.seq, 2);
    // A message of the stream alone carries no `inline`.
    let items = f.message_items().await;
    let plain = items.iter().find(|i| support::n(i, "seq") == 2).unwrap();
    assert!(plain.get(courier_aws::dynamo::INLINE_ATTRIBUTE).is_none());

    // Recording again (a retried put) replaces the outcome; a retry is read back as such.
    f.store
        .record(&next.id(), InlineOutcome::Retry)
        .await
        .unwrap();
    assert_eq!(
        f.store.outcome(&next.id()).await.unwrap(),
        Some(InlineOutcome::Retry)
    );
}
