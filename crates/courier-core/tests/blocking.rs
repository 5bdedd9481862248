//! `blockUser`, `unblockUser`, `listBlocked` and `reportUser` on in-memory ports, and what a
//! block changes: a blocked user's direct messages are accepted but withheld (never delivered,
//! pushed or read), its typing is not shown, the blocker's profile fields and statuses are
//! hidden from it, and it cannot add the blocker to groups; a report is stored and blocks.

mod support;

use courier_core::clock::Clock;
use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::rate_limit::Throttle;
use courier_core::settings::{Audience, Settings};
use courier_core::usecases::{blocks, groups, profile, receipts, send_message, typing};
use courier_core::{ErrorCode, UserId};
use serde_json::{Value, json};
use support::{Wire, World, who};

impl World {
    fn block_deps(&self) -> blocks::Deps<'_> {
        blocks::Deps {
            settings: &self.settings,
            accounts: &self.accounts,
            clock: &self.clock,
        }
    }

    async fn block(&self, by: &DeviceCredential, user: &UserId) {
        let p = BlockParams {
            user_id: user.to_string(),
        };
        let r = blocks::block_user(&self.block_deps(), by, p).await.unwrap();
        assert!(r.blocked);
    }

    async fn text(&self, from: &DeviceCredential, session: &str, cmid: &str) -> Value {
        self.send_text(from, session, cmid, cmid).await.unwrap()
    }

    /// Sends and delivers (as the stream would), as the function does.
    async fn text_delivered(&self, from: &DeviceCredential, session: &str, cmid: &str) -> Value {
        let p: SendMessageParams = serde_json::from_value(
            json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": cmid}),
        )
        .unwrap();
        let sent = send_message::send(&self.send_deps(), from, p)
            .await
            .unwrap();
        let out = sent.outbound.unwrap();
        courier_core::usecases::fan_out::deliver_stored(
            &self.sessions,
            &self.deliverer(),
            &out.message,
            out.members.as_deref(),
        )
        .await
        .unwrap();
        sent.reply.json()
    }

    async fn payloads_read_by(&self, by: &DeviceCredential, session: &str) -> Vec<String> {
        self.read_all(by, session)
            .await
            .iter()
            .map(|m| m["payload"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn a_blocked_users_messages_are_accepted_but_never_reach_the_blocker() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let (da, da2, db) = (who(&a, "d_0"), who(&a, "d_0b"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    let b_phone = w.connect(&db, "cb1").await;
    let a_laptop = w.connect(&da2, "ca2").await;
    w.offline_with_push(&who(&b, "d_1b")).await;
    w.text_delivered(&da, &s, "before-block").await;
    assert_eq!(w.frames_to(&b_phone).len(), 1);
    let pushes = w.push.sent().len();

    w.block(&db, &a).await;
    // Accepted as ever: Alice cannot tell.
    let sent = w.text_delivered(&da, &s, "while-blocked").await;
    assert_eq!(sent["seq"], 2);
    assert_eq!(w.frames_to(&b_phone).len(), 1, "not delivered to Bob");
    assert_eq!(w.push.sent().len(), pushes, "not pushed to Bob");
    assert_eq!(
        w.frames_to(&a_laptop).len(),
        2,
        "Alice's other device sees her own message"
    );
    assert_eq!(w.payloads_read_by(&db, &s).await, ["before-block"]);
    assert_eq!(
        w.payloads_read_by(&da, &s).await,
        ["before-block", "while-blocked"]
    );
    // Bob reads on past it: Alice still sees one tick, and Bob cannot look it up.
    w.text(&db, &s, "from-bob").await;
    let ack: AckMessagesParams = serde_json::from_value(
        json!({"sessionId": s, "msgId": format!("{s}.3"), "status": "read"}),
    )
    .unwrap();
    let deps = receipts::AckDeps {
        sessions: &w.sessions,
        messages: &w.messages,
        deliver: w.deliverer(),
        settings: &w.settings,
        clock: &w.clock,
    };
    receipts::ack_messages(&deps, &db, ack).await.unwrap();
    let status = |by: DeviceCredential| {
        let id = sent["msgId"].as_str().unwrap().to_owned();
        let w = &w;
        async move {
            receipts::get_message_status(
                &w.sessions,
                &w.messages,
                &w.settings,
                &w.clock,
                &by,
                GetMessageStatusParams { msg_id: id },
            )
            .await
        }
    };
    assert_eq!(
        status(da.clone()).await.unwrap().status,
        courier_core::chat::Receipt::Sent
    );
    assert_eq!(
        status(db.clone()).await.unwrap_err().code,
        ErrorCode::NotFound
    );

    // Alice deletes what was withheld: Bob is not told of a message he never saw.
    let frames = w.frames_to(&b_phone).len();
    let deps = w.delete_message_deps();
    let p = DeleteMessageParams {
        session_id: s.clone(),
        msg_id: sent["msgId"].as_str().unwrap().to_owned(),
    };
    courier_core::usecases::delete_message::delete_message(&deps, &da, p)
        .await
        .unwrap();
    assert_eq!(
        w.frames_to(&b_phone).len(),
        frames,
        "no messageDeleted for Bob"
    );
    assert_eq!(
        w.payloads_read_by(&db, &s).await,
        ["before-block", "from-bob"]
    );

    // Unblocked: new messages arrive; what was withheld stays withheld.
    let p = BlockParams {
        user_id: a.to_string(),
    };
    assert!(
        !blocks::unblock_user(&w.block_deps(), &db, p)
            .await
            .unwrap()
            .blocked
    );
    w.text_delivered(&da, &s, "after-unblock").await;
    assert_eq!(w.frames_to(&b_phone).len(), 2);
    assert_eq!(
        w.payloads_read_by(&db, &s).await,
        ["before-block", "from-bob", "after-unblock"]
    );
}

#[tokio::test]
async fn a_blocked_user_sees_no_typing_profile_or_status_and_cannot_add_the_blocker() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    let mut settings = Settings::default();
    settings.display.about = Some("at work".into());
    settings.privacy.status = Audience::Everyone;
    w.settings.put_settings(&b, &settings).await.unwrap();
    let b_phone = w.connect(&db, "cb1").await;
    w.block(&db, &a).await;

    let t = typing::Deps {
        sessions: &w.sessions,
        settings: &w.settings,
        deliver: w.deliverer(),
        clock: &w.clock,
        throttle: None,
    };
    let p = SendTypingParams {
        session_id: s.clone(),
        typing: true,
    };
    typing::send_typing(&t, &da, p).await.unwrap();
    assert!(
        w.frames_to(&b_phone).is_empty(),
        "no typing from a blocked user"
    );

    let pd = w.profile_deps();
    let p = GetProfileParams {
        user_id: b.to_string(),
    };
    let seen = profile::get_profile(&pd, &da, p).await.unwrap().json();
    for hidden in ["about", "avatar", "online", "lastSeen"] {
        assert!(seen.get(hidden).is_none(), "{hidden} shown: {seen}");
    }
    assert!(
        profile::may_view_statuses(&w.settings, &a, &b)
            .await
            .unwrap(),
        "a block is one way"
    );
    assert!(
        !profile::may_view_statuses(&w.settings, &b, &a)
            .await
            .unwrap()
    );

    let g = w.group_deps();
    let p: InitiateGroupParams =
        serde_json::from_value(json!({"name": "g", "members": [&b]})).unwrap();
    let err = groups::initiate(&g, &da, p).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert_eq!(
        err.message,
        format!("{b} does not let you add them to groups"),
        "worded as the privacy refusal"
    );

    let listed = blocks::list_blocked(&w.block_deps(), &db, ListBlockedParams {})
        .await
        .unwrap();
    assert_eq!(listed.user_ids, [a.to_string()]);
    let bad = |id: &str| BlockParams { user_id: id.into() };
    let deps = w.block_deps();
    assert_eq!(
        blocks::block_user(&deps, &db, bad(&b.to_string()))
            .await
            .unwrap_err()
            .code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        blocks::block_user(&deps, &db, bad("u_nobody"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn a_report_is_stored_for_moderation_with_only_the_reported_users_messages_and_blocks() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let c = w.user("+14155550102", "d_2").await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    let spam = w.text(&da, &s, "buy now").await["msgId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = w.text(&db, &s, "stop").await["msgId"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = w.open(&da, &c).await;
    let elsewhere = w.text(&da, &other, "hi c").await["msgId"]
        .as_str()
        .unwrap()
        .to_owned();
    let limiter = courier_core::memory::MemoryRateLimiter::default();
    let deps = blocks::ReportDeps {
        blocks: w.block_deps(),
        sessions: &w.sessions,
        messages: &w.messages,
        reports: &w.objects,
        budget: Some(Throttle {
            limiter: &limiter,
            rule: blocks::REPORTS_PER_DAY,
        }),
    };
    let report = |msgs: Vec<(&str, &str)>| ReportUserParams {
        user_id: a.to_string(),
        messages: msgs
            .into_iter()
            .map(|(id, text)| ReportedMessage {
                msg_id: id.into(),
                text: text.into(),
            })
            .collect(),
    };
    // Not Bob's to report: his own words, a chat he is not in, too many.
    let e = blocks::report_user(&deps, &db, report(vec![(&mine, "stop")])).await;
    assert_eq!(e.unwrap_err().code, ErrorCode::BadRequest);
    let e = blocks::report_user(&deps, &db, report(vec![(&elsewhere, "hi c")])).await;
    assert_eq!(e.unwrap_err().code, ErrorCode::NotFound);
    let e = blocks::report_user(&deps, &db, report(vec![(&spam, "x"); 6])).await;
    assert_eq!(e.unwrap_err().code, ErrorCode::BadRequest);
    assert!(
        w.objects.keys().is_empty(),
        "a refused report stores nothing"
    );
    assert!(!w.settings.has_blocked(&b, &a).await.unwrap());

    let filed = blocks::report_user(&deps, &db, report(vec![(&spam, "buy now")]))
        .await
        .unwrap();
    assert!(filed.blocked);
    let keys = w.objects.keys();
    assert_eq!(keys.len(), 1);
    let day = w.clock.now().format("%Y-%m-%d");
    assert_eq!(keys[0], format!("reports/{day}/{}.json", filed.report_id));
    let stored: Value = serde_json::from_slice(&w.objects.get(&keys[0]).unwrap().body).unwrap();
    assert_eq!(stored["reporter"], b.to_string());
    assert_eq!(stored["reported"], a.to_string());
    assert_eq!(stored["messages"][0]["msgId"], spam.as_str());
    assert_eq!(stored["messages"][0]["text"], "buy now");
    assert!(
        w.settings.has_blocked(&b, &a).await.unwrap(),
        "reporting blocks"
    );

    // 20 a day per account (the refused ones above counted too).
    let mut last = Ok(());
    for _ in 0..20 {
        last = blocks::report_user(&deps, &db, report(vec![]))
            .await
            .map(drop);
    }
    assert_eq!(last.unwrap_err().code, ErrorCode::LimitExceeded);
}
