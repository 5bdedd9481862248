//! `setDisappearingTimer` on in-memory ports: who may change it, which values, the record and
//! the event, and messages that disappear from every read at their `expiresAt`.

mod support;

use chrono::Duration;
use courier_core::ErrorCode;
use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::usecases::{delete_message, disappearing, groups, receipts};
use serde_json::{Value, json};
use support::{Wire, World, who};

const DAY: u32 = 86_400;

impl World {
    async fn set_timer(
        &self,
        by: &DeviceCredential,
        session: &str,
        seconds: u32,
    ) -> Result<Value, courier_core::ApiError> {
        let p = SetDisappearingTimerParams {
            session_id: session.into(),
            seconds,
        };
        disappearing::set_disappearing_timer(&self.disappearing_deps(), by, p)
            .await
            .map(|r| Wire::json(&r))
    }

    async fn say(&self, from: &DeviceCredential, session: &str, cmid: &str) -> Value {
        self.send_text(from, session, cmid, "secret").await.unwrap()
    }
}

fn ids(page: &[Value]) -> Vec<String> {
    page.iter()
        .map(|m| m["msgId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn messages_sent_while_the_timer_is_on_disappear_from_every_read_at_their_expiry() {
    let (w, a, b, s) = World::two().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let before = w.say(&da, &s, "c-0").await;
    let b_phone = w.connect(&db, "cb1").await;
    // Bob's tablet is offline with a push token: a timer change does not wake it.
    w.offline_with_push(&who(&b, "d_1b")).await;

    let set = w.set_timer(&da, &s, DAY).await.unwrap();
    assert_eq!(set["seconds"], DAY);
    let record_id = set["msgId"].as_str().unwrap().to_owned();
    assert!(w.push.sent().is_empty(), "a timer change wakes no phone");
    // Bob's live phone is told.
    let events: Vec<Value> = w
        .frames_to(&b_phone)
        .into_iter()
        .filter(|f| f["event"] == "disappearingTimer")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["seconds"], DAY);
    assert_eq!(events[0]["by"], a.to_string());
    assert_eq!(events[0]["message"]["msgId"], record_id.as_str());

    let after = w.say(&da, &s, "c-1").await;
    let page = w.read_all(&db, &s).await;
    let sent = page.iter().find(|m| m["msgId"] == after["msgId"]).unwrap();
    let sent_at = chrono::DateTime::parse_from_rfc3339(sent["sentAt"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(sent["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - sent_at, Duration::seconds(i64::from(DAY)));
    let old = page.iter().find(|m| m["msgId"] == before["msgId"]).unwrap();
    assert!(
        old.get("expiresAt").is_none(),
        "a message from before keeps"
    );
    let record = page
        .iter()
        .find(|m| m["msgId"] == record_id.as_str())
        .unwrap();
    assert_eq!(record["type"], "system");
    assert!(record.get("expiresAt").is_none(), "the record itself stays");
    let change = DisappearingTimer::from_payload(record["payload"].as_str().unwrap()).unwrap();
    assert_eq!((change.seconds, change.by), (DAY, a.clone()));

    // A second before its expiry it is there; at its expiry it is gone for everyone.
    w.clock.advance(Duration::seconds(i64::from(DAY) - 1));
    assert!(ids(&w.read_all(&db, &s).await).contains(&after["msgId"].as_str().unwrap().into()));
    w.clock.advance(Duration::seconds(1));
    for reader in [&da, &db] {
        assert_eq!(
            ids(&w.read_all(reader, &s).await),
            vec![
                before["msgId"].as_str().unwrap().to_owned(),
                record_id.clone()
            ],
            "the expired message is skipped, what came before stays"
        );
    }
    let id = after["msgId"].as_str().unwrap().to_owned();
    let status = receipts::get_message_status(
        &w.sessions,
        &w.messages,
        &w.settings,
        &w.clock,
        &da,
        GetMessageStatusParams { msg_id: id.clone() },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code, ErrorCode::NotFound);
    let p = DeleteMessageParams {
        session_id: s.clone(),
        msg_id: id,
    };
    let err = delete_message::delete_message(&w.delete_message_deps(), &da, p)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound, "gone is gone");

    // Turned off: what follows stays.
    w.set_timer(&da, &s, 0).await.unwrap();
    let kept = w.say(&da, &s, "c-2").await;
    w.clock.advance(Duration::days(400));
    assert!(ids(&w.read_all(&db, &s).await).contains(&kept["msgId"].as_str().unwrap().into()));
}

#[tokio::test]
async fn only_the_allowed_timers_and_only_members_in_a_direct_chat() {
    let (w, a, _b, s) = World::two().await;
    let da = who(&a, "d_0");
    for bad in [1, 60, 3600, 86_401, u32::MAX] {
        let err = w.set_timer(&da, &s, bad).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{bad}");
    }
    for good in [DAY, 604_800, 7_776_000, 5, 0] {
        w.set_timer(&da, &s, good).await.unwrap();
    }
    let stranger = w.user("+14155550199", "d_9").await;
    let err = w
        .set_timer(&who(&stranger, "d_9"), &s, DAY)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound, "an outsider learns nothing");
    let err = w.set_timer(&da, "s_nonsense", DAY).await.unwrap_err();
    assert!(matches!(
        err.code,
        ErrorCode::NotFound | ErrorCode::BadRequest
    ));
}

#[tokio::test]
async fn setting_the_timer_it_has_writes_and_tells_nothing() {
    let (w, a, b, s) = World::two().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let first = w.set_timer(&da, &s, DAY).await.unwrap();
    assert!(first.get("msgId").is_some());
    let n = w.read_all(&db, &s).await.len();
    let again = w.set_timer(&db, &s, DAY).await.unwrap();
    assert_eq!(again, json!({"sessionId": s, "seconds": DAY}));
    assert_eq!(w.read_all(&db, &s).await.len(), n);
}

#[tokio::test]
async fn in_a_group_only_an_admin_changes_the_timer() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let p: InitiateGroupParams =
        serde_json::from_value(json!({"name": "g", "members": [&b]})).unwrap();
    let g = groups::initiate(&w.group_deps(), &da, p)
        .await
        .unwrap()
        .json()["groupId"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = w.set_timer(&db, &g, DAY).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    w.set_timer(&da, &g, DAY).await.unwrap();
    let m = w.say(&db, &g, "c-1").await;
    let page = w.read_all(&da, &g).await;
    let mine = page.iter().find(|x| x["msgId"] == m["msgId"]).unwrap();
    assert!(
        mine.get("expiresAt").is_some(),
        "a member's message follows the admin's timer"
    );
}

/// Reads a whole session as a client does: page after page, continuing after the last message
/// returned, or after `skippedTo` when a page had none to return.
async fn read_through(w: &World, by: &DeviceCredential, session: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let p = ReadNewMessagesParams {
            session_id: session.into(),
            last_msg_id: after.clone(),
            limit: None,
        };
        let page = courier_core::usecases::read_messages::read_new_messages(
            &w.sessions,
            &w.messages,
            &w.clock,
            by,
            p,
        )
        .await
        .unwrap();
        let page = Wire::json(&page);
        let messages = page["messages"].as_array().unwrap().clone();
        after = match messages.last() {
            Some(m) => Some(m["msgId"].as_str().unwrap().to_owned()),
            None => page["skippedTo"].as_str().map(str::to_owned),
        };
        all.extend(messages);
        if page["hasMore"] != true {
            return all;
        }
        assert!(
            after.is_some(),
            "more follow, but nothing says where: {page}"
        );
    }
    panic!("the reader never got to the end");
}

#[tokio::test]
async fn a_long_run_of_expired_messages_does_not_stop_a_reader() {
    let (w, a, b, s) = World::two().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    w.set_timer(&da, &s, 5).await.unwrap();
    // More than the pages one reply reads past (5 of 50).
    for i in 0..320 {
        w.say(&da, &s, &format!("c-{i}")).await;
    }
    w.set_timer(&da, &s, 0).await.unwrap();
    let last = w.say(&da, &s, "c-last").await;
    w.clock.advance(Duration::seconds(6));
    let read = read_through(&w, &db, &s).await;
    assert_eq!(
        ids(&read).last().map(String::as_str),
        last["msgId"].as_str(),
        "the reader gets past them to the last message"
    );
    assert_eq!(
        read.len(),
        3,
        "two timer records and the last message: {read:?}"
    );
}

#[tokio::test]
async fn timer_changes_are_rate_limited_per_device_and_a_refused_one_changes_nothing() {
    let (w, a, b, s) = World::two().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let limiter = courier_core::memory::MemoryRateLimiter::default();
    let mut deps = w.disappearing_deps();
    deps.throttle = Some(courier_core::rate_limit::Throttle {
        limiter: &limiter,
        rule: courier_core::rate_limit::Rule::TokenBucket {
            burst: 2,
            interval_ms: 60_000,
        },
    });
    let set = |seconds| SetDisappearingTimerParams {
        session_id: s.clone(),
        seconds,
    };
    // A device flipping the timer to flood the chat with records is stopped after the burst.
    disappearing::set_disappearing_timer(&deps, &da, set(DAY))
        .await
        .unwrap();
    disappearing::set_disappearing_timer(&deps, &da, set(0))
        .await
        .unwrap();
    let n = w.read_all(&db, &s).await.len();
    let err = disappearing::set_disappearing_timer(&deps, &da, set(DAY))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(w.read_all(&db, &s).await.len(), n, "no record written");
    let m = w.say(&da, &s, "c-1").await;
    assert!(m.get("expiresAt").is_none(), "the timer stayed off");
}
