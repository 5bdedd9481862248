//! Chat use cases on in-memory ports: direct sessions, sending with idempotency, reading,
//! receipts as watermarks, fan-out with push and gone-connection clean-up.

mod support;

use courier_core::chat::{MAX_PAYLOAD_CHARS, Receipt};
use courier_core::clock::Clock;
use courier_core::memory::*;
use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::{
    direct_chat, fan_out, push_token, read_messages, receipts, send_message,
};
use courier_core::{ConnectionId, ErrorCode, SessionId, UserId};
use serde_json::{Value, json};
use support::{Wire, World, who};

impl World {
    /// Three users, each with one primary device: `d_0`, `d_1` and `d_2`.
    async fn with_three_users() -> (Self, UserId, UserId, UserId) {
        let w = World::new();
        let a = w.user("+14155550100", "d_0").await;
        let b = w.user("+14155550101", "d_1").await;
        let c = w.user("+14155550102", "d_2").await;
        (w, a, b, c)
    }
    /// `owner` lists `contact` among its contacts.
    async fn add_contact(&self, owner: &UserId, contact: &UserId) {
        self.settings
            .update_contacts(owner, std::slice::from_ref(contact), &[], self.clock.now())
            .await
            .unwrap();
    }
    /// `registerPushToken` of `device` for `platform`.
    async fn register_push(&self, device: &DeviceCredential, platform: &str, token: &str) {
        let p: RegisterPushTokenParams =
            serde_json::from_value(json!({"platform": platform, "token": token})).unwrap();
        push_token::register_push_token(&self.push, &self.connections, device, p)
            .await
            .unwrap();
    }
    async fn play_stream(&self, session: &str) {
        for m in self.messages.all(&SessionId::from_trusted(session)) {
            fan_out::fan_out(&self.sessions, &self.deliverer(), &m)
                .await
                .unwrap();
        }
    }
}

/// Two actions a day per target from its strangers (its contacts are not counted), counted
/// under `key`.
fn two_a_day_from_strangers<'a>(
    w: &'a World,
    limiter: &'a MemoryRateLimiter,
    key: &'static str,
) -> courier_core::rate_limit::StrangerCap<'a> {
    use courier_core::rate_limit::{DAY_SECS, Rule, StrangerCap, Throttle};
    StrangerCap {
        settings: &w.settings,
        throttle: Throttle {
            limiter,
            rule: Rule::Window {
                max: 2,
                window_secs: DAY_SECS,
            },
        },
        key,
    }
}

#[tokio::test]
async fn the_same_pair_always_gets_the_same_session() {
    let (w, a, b, _) = World::with_three_users().await;
    let s1 = w.open(&who(&a, "d_0"), &b).await;
    let s2 = w.open(&who(&b, "d_1"), &a).await;
    assert_eq!(s1, s2);
    let err = direct_chat::initiate(
        &w.chat_deps(),
        &who(&a, "d_0"),
        InitiateDirectChatParams {
            peer_user_id: a.to_string(),
            handshake: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    let err = direct_chat::initiate(
        &w.chat_deps(),
        &who(&a, "d_0"),
        InitiateDirectChatParams {
            peer_user_id: "u_nobody".into(),
            handshake: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn sending_checks_membership_size_and_is_idempotent() {
    let (w, a, b, c) = World::with_three_users().await;
    let (da, dc) = (who(&a, "d_0"), who(&c, "d_2"));
    let s = w.open(&da, &b).await;
    let first = w.send_text(&da, &s, "c-1", "hello").await.unwrap();
    assert_eq!(first["seq"], 1);
    let retry = w.send_text(&da, &s, "c-1", "hello").await.unwrap();
    assert_eq!(retry, first, "a retry returns the first result");
    assert_eq!(
        w.messages.all(&SessionId::from_trusted(&s)).len(),
        1,
        "and stores nothing twice"
    );

    // An outsider is told what it would be told of a session that does not exist.
    assert_eq!(
        w.send_text(&dc, &s, "c-9", "intruder")
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let unknown = SessionId::direct(&a, &c);
    assert_eq!(
        w.send_text(&da, unknown.as_str(), "c-2", "x")
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    assert_eq!(
        w.send_text(&da, "not-a-session", "c-2", "x")
            .await
            .unwrap_err()
            .code,
        ErrorCode::BadRequest
    );
    let big = "é".repeat(MAX_PAYLOAD_CHARS + 1);
    assert_eq!(
        w.send_text(&da, &s, "c-3", &big).await.unwrap_err().code,
        ErrorCode::PayloadTooLarge
    );
    w.send_text(&da, &s, "c-4", &"é".repeat(MAX_PAYLOAD_CHARS))
        .await
        .expect("exactly the limit is fine");
    assert_eq!(
        w.send_text(&da, &s, "", "x").await.unwrap_err().code,
        ErrorCode::BadRequest
    );
}

#[tokio::test]
async fn reading_pages_in_order() {
    let (w, a, b, _) = World::with_three_users().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    for i in 1..=5 {
        w.send_text(
            if i % 2 == 0 { &db } else { &da },
            &s,
            &format!("c-{i}"),
            &format!("m{i}"),
        )
        .await
        .unwrap();
    }
    let read = |last: Option<String>, limit| {
        let p: ReadNewMessagesParams =
            serde_json::from_value(json!({"sessionId": s, "lastMsgId": last, "limit": limit}))
                .unwrap();
        read_messages::read_new_messages(&w.sessions, &w.messages, &w.clock, &db, p)
    };
    let page = read(None, 3).await.unwrap();
    let seqs: Vec<_> = page.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(page.json()["hasMore"], true);
    let page = page.json();
    let last = page["messages"][2]["msgId"].as_str().unwrap().to_owned();
    let page = read(Some(last), 3).await.unwrap();
    assert_eq!(page.json()["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page.json()["messages"][1]["payload"], "m5");
    assert_eq!(page.json()["hasMore"], false);
    assert_eq!(read(None, 0).await.unwrap_err().code, ErrorCode::BadRequest);
    assert_eq!(
        read(Some("s_other.1".into()), 10).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
}

#[tokio::test]
async fn fan_out_reaches_every_other_device_and_pushes_offline_ones_without_content() {
    let (w, a, b, _) = World::with_three_users().await;
    let (da, da2, db) = (who(&a, "d_0"), who(&a, "d_0b"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    let a_phone = w.connect(&da, "ca1").await;
    let a_laptop = w.connect(&da2, "ca2").await;
    let b_phone = w.connect(&db, "cb1").await;
    // Bob's tablet is offline with a push token.
    let db2 = who(&b, "d_1b");
    w.register_push(&db2, "apns", "tok").await;

    w.send_text(&da, &s, "c-1", "ciphertext-1").await.unwrap();
    w.play_stream(&s).await;
    assert!(
        w.frames_to(&a_phone).is_empty(),
        "not echoed to the sending device"
    );
    for conn in [&a_laptop, &b_phone] {
        let frames = w.frames_to(conn);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["event"], "message");
        assert_eq!(frames[0]["message"]["payload"], "ciphertext-1");
    }
    let pushes = w.push.sent();
    assert_eq!(pushes.len(), 1);
    assert!(pushes[0].0.contains("d_1b"));
    let note = serde_json::to_string(&pushes[0].1).unwrap();
    assert!(
        !note.contains("ciphertext"),
        "pushes carry no content: {note}"
    );
    assert!(note.contains(&s));
}

#[tokio::test]
async fn a_gone_connection_is_removed_and_its_device_pushed_instead() {
    let (w, a, b, _) = World::with_three_users().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    // Bob's phone has a connection the gateway no longer knows (dropped without $disconnect).
    courier_core::usecases::connections::connect(
        &w.connections,
        &w.clock,
        ConnectionId::new("stale"),
        &db,
    )
    .await
    .unwrap();
    w.register_push(&db, "fcm", "t").await;
    w.send_text(&da, &s, "c-1", "x").await.unwrap();
    w.play_stream(&s).await;
    assert!(
        w.connections.for_user(&b).await.unwrap().is_empty(),
        "stale connection removed"
    );
    assert_eq!(w.push.sent().len(), 1, "pushed instead");
}

#[tokio::test]
async fn receipts_are_watermarks_that_never_move_backwards() {
    let (w, a, b, _) = World::with_three_users().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    let a_conn = w.connect(&da, "ca").await;
    let m1 = w.send_text(&da, &s, "c-1", "1").await.unwrap()["msgId"]
        .as_str()
        .unwrap()
        .to_owned();
    let m2 = w.send_text(&da, &s, "c-2", "2").await.unwrap()["msgId"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = |id: &str| {
        let p = GetMessageStatusParams {
            msg_id: id.to_owned(),
        };
        receipts::get_message_status(&w.sessions, &w.messages, &w.settings, &w.clock, &da, p)
    };
    assert_eq!(status(&m2).await.unwrap().json()["status"], "sent");
    assert_eq!(
        try_ack_as(&w, &s, &db, &m2, "delivered").await.unwrap()["moved"],
        true
    );
    let st = status(&m1).await.unwrap();
    assert_eq!(st.json()["status"], "delivered");
    assert_eq!(st.json()["recipients"][0]["userId"], b.as_str());
    assert!(st.json()["recipients"][0]["at"].is_string());
    assert_eq!(
        try_ack_as(&w, &s, &db, &m1, "delivered").await.unwrap()["moved"],
        false,
        "backwards: ignored, not an error"
    );
    assert_eq!(status(&m2).await.unwrap().json()["status"], "delivered");
    assert_eq!(
        try_ack_as(&w, &s, &db, &m1, "read").await.unwrap()["moved"],
        true
    );
    assert_eq!(status(&m1).await.unwrap().json()["status"], "read");
    assert_eq!(status(&m2).await.unwrap().json()["status"], "delivered");
    let events = w.frames_to(&a_conn);
    let kinds: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_owned(),
                e["upToSeq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("delivered".into(), 2), ("read".into(), 1)],
        "one status event per moved watermark"
    );
    assert_eq!(
        try_ack_as(&w, &s, &db, "s_nope.1", "read")
            .await
            .unwrap_err()
            .code,
        ErrorCode::BadRequest
    );
    let future = format!("{s}.99");
    assert_eq!(
        try_ack_as(&w, &s, &db, &future, "read")
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let _ = Receipt::Sent;
}

#[tokio::test]
async fn a_handshake_becomes_the_first_message_and_a_session_started_event() {
    let (w, a, b, _) = World::with_three_users().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let b_conn = w.connect(&db, "cb").await;
    let p = InitiateDirectChatParams {
        peer_user_id: b.to_string(),
        handshake: Some("olm-prekey-msg".into()),
    };
    let started = direct_chat::initiate(&w.chat_deps(), &da, p.clone())
        .await
        .unwrap();
    let s = started.reply.json()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = started.outbound.expect("the new handshake, to deliver");
    let retried = direct_chat::initiate(&w.chat_deps(), &da, p).await.unwrap();
    assert!(retried.outbound.is_none(), "a retry delivers nothing again");
    assert_eq!(
        w.messages.all(&SessionId::from_trusted(&s)).len(),
        1,
        "a retried initiate stores the handshake once"
    );
    // The caller (the function) delivers it at once, and records that it did.
    let (outcome, _) =
        fan_out::deliver_inline(&w.sessions, &w.deliverer(), &w.messages, &out).await;
    assert_eq!(outcome, courier_core::chat::InlineOutcome::Done);
    let frames = w.frames_to(&b_conn);
    assert_eq!(frames[0]["event"], "sessionStarted");
    assert_eq!(frames[0]["message"]["payload"], "olm-prekey-msg");
    assert!(
        frames[0].get("handshake").is_none(),
        "the handshake is carried once, as the payload"
    );
    let listed = direct_chat::list_sessions(&w.sessions, &w.messages, &db, Default::default())
        .await
        .unwrap();
    assert_eq!(listed.json()["sessions"][0]["sessionId"], s.as_str());
    assert_eq!(listed.json()["sessions"][0]["lastSeq"], 1);
    assert_eq!(
        listed.json()["sessions"][0]["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// `ackMessages` as `by` in session `s` up to `id` with status `st`.
async fn try_ack_as(
    w: &World,
    s: &str,
    by: &DeviceCredential,
    id: &str,
    st: &str,
) -> Result<Value, courier_core::ApiError> {
    let p: AckMessagesParams =
        serde_json::from_value(json!({"sessionId": s, "msgId": id, "status": st})).unwrap();
    let deps = receipts::AckDeps {
        sessions: &w.sessions,
        messages: &w.messages,
        deliver: w.deliverer(),
        settings: &w.settings,
        clock: &w.clock,
    };
    receipts::ack_messages(&deps, by, p).await.map(|r| r.json())
}

/// [`try_ack_as`], which must succeed.
async fn ack_as(w: &World, s: &str, by: DeviceCredential, id: String, st: String) -> Value {
    try_ack_as(w, s, &by, &id, &st).await.unwrap()
}

mod groups {
    use super::*;
    use courier_core::usecases::groups;

    #[tokio::test]
    async fn a_change_is_delivered_by_its_operation_before_a_deletion_removes_the_members() {
        let (w, a, b, _) = World::with_three_users().await;
        let b_conn = w.connect(&who(&b, "d_1"), "cb").await;
        let inline = groups::Deps {
            log: Some(&w.messages),
            ..w.group_deps()
        };
        let p: InitiateGroupParams =
            serde_json::from_value(json!({"name": "g", "members": [&b]})).unwrap();
        let g = groups::initiate(&inline, &who(&a, "d_0"), p)
            .await
            .unwrap()
            .json()["groupId"]
            .as_str()
            .unwrap()
            .to_owned();
        groups::promote(&inline, &who(&a, "d_0"), member(&g, &b))
            .await
            .unwrap();
        groups::delete(
            &inline,
            &who(&a, "d_0"),
            serde_json::from_value(json!({"groupId": g})).unwrap(),
        )
        .await
        .unwrap();
        // No stream played: Bob got `created` and `promoted` from the operations themselves,
        // then the deletion notice.
        let updates: Vec<_> = w
            .frames_to(&b_conn)
            .into_iter()
            .map(|f| f["update"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(updates, ["created", "promoted", "deleted"]);
        // The fan-out skips both stored changes.
        for m in w.messages.all(&SessionId::from_trusted(&g)) {
            assert!(w.messages.is_inline(&m.msg_id));
            assert_eq!(
                w.messages.outcome(&m.id()).await.unwrap(),
                Some(courier_core::chat::InlineOutcome::Done)
            );
        }
    }

    fn member(group: &str, user: &UserId) -> GroupMemberParams {
        serde_json::from_value(json!({"groupId": group, "userId": user})).unwrap()
    }

    async fn create(w: &World, by: &DeviceCredential, others: &[&UserId]) -> String {
        let p: InitiateGroupParams =
            serde_json::from_value(json!({"name": "g", "members": others})).unwrap();
        groups::initiate(&w.group_deps(), by, p)
            .await
            .unwrap()
            .json()["groupId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn read(w: &World, who: &DeviceCredential, group: &str) -> Result<Vec<Value>, ErrorCode> {
        let p: ReadNewMessagesParams = serde_json::from_value(json!({"sessionId": group})).unwrap();
        read_messages::read_new_messages(&w.sessions, &w.messages, &w.clock, who, p)
            .await
            .map(|r| r.json()["messages"].as_array().unwrap().clone())
            .map_err(|e| e.code)
    }

    #[tokio::test]
    async fn the_creator_is_admin_and_the_change_is_written_into_the_session() {
        let (w, a, b, c) = World::with_three_users().await;
        let alice = who(&a, "d_0");
        let g = create(&w, &alice, &[&b, &c]).await;
        assert!(g.starts_with("g_"));
        let id = SessionId::parse(&g).unwrap();
        let roles: Vec<_> = w
            .sessions
            .members(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.user_id, m.role))
            .collect();
        assert!(roles.contains(&(a.clone(), courier_core::chat::Role::Admin)));
        assert_eq!(roles.len(), 3);
        let log = read(&w, &who(&b, "d_1"), &g).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["type"], "system");
        let change: GroupChange =
            serde_json::from_str(log[0]["payload"].as_str().unwrap()).unwrap();
        assert_eq!((change.update.as_str(), &change.by), ("created", &a));
        // The fan-out turns it into a groupUpdate event.
        let bob_conn = w.connect(&who(&b, "d_1"), "cb").await;
        let m: courier_core::chat::Message = serde_json::from_value(log[0].clone()).unwrap();
        fan_out::fan_out(&w.sessions, &w.deliverer(), &m)
            .await
            .unwrap();
        let frames = w.frames_to(&bob_conn);
        assert_eq!(frames[0]["event"], "groupUpdate");
        assert_eq!(frames[0]["update"], "created");
    }

    /// Alice's group with Bob, where Alice sends `m1`, adds Carol, then sends `m2`: the group
    /// and the two sends' replies.
    async fn carol_joins_between(
        w: &World,
        alice: &DeviceCredential,
        bob: &UserId,
        carol: &UserId,
    ) -> (String, Value, Value) {
        let g = create(w, alice, &[bob]).await;
        let before = w.send_text(alice, &g, "m1", "ct-1").await.unwrap();
        groups::add(&w.group_deps(), alice, member(&g, carol))
            .await
            .unwrap();
        let after = w.send_text(alice, &g, "m2", "ct-2").await.unwrap();
        (g, before, after)
    }

    #[tokio::test]
    async fn a_member_added_later_sees_only_what_follows_and_is_not_sent_the_past() {
        let (w, a, b, c) = World::with_three_users().await;
        let alice = who(&a, "d_0");
        let (g, before, _) = carol_joins_between(&w, &alice, &b, &c).await;
        let carol = who(&c, "d_2");
        let seen: Vec<_> = read(&w, &carol, &g)
            .await
            .unwrap()
            .iter()
            .map(|m| m["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            seen,
            ["system", "text"],
            "her own add, then the new message"
        );
        // A late fan-out of the earlier message does not reach her.
        let conn = w.connect(&carol, "cc").await;
        let id = courier_core::MsgId::parse(before["msgId"].as_str().unwrap()).unwrap();
        let old = w.messages.get(&id).await.unwrap().unwrap();
        fan_out::fan_out(&w.sessions, &w.deliverer(), &old)
            .await
            .unwrap();
        assert!(w.frames_to(&conn).is_empty());
    }

    #[tokio::test]
    async fn a_late_members_ack_of_a_message_from_before_it_joined_moves_nothing() {
        let (w, a, b, c) = World::with_three_users().await;
        let alice = who(&a, "d_0");
        let (g, before, after) = carol_joins_between(&w, &alice, &b, &c).await;
        let alice_conn = w.connect(&alice, "ca").await;
        let carol = who(&c, "d_2");
        let id = |m: &Value| m["msgId"].as_str().unwrap().to_owned();
        let r = ack_as(&w, g.as_str(), carol.clone(), id(&before), "read".into()).await;
        assert_eq!(r, json!({"moved": false}));
        assert!(w.frames_to(&alice_conn).is_empty(), "alice is told nothing");
        // Her own messages' worth: what came after she joined moves and tells alice.
        let r = ack_as(&w, g.as_str(), carol, id(&after), "read".into()).await;
        assert_eq!(r, json!({"moved": true}));
        assert_eq!(w.frames_to(&alice_conn).len(), 1);
    }

    #[tokio::test]
    async fn only_admins_manage_and_the_last_admin_hands_over() {
        let (w, a, b, c) = World::with_three_users().await;
        let (alice, bob) = (who(&a, "d_0"), who(&b, "d_1"));
        let g = create(&w, &alice, &[&b, &c]).await;
        let d = w.group_deps();
        for e in [
            groups::add(&d, &bob, member(&g, &c)).await.unwrap_err(),
            groups::remove(&d, &bob, member(&g, &c)).await.unwrap_err(),
            groups::promote(&d, &bob, member(&g, &c)).await.unwrap_err(),
        ] {
            assert_eq!(e.code, ErrorCode::Forbidden);
        }
        let p: GroupParams = serde_json::from_value(json!({"groupId": g})).unwrap();
        assert_eq!(
            groups::delete(&d, &bob, p.clone()).await.unwrap_err().code,
            ErrorCode::Forbidden
        );
        let left = groups::remove(&d, &alice, member(&g, &a)).await.unwrap();
        let left = left.json();
        let heir = left["newAdmin"].as_str().unwrap();
        assert!(heir == b.as_str() || heir == c.as_str());
        assert_eq!(read(&w, &alice, &g).await.unwrap_err(), ErrorCode::NotFound);
        // The last two leave: the group is gone.
        groups::remove(&d, &bob, member(&g, &b)).await.unwrap();
        let r = groups::remove(&d, &who(&c, "d_2"), member(&g, &c))
            .await
            .unwrap();
        assert_eq!(r.json()["groupDeleted"], true);
        assert_eq!(
            groups::get(&d, &bob, p).await.unwrap_err().code,
            ErrorCode::NotFound
        );
    }

    /// Issue 21, item 3: a stranger may add a user to groups only so often a day; the user's
    /// contacts are not counted (nor can a stranger use up their share), and a refused call
    /// creates nothing and counts nothing.
    #[tokio::test]
    async fn strangers_may_add_a_user_to_groups_only_so_often_a_day_contacts_always() {
        use courier_core::rate_limit::DAY_SECS;
        let (w, a, b, c) = World::with_three_users().await;
        let (alice, carol) = (who(&a, "d_0"), who(&c, "d_2"));
        let limiter = MemoryRateLimiter::default();
        let capped = groups::Deps {
            adds_per_target: Some(two_a_day_from_strangers(&w, &limiter, "group-adds")),
            ..w.group_deps()
        };
        // Bob lists Carol as a contact; Alice is a stranger to him.
        w.add_contact(&b, &c).await;
        let initiate = |by: DeviceCredential, members: Vec<&UserId>| {
            let p: InitiateGroupParams =
                serde_json::from_value(json!({"name": "g", "members": members})).unwrap();
            let capped = &capped;
            async move { groups::initiate(capped, &by, p).await }
        };
        initiate(alice.clone(), vec![&b]).await.unwrap();
        initiate(alice.clone(), vec![&b, &c]).await.unwrap();
        let e = initiate(alice.clone(), vec![&c, &b]).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.retry_after_secs.is_some_and(|s| s > 0 && s <= DAY_SECS));
        assert!(e.message.contains(b.as_str()), "{}", e.message);
        // Nothing was made, nothing counted for Carol (two adds by Alice so far: one left).
        assert_eq!(w.sessions.sessions_of(&b).await.unwrap().len(), 2);
        assert_eq!(w.sessions.sessions_of(&c).await.unwrap().len(), 1);
        // Adding Bob to an existing group is counted the same way.
        let gc = initiate(carol.clone(), vec![&a]).await.unwrap().json()["groupId"]
            .as_str()
            .unwrap()
            .to_owned();
        groups::promote(&capped, &carol, member(&gc, &a))
            .await
            .unwrap();
        let e = groups::add(&capped, &alice, member(&gc, &b))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        // Carol, his contact, may still add him, however often.
        for _ in 0..3 {
            initiate(carol.clone(), vec![&b]).await.unwrap();
        }
        groups::add(&capped, &carol, member(&gc, &b)).await.unwrap();
        // The next day, Alice may again.
        w.clock.advance(chrono::Duration::seconds(DAY_SECS as i64));
        initiate(alice.clone(), vec![&b]).await.unwrap();
    }
}

/// Profile, privacy settings and contacts, and how they change what others see and may do.
mod settings {
    use super::*;
    use courier_core::usecases::{connections, groups, profile};

    fn deps(w: &World) -> profile::Deps<'_> {
        w.profile_deps()
    }

    async fn update(w: &World, by: &DeviceCredential, body: Value) -> Result<Value, ApiError> {
        let p: UpdateSettingsParams = serde_json::from_value(body).unwrap();
        profile::update_settings(&deps(w), by, p)
            .await
            .map(|r| r.json())
    }

    async fn contacts(w: &World, by: &DeviceCredential, body: Value) -> Result<Value, ApiError> {
        let p: UpdateContactsParams = serde_json::from_value(body).unwrap();
        profile::update_contacts(&deps(w), by, p)
            .await
            .map(|r| r.json())
    }

    async fn profile_of(w: &World, by: &DeviceCredential, user: &UserId) -> Value {
        let p = GetProfileParams {
            user_id: user.to_string(),
        };
        profile::get_profile(&deps(w), by, p).await.unwrap().json()
    }

    use courier_core::ApiError;

    async fn status_as(w: &World, by: DeviceCredential, id: String) -> Value {
        let p = GetMessageStatusParams { msg_id: id };
        receipts::get_message_status(&w.sessions, &w.messages, &w.settings, &w.clock, &by, p)
            .await
            .unwrap()
            .json()
    }

    #[tokio::test]
    async fn defaults_then_partial_updates_change_only_the_given_fields() {
        let (w, a, _, _) = World::with_three_users().await;
        let alice = who(&a, "d_0");
        let s = profile::get_settings(&deps(&w), &alice).await.unwrap();
        assert_eq!(
            s.json()["privacy"],
            json!({"lastSeen": "everyone", "profilePhoto": "everyone", "about": "everyone",
                   "status": "everyone", "readReceipts": true, "groupsAdd": "everyone"})
        );
        assert_eq!(
            s.json()["display"],
            json!({"name": null, "about": null, "avatar": null})
        );
        update(
            &w,
            &alice,
            json!({"display": {"name": "Alice", "about": "hi"}}),
        )
        .await
        .unwrap();
        update(&w, &alice, json!({"privacy": {"status": "nobody"}}))
            .await
            .unwrap();
        let s = profile::get_settings(&deps(&w), &alice).await.unwrap();
        assert_eq!(s.json()["display"]["name"], "Alice");
        assert_eq!(s.json()["display"]["about"], "hi");
        assert_eq!(s.json()["privacy"]["status"], "nobody");
        assert_eq!(s.json()["privacy"]["lastSeen"], "everyone");
        // null clears a display field, leaving the others.
        update(&w, &alice, json!({"display": {"about": null}}))
            .await
            .unwrap();
        let s = profile::get_settings(&deps(&w), &alice).await.unwrap();
        assert_eq!(s.json()["display"]["about"], Value::Null);
        assert_eq!(s.json()["display"]["name"], "Alice");
    }

    #[tokio::test]
    async fn too_long_fields_are_refused_naming_the_field_and_change_nothing() {
        let (w, a, _, _) = World::with_three_users().await;
        let alice = who(&a, "d_0");
        update(&w, &alice, json!({"display": {"name": "A"}}))
            .await
            .unwrap();
        for (body, field) in [
            (json!({"display": {"name": "x".repeat(26)}}), "display.name"),
            (
                json!({"display": {"name": "ok", "about": "y".repeat(140)}}),
                "display.about",
            ),
        ] {
            let e = update(&w, &alice, body).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains(field), "{}", e.message);
        }
        // 25 and 139 characters (not bytes) are fine.
        update(
            &w,
            &alice,
            json!({"display": {"name": "é".repeat(25), "about": "é".repeat(139)}}),
        )
        .await
        .unwrap();
        let s = profile::get_settings(&deps(&w), &alice).await.unwrap();
        assert_eq!(s.json()["display"]["name"], "é".repeat(25));
    }

    #[tokio::test]
    async fn profile_fields_follow_the_owners_privacy_relative_to_the_viewer() {
        let (w, a, b, c) = World::with_three_users().await;
        let (alice, bob, carol) = (who(&a, "d_0"), who(&b, "d_1"), who(&c, "d_2"));
        update(
            &w,
            &alice,
            json!({"display": {"name": "Alice", "about": "busy", "avatar": "m_1"},
                   "privacy": {"about": "contacts", "profilePhoto": "nobody", "lastSeen": "contacts"}}),
        )
        .await
        .unwrap();
        assert_eq!(
            contacts(&w, &alice, json!({"add": [b]})).await.unwrap()["count"],
            1
        );
        let conn = w.connect(&alice, "ca").await;
        connections::disconnect(&w.connections, &w.connections, &w.clock, &conn)
            .await
            .unwrap();
        // Bob is a contact: about and last seen, no photo.
        let p = profile_of(&w, &bob, &a).await;
        assert_eq!(p["name"], "Alice");
        assert_eq!(p["about"], "busy");
        assert!(p.get("avatar").is_none());
        assert_eq!(p["online"], false);
        assert_eq!(p["lastSeen"], "2026-11-28T12:00:00.000Z");
        // Carol is not: only the name.
        let p = profile_of(&w, &carol, &a).await;
        assert_eq!(p, json!({"userId": a, "name": "Alice"}));
        // Alice sees everything of her own.
        let p = profile_of(&w, &alice, &a).await;
        assert_eq!(p["avatar"], "m_1");
        // Removing Bob from contacts hides about and last seen from him.
        assert_eq!(
            contacts(&w, &alice, json!({"remove": [b]})).await.unwrap()["count"],
            0
        );
        let p = profile_of(&w, &bob, &a).await;
        assert!(p.get("about").is_none() && p.get("lastSeen").is_none());
    }

    #[tokio::test]
    async fn online_while_any_device_is_connected_last_seen_when_the_last_one_closes() {
        let (w, a, b, _) = World::with_three_users().await;
        let (alice, bob) = (who(&a, "d_0"), who(&b, "d_1"));
        let c1 = w.connect(&alice, "c1").await;
        let c2 = w.connect(&who(&a, "d_9"), "c2").await;
        let p = profile_of(&w, &bob, &a).await;
        assert_eq!(
            (p["online"].clone(), p["lastSeen"].clone()),
            (json!(true), Value::Null)
        );
        connections::disconnect(&w.connections, &w.connections, &w.clock, &c1)
            .await
            .unwrap();
        assert_eq!(profile_of(&w, &bob, &a).await["online"], true);
        w.clock.advance(chrono::Duration::minutes(5));
        connections::disconnect(&w.connections, &w.connections, &w.clock, &c2)
            .await
            .unwrap();
        let p = profile_of(&w, &bob, &a).await;
        assert_eq!(p["online"], false);
        assert_eq!(p["lastSeen"], "2026-11-28T12:05:00.000Z");
        // A repeated $disconnect records nothing new.
        w.clock.advance(chrono::Duration::minutes(5));
        connections::disconnect(&w.connections, &w.connections, &w.clock, &c2)
            .await
            .unwrap();
        assert_eq!(
            profile_of(&w, &bob, &a).await["lastSeen"],
            "2026-11-28T12:05:00.000Z"
        );
    }

    #[tokio::test]
    async fn contacts_bad_ids_self_and_the_limit() {
        let (w, a, b, c) = World::with_three_users().await;
        let alice = who(&a, "d_0");
        let e = contacts(&w, &alice, json!({"add": [b, "bob"]}))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("add[1]"), "{}", e.message);
        let e = contacts(&w, &alice, json!({"add": [a]})).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(
            w.settings.contact_count(&a).await.unwrap(),
            0,
            "nothing changed"
        );
        // Adding twice counts once; add and remove of the same id removes it.
        assert_eq!(
            contacts(&w, &alice, json!({"add": [b, b, c]}))
                .await
                .unwrap()["count"],
            2
        );
        assert_eq!(
            contacts(&w, &alice, json!({"add": [c], "remove": [c]}))
                .await
                .unwrap()["count"],
            1
        );
        // The limit: 4,999 more fit, one beyond does not.
        let many: Vec<String> = (0..4_999).map(|i| format!("u_x{i}")).collect();
        assert_eq!(
            contacts(&w, &alice, json!({"add": many})).await.unwrap()["count"],
            5_000
        );
        let e = contacts(&w, &alice, json!({"add": ["u_onemore"]}))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        // Swapping one for another at the limit is fine.
        assert_eq!(
            contacts(
                &w,
                &alice,
                json!({"add": ["u_onemore"], "remove": ["u_x0"]})
            )
            .await
            .unwrap()["count"],
            5_000
        );
    }

    #[tokio::test]
    async fn read_receipts_off_sends_no_read_and_sees_none_delivered_still_works() {
        let (w, a, b, _) = World::with_three_users().await;
        let (alice, bob) = (who(&a, "d_0"), who(&b, "d_1"));
        let s = w.open(&alice, &b).await;
        let a_conn = w.connect(&alice, "ca").await;
        let b_conn = w.connect(&bob, "cb").await;
        let m1 = w.send_text(&alice, &s, "c-1", "1").await.unwrap()["msgId"]
            .as_str()
            .unwrap()
            .to_owned();
        let ack = |by: &DeviceCredential, id: &str, st: &str| {
            ack_as(&w, &s, by.clone(), id.to_owned(), st.to_owned())
        };
        let status = |by: &DeviceCredential, id: &str| status_as(&w, by.clone(), id.to_owned());
        update(&w, &bob, json!({"privacy": {"readReceipts": false}}))
            .await
            .unwrap();
        // Bob reads with receipts off: his watermark moves (his devices stay in sync) but Alice
        // gets no read event and sees delivered only.
        assert_eq!(ack(&bob, &m1, "read").await["moved"], true);
        assert!(w.frames_to(&a_conn).iter().all(|f| f["event"] != "status"));
        let st = status(&alice, &m1).await;
        assert_eq!(st["status"], "delivered");
        assert_eq!(st["recipients"][0]["status"], "delivered");
        // Delivered receipts still reach Alice.
        let m2 = w.send_text(&alice, &s, "c-2", "2").await.unwrap()["msgId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(ack(&bob, &m2, "delivered").await["moved"], true);
        let events: Vec<_> = w
            .frames_to(&a_conn)
            .into_iter()
            .filter(|f| f["event"] == "status")
            .collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["status"], "delivered");
        // Bob, receipts off, sees no read from Alice either.
        let b1 = w.send_text(&bob, &s, "b-1", "hi").await.unwrap()["msgId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(ack(&alice, &b1, "read").await["moved"], true);
        assert!(w.frames_to(&b_conn).iter().all(|f| f["status"] != "read"));
        assert_eq!(status(&bob, &b1).await["status"], "delivered");
        // Turned back on: Alice's stored read shows, and Bob's too.
        update(&w, &bob, json!({"privacy": {"readReceipts": true}}))
            .await
            .unwrap();
        assert_eq!(status(&bob, &b1).await["status"], "read");
        assert_eq!(status(&alice, &m1).await["status"], "read");
    }

    #[tokio::test]
    async fn groups_add_contacts_refuses_strangers_and_changes_nothing() {
        let (w, a, b, c) = World::with_three_users().await;
        let (alice, bob, carol) = (who(&a, "d_0"), who(&b, "d_1"), who(&c, "d_2"));
        update(&w, &carol, json!({"privacy": {"groupsAdd": "contacts"}}))
            .await
            .unwrap();
        contacts(&w, &carol, json!({"add": [b]})).await.unwrap();
        let gdeps = w.group_deps();
        // Alice is not in Carol's contacts: refused at creation, no group is made.
        let p: InitiateGroupParams =
            serde_json::from_value(json!({"name": "g", "members": [b, c]})).unwrap();
        let e = groups::initiate(&gdeps, &alice, p).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(e.message.contains(c.as_str()), "{}", e.message);
        assert!(w.sessions.sessions_of(&b).await.unwrap().is_empty());
        // ...and when adding her to an existing group.
        let p: InitiateGroupParams =
            serde_json::from_value(json!({"name": "g", "members": [b]})).unwrap();
        let g = groups::initiate(&gdeps, &alice, p).await.unwrap().json()["groupId"]
            .as_str()
            .unwrap()
            .to_owned();
        let add = |by: DeviceCredential| {
            let p: GroupMemberParams =
                serde_json::from_value(json!({"groupId": g, "userId": c})).unwrap();
            let gdeps = &gdeps;
            async move { groups::add(gdeps, &by, p).await }
        };
        let e = add(alice.clone()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert_eq!(
            w.sessions
                .members(&SessionId::parse(&g).unwrap())
                .await
                .unwrap()
                .len(),
            2
        );
        // Bob is her contact: once admin, he may add her.
        let p: GroupMemberParams =
            serde_json::from_value(json!({"groupId": g, "userId": b})).unwrap();
        groups::promote(&gdeps, &alice, p).await.unwrap();
        assert_eq!(add(bob.clone()).await.unwrap().json()["added"], true);
        // And Bob may create a group with her.
        let p: InitiateGroupParams =
            serde_json::from_value(json!({"name": "h", "members": [c]})).unwrap();
        groups::initiate(&gdeps, &bob, p).await.unwrap();
    }
}

#[tokio::test]
async fn send_says_whether_the_message_is_new_and_its_kind() {
    let (w, a, b, _) = World::with_three_users().await;
    let s = w.open(&who(&a, "d_0"), &b).await;
    let p = || -> SendMessageParams {
        serde_json::from_value(
            json!({"sessionId": s, "clientMsgId": "c-1", "type": "text", "payload": "aGk="}),
        )
        .unwrap()
    };
    let first = send_message::send(&w.send_deps(), &who(&a, "d_0"), p())
        .await
        .unwrap();
    assert!(first.new);
    assert_eq!(first.kind, "direct");
    // A retry with the same clientMsgId stores nothing new and answers the same.
    let again = send_message::send(&w.send_deps(), &who(&a, "d_0"), p())
        .await
        .unwrap();
    assert!(!again.new);
    assert_eq!(again.reply, first.reply);
    // The first hands on the stored message and the session's two members for its inline
    // delivery; the retry hands on nothing (the first attempt, or the stream, delivers).
    let out = first.outbound.expect("a new message to deliver");
    assert_eq!(out.message.payload, "aGk=");
    assert_eq!(out.message.seq, 1);
    let mut members: Vec<_> = out
        .members
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    members.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(members, expected);
    assert!(again.outbound.is_none());
    assert!(w.messages.is_inline(&out.message.msg_id));
}

#[tokio::test]
async fn inline_delivery_reaches_every_device_but_the_senders_and_records_done() {
    let (w, a, b, _) = World::with_three_users().await;
    let s = w.open(&who(&a, "d_0"), &b).await;
    let a_conn = w.connect(&who(&a, "d_0"), "ca").await;
    let a_laptop = w.connect(&who(&a, "d_9"), "ca9").await;
    let b_conn = w.connect(&who(&b, "d_1"), "cb").await;
    let p: SendMessageParams = serde_json::from_value(
        json!({"sessionId": s, "clientMsgId": "c-1", "type": "text", "payload": "aGk="}),
    )
    .unwrap();
    let sent = send_message::send(&w.send_deps(), &who(&a, "d_0"), p)
        .await
        .unwrap();
    let out = sent.outbound.unwrap();
    let (outcome, report) =
        fan_out::deliver_inline(&w.sessions, &w.deliverer(), &w.messages, &out).await;
    assert_eq!(outcome, courier_core::chat::InlineOutcome::Done);
    assert_eq!(report.unwrap().posted, 2);
    assert!(w.frames_to(&a_conn).is_empty(), "not to the sending device");
    for c in [&a_laptop, &b_conn] {
        let frames = w.frames_to(c);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["message"]["msgId"], out.message.msg_id.as_str());
    }
    assert_eq!(
        w.messages.outcome(&out.message.id()).await.unwrap(),
        Some(courier_core::chat::InlineOutcome::Done)
    );
}

#[tokio::test]
async fn a_groups_inline_delivery_reads_its_members_after_the_write() {
    use courier_core::usecases::groups;
    let (w, a, b, c) = World::with_three_users().await;
    let deps = w.group_deps();
    let created = groups::initiate(
        &deps,
        &who(&a, "d_0"),
        serde_json::from_value(json!({"name": "g", "members": [b.to_string()]})).unwrap(),
    )
    .await
    .unwrap();
    let created = created.json();
    let g = created["groupId"].as_str().unwrap().to_owned();
    let p: SendMessageParams = serde_json::from_value(
        json!({"sessionId": g, "clientMsgId": "c-1", "type": "text", "payload": "aGk="}),
    )
    .unwrap();
    let sent = send_message::send(&w.send_deps(), &who(&a, "d_0"), p)
        .await
        .unwrap();
    let out = sent.outbound.unwrap();
    assert!(
        out.members.is_none(),
        "a group's members are read after the write"
    );
    // Someone added after the write (their join point is past the message) does not get it.
    groups::add(
        &deps,
        &who(&a, "d_0"),
        serde_json::from_value(json!({"groupId": g, "userId": c.to_string()})).unwrap(),
    )
    .await
    .unwrap();
    let c_conn = w.connect(&who(&c, "d_2"), "cc").await;
    let b_conn = w.connect(&who(&b, "d_1"), "cb").await;
    let (outcome, _) =
        fan_out::deliver_inline(&w.sessions, &w.deliverer(), &w.messages, &out).await;
    assert_eq!(outcome, courier_core::chat::InlineOutcome::Done);
    assert_eq!(w.frames_to(&b_conn).len(), 1);
    assert!(w.frames_to(&c_conn).is_empty());
}

#[tokio::test]
async fn inline_delivery_that_fails_to_post_asks_the_stream_to_retry() {
    let (w, a, b, _) = World::with_three_users().await;
    let s = w.open(&who(&a, "d_0"), &b).await;
    w.connect(&who(&b, "d_1"), "cb").await;
    let p: SendMessageParams = serde_json::from_value(
        json!({"sessionId": s, "clientMsgId": "c-1", "type": "text", "payload": "aGk="}),
    )
    .unwrap();
    let out = send_message::send(&w.send_deps(), &who(&a, "d_0"), p)
        .await
        .unwrap()
        .outbound
        .unwrap();
    /// The management API down: every post fails, not with Gone.
    struct Down;
    #[async_trait::async_trait]
    impl ConnectionGateway for Down {
        async fn post(&self, _: &ConnectionId, _: &str) -> Result<(), GatewayError> {
            Err(courier_core::error::PortError::backend("unavailable").into())
        }
        async fn close(&self, _: &ConnectionId) -> Result<(), GatewayError> {
            Ok(())
        }
    }
    let deliver = Deliverer {
        gateway: &Down,
        ..w.deliverer()
    };
    let (outcome, report) = fan_out::deliver_inline(&w.sessions, &deliver, &w.messages, &out).await;
    assert!(report.is_err());
    assert_eq!(outcome, courier_core::chat::InlineOutcome::Retry);
    assert_eq!(
        w.messages.outcome(&out.message.id()).await.unwrap(),
        Some(courier_core::chat::InlineOutcome::Retry)
    );
}

#[test]
fn the_stream_delivers_only_what_inline_delivery_did_not_finish() {
    use courier_core::chat::InlineOutcome::{Done, Retry};
    use fan_out::StreamAction::{Deliver, Skip, Wait};
    use fan_out::stream_action;
    // Written for the stream alone (group changes, handshakes): always delivered.
    assert_eq!(stream_action(false, None), Deliver);
    assert_eq!(stream_action(false, Some(Done)), Deliver);
    assert_eq!(stream_action(true, Some(Done)), Skip);
    assert_eq!(stream_action(true, Some(Retry)), Deliver);
    assert_eq!(stream_action(true, None), Wait);
}

/// Issue 21, item 3: a stranger may open direct chats (each may carry a handshake) with a user
/// only so often a day; the user's contacts are not counted.
#[tokio::test]
async fn strangers_may_open_chats_with_a_user_only_so_often_a_day() {
    use courier_core::rate_limit::DAY_SECS;
    let (w, a, b, c) = World::with_three_users().await;
    let limiter = MemoryRateLimiter::default();
    let capped = direct_chat::Deps {
        handshakes_per_target: Some(two_a_day_from_strangers(&w, &limiter, "chats")),
        ..w.chat_deps()
    };
    w.add_contact(&b, &c).await;
    let open = |by: DeviceCredential, n: usize| {
        let p = InitiateDirectChatParams {
            peer_user_id: b.to_string(),
            handshake: Some(format!("hs-{n}")),
        };
        let capped = &capped;
        async move { direct_chat::initiate(capped, &by, p).await }
    };
    for n in 0..2 {
        open(who(&a, "d_0"), n).await.unwrap();
    }
    let e = open(who(&a, "d_0"), 2).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.retry_after_secs.is_some_and(|s| s > 0 && s <= DAY_SECS));
    let session = SessionId::direct(&a, &b);
    assert_eq!(
        w.messages.all(&session).len(),
        2,
        "the refused handshake is not stored"
    );
    // Carol, Bob's contact, is not limited.
    for n in 0..3 {
        open(who(&c, "d_2"), n).await.unwrap();
    }
}

/// Issue 21 item 10: 100 messages of 65,536 characters (what a stranger's handshakes can be)
/// read 100 at a time made a 6.5 MB reply, over API Gateway's 128 KB frame: the reader's sync
/// stalled on them for good. Pages now fit a frame, and following `hasMore` reads every
/// message once, in order.
#[tokio::test]
async fn pages_of_large_messages_fit_a_reply_frame_and_carry_every_message_once() {
    let (w, a, b, _) = World::with_three_users().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    for i in 0..100 {
        let payload = format!("{i:03}{}", "x".repeat(MAX_PAYLOAD_CHARS - 3));
        w.send_text(&da, &s, &format!("c-{i}"), &payload)
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    let mut last: Option<String> = None;
    let mut pages = 0;
    loop {
        let p: ReadNewMessagesParams =
            serde_json::from_value(json!({"sessionId": s, "lastMsgId": last, "limit": 100}))
                .unwrap();
        let page = read_messages::read_new_messages(&w.sessions, &w.messages, &w.clock, &db, p)
            .await
            .unwrap();
        pages += 1;
        let page = support::page_in_one_frame(&page);
        let messages = page["messages"].as_array().unwrap();
        seqs.extend(messages.iter().map(|m| m["seq"].as_u64().unwrap()));
        last = messages.last().unwrap()["msgId"]
            .as_str()
            .map(str::to_owned);
        if page.json()["hasMore"] != true {
            break;
        }
    }
    assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
    assert!(pages > 1, "{pages} page(s)");
}

/// Issue 21 item 10: `listSessions` is paged by session id (`after`, `limit`, `hasMore`), so
/// anyone can put a user in 150 groups without making its list one slow, large reply.
#[tokio::test]
async fn list_sessions_pages_by_session_id_and_lists_each_session_once() {
    let (w, a, b, _) = World::with_three_users().await;
    let da = who(&a, "d_0");
    let first = w.open(&da, &b).await;
    w.send_text(&da, &first, "c-1", "hello").await.unwrap();
    let mut all = vec![first.clone()];
    for _ in 0..149 {
        let peer = UserId::generate();
        let s = SessionId::direct(&a, &peer);
        w.sessions
            .create_direct(&s, &a, &peer, w.clock.now())
            .await
            .unwrap();
        all.push(s.to_string());
    }
    all.sort();
    let list = |after: Option<String>, limit: Option<u32>| {
        let p: ListSessionsParams =
            serde_json::from_value(json!({"after": after, "limit": limit})).unwrap();
        direct_chat::list_sessions(&w.sessions, &w.messages, &da, p)
    };
    // The default page is 50.
    let page = list(None, None).await.unwrap();
    assert_eq!(page.json()["sessions"].as_array().unwrap().len(), 50);
    assert_eq!(page.json()["hasMore"], true);

    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = list(after.clone(), Some(7)).await.unwrap();
        let page = page.json();
        let sessions = page["sessions"].as_array().unwrap();
        assert!(sessions.len() <= 7);
        for s in sessions {
            if s["sessionId"] == first.as_str() {
                // The existing fields are all still there.
                assert_eq!(s["type"], "direct");
                assert_eq!(s["lastSeq"], 1);
                assert_eq!(s["members"].as_array().unwrap().len(), 2);
                assert_eq!(s["readSeq"], 0);
                assert!(s["lastMsgId"].is_string());
            }
            listed.push(s["sessionId"].as_str().unwrap().to_owned());
        }
        after = listed.last().cloned();
        if page.json()["hasMore"] != true {
            break;
        }
    }
    assert_eq!(listed, all, "every session once, by id");

    for (after, limit, says) in [
        (None, Some(0), "limit"),
        (None, Some(101), "limit"),
        (Some("not a session".to_owned()), None, "after"),
    ] {
        let e = list(after, limit).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains(says), "{}", e.message);
    }
    // The largest page is allowed.
    assert_eq!(
        list(None, Some(100)).await.unwrap().json()["sessions"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
}
