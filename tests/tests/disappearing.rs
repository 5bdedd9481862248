//! Disappearing messages end to end, on a cloud of its own whose template allows a 3-second test
//! timer (`DisappearingTestSeconds`): real WebSocket clients -> the local gateway -> the
//! `messages` function binary -> DynamoDB Local (the timer, `expiresAt` and the `ttl` attribute
//! read back from the table) -> the stream's fan-out (the session's floor).

use aws_sdk_dynamodb::types::AttributeValue;
use courier_client::Session;
use courier_core::ErrorCode;
use courier_tests::{
    TestCloud, connect, eventually, is_message, next, open_chat, open_group, until_marker,
};
use serde_json::{Value, json};
use std::time::Duration;

const TEST_TIMER: u32 = 3;

async fn set_timer(s: &Session, session: &str, seconds: u32) -> Result<Value, ErrorCode> {
    s.request(
        "setDisappearingTimer",
        json!({"sessionId": session, "seconds": seconds}),
    )
    .await
    .map_err(|e| e.code().expect("an API error"))
}

async fn send(s: &Session, session: &str, cmid: &str, payload: &str) -> Value {
    s.request(
        "sendMessage",
        json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": payload}),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_message_sent_under_the_timer_disappears_from_the_server_at_its_expiry() {
    let cloud = TestCloud::start(&[&format!("DisappearingTestSeconds={TEST_TIMER}")])
        .expect("the local cloud starts");
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(&cloud, &alice).await;
    let b = connect(&cloud, &bob).await;
    let chat = open_chat(&a, &bob).await;
    let kept = send(&a, &chat, "c-0", "ciphertext-kept").await;

    // Only the allowed timers; a stranger to the chat learns nothing.
    assert_eq!(
        set_timer(&a, &chat, 60).await.unwrap_err(),
        ErrorCode::BadRequest
    );
    let mallory = cloud.sign_up().await;
    let m = connect(&cloud, &mallory).await;
    assert_eq!(
        set_timer(&m, &chat, TEST_TIMER).await.unwrap_err(),
        ErrorCode::NotFound
    );

    let set = set_timer(&a, &chat, TEST_TIMER).await.unwrap();
    assert_eq!(set["seconds"], TEST_TIMER);
    let e = next(&b, "disappearingTimer").await;
    assert_eq!(
        (&e["sessionId"], &e["seconds"], &e["by"]),
        (&json!(chat), &json!(TEST_TIMER), &json!(alice.user_id))
    );
    assert_eq!(e["message"]["msgId"], set["msgId"]);

    let sent = send(&a, &chat, "c-1", "ciphertext-fleeting").await;
    let expires = sent["expiresAt"]
        .as_str()
        .expect("the reply says when")
        .to_owned();
    let got = until_marker(&b, |e| is_message(e, "ciphertext-fleeting")).await;
    assert_eq!(
        got.last().unwrap()["message"]["expiresAt"],
        expires.as_str()
    );

    // Stored with DynamoDB's TTL attribute (epoch seconds of its expiry).
    let seq = sent["seq"].as_u64().unwrap();
    let item = |seq: u64| {
        let (db, table, chat) = (cloud.dynamodb(), cloud.table("MessagesTable"), chat.clone());
        async move {
            db.get_item()
                .table_name(table)
                .key("sessionId", AttributeValue::S(chat))
                .key("seq", AttributeValue::N(seq.to_string()))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
        }
    };
    let stored = item(seq).await.unwrap();
    let expiry = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    assert_eq!(
        stored["ttl"],
        AttributeValue::N(expiry.timestamp().to_string())
    );
    // The fan-out raised the session's floor above it (its head item, seq 0).
    eventually("the session's floor", Duration::from_secs(20), async || {
        let head = item(0).await?;
        let floor = head.get("floor")?.as_n().ok()?.parse::<u64>().ok()?;
        (floor >= seq).then_some(())
    })
    .await;

    // At its expiry no read returns it, for anyone.
    let wait = (expiry.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(500)).await;
    let b2 = connect(&cloud, &bob).await;
    let page = b2.read_new_messages(&chat, None, None).await.unwrap();
    let ids: Vec<&str> = page.messages.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            kept["msgId"].as_str().unwrap(),
            set["msgId"].as_str().unwrap()
        ],
        "the message before the timer and the timer's record, not the one that disappeared"
    );
    let err = a
        .request("getMessageStatus", json!({"msgId": sent["msgId"]}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let err = a
        .delete_message(&chat, sent["msgId"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");

    // Turned off: the next message has no expiry and stays.
    let off = set_timer(&b, &chat, 0).await.unwrap();
    assert!(off.get("msgId").is_some());
    let after = send(&a, &chat, "c-2", "ciphertext-after").await;
    assert!(after.get("expiresAt").is_none(), "{after}");
    assert!(
        !item(after["seq"].as_u64().unwrap())
            .await
            .unwrap()
            .contains_key("ttl")
    );
}

#[tokio::test]
async fn in_a_group_only_an_admin_sets_the_timer() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(cloud, &alice).await;
    let b = connect(cloud, &bob).await;
    let group = open_group(&a, "g", &[&bob.user_id]).await;
    assert_eq!(
        set_timer(&b, &group, 86_400).await.unwrap_err(),
        ErrorCode::Forbidden
    );
    // The shared cloud allows no test timer: only the product's values.
    assert_eq!(
        set_timer(&a, &group, TEST_TIMER).await.unwrap_err(),
        ErrorCode::BadRequest
    );
    set_timer(&a, &group, 604_800).await.unwrap();
    let e = next(&b, "disappearingTimer").await;
    assert_eq!(e["seconds"], 604_800);
    let sent = send(&b, &group, "g-1", "ciphertext-group").await;
    assert!(
        sent.get("expiresAt").is_some(),
        "a member's message follows the admin's timer"
    );
}
