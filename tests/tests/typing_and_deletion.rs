//! Typing notices and delete-for-everyone end to end: real WebSocket clients -> the local
//! gateway -> the `messages` function binary -> DynamoDB Local, the stored item read back.

use aws_sdk_dynamodb::types::AttributeValue;
use courier_client::Session;
use courier_core::ErrorCode;
use courier_tests::{TestCloud, connect, is_message, next, open_chat, until_marker};
use serde_json::{Value, json};

async fn send(s: &Session, session: &str, cmid: &str, payload: &str) -> String {
    s.request(
        "sendMessage",
        json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": payload}),
    )
    .await
    .unwrap()["msgId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_message_deleted_for_everyone_loses_its_ciphertext_and_every_device_learns_it() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(cloud, &alice).await;
    let b = connect(cloud, &bob).await;
    let chat = open_chat(&a, &bob).await;
    let kept = send(&a, &chat, "c-1", "ciphertext-kept").await;
    let gone = send(&a, &chat, "c-2", "ciphertext-gone").await;
    until_marker(&b, |e| is_message(e, "ciphertext-gone")).await;

    // Bob may not delete Alice's message; nothing changes.
    let err = b.delete_message(&chat, &gone).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    a.delete_message(&chat, &gone).await.unwrap();
    let e = next(&b, "messageDeleted").await;
    assert_eq!(e["sessionId"], chat.as_str());
    assert_eq!(e["msgId"], gone.as_str());
    assert_eq!(e["by"], alice.user_id.as_str());
    // Again: the same answer, no second record.
    a.delete_message(&chat, &gone).await.unwrap();

    // The ciphertext is gone from DynamoDB, not only from the replies.
    let item = cloud
        .dynamodb()
        .get_item()
        .table_name(cloud.table("MessagesTable"))
        .key("sessionId", AttributeValue::S(chat.clone()))
        .key("seq", AttributeValue::N("2".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("payload"), "{item:?}");
    assert_eq!(item["type"], AttributeValue::S("deleted".into()));

    // A device that was offline reads the tombstone, then the record, on sync.
    let b2 = connect(cloud, &bob).await;
    let page = b2.read_new_messages(&chat, None, None).await.unwrap();
    let got: Vec<Value> = page
        .messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0]["msgId"], kept.as_str());
    assert_eq!(got[0]["payload"], "ciphertext-kept");
    assert_eq!(
        (got[1]["msgId"].as_str(), got[1]["type"].as_str()),
        (Some(gone.as_str()), Some("deleted"))
    );
    assert_eq!(got[1]["payload"], "", "no payload on the wire: {}", got[1]);
    assert_eq!(got[2]["type"], "system");
    assert!(
        got[2]["payload"]
            .as_str()
            .unwrap()
            .contains("messageDeleted")
    );
}

#[tokio::test]
async fn typing_reaches_the_peer_live_unless_last_seen_hides_it_and_floods_are_refused() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(cloud, &alice).await;
    let b = connect(cloud, &bob).await;
    let chat = open_chat(&a, &bob).await;

    a.send_typing(&chat, true).await.unwrap();
    let e = next(&b, "typing").await;
    assert_eq!(
        (
            e["sessionId"].as_str(),
            e["userId"].as_str(),
            e["typing"].as_bool()
        ),
        (
            Some(chat.as_str()),
            Some(alice.user_id.as_str()),
            Some(true)
        )
    );
    // Nothing is stored: the chat has no message.
    assert!(
        b.read_new_messages(&chat, None, None)
            .await
            .unwrap()
            .messages
            .is_empty()
    );

    // Alice hides her presence: her typing reaches no one; a message after it still arrives.
    a.request("updateSettings", json!({"privacy": {"lastSeen": "nobody"}}))
        .await
        .unwrap();
    a.send_typing(&chat, true).await.unwrap();
    send(&a, &chat, "c-after", "after-hidden-typing").await;
    let before = until_marker(&b, |e| is_message(e, "after-hidden-typing")).await;
    assert!(
        before.iter().all(|e| e["event"] != "typing"),
        "hidden typing arrived: {before:?}"
    );

    // A stranger to the chat reaches no one.
    let mallory = cloud.sign_up().await;
    let m = connect(cloud, &mallory).await;
    let err = m.send_typing(&chat, true).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");

    // A flood is cut at the send rule's burst (60 on the local cloud).
    let mut refused = None;
    for i in 0..80 {
        if let Err(e) = a.send_typing(&chat, false).await {
            refused = Some((i, e.code()));
            break;
        }
    }
    let (i, code) = refused.expect("80 typing notices in a burst were all served");
    assert_eq!(code, Some(ErrorCode::LimitExceeded));
    assert!(i >= 50, "refused after only {i}");
}
