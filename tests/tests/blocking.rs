//! Blocking and reporting end to end: real WebSocket clients -> the local gateway -> the
//! function binaries -> DynamoDB Local and the local S3, through the messages table's stream.

use courier_client::Session;
use courier_core::ErrorCode;
use courier_tests::{TestCloud, connect, is_message, open_chat, until_marker};
use serde_json::{Value, json};

async fn send(s: &Session, session: &str, payload: &str) -> Value {
    s.request(
        "sendMessage",
        json!({"sessionId": session, "clientMsgId": payload, "type": "text", "payload": payload}),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_blocked_user_is_answered_as_ever_but_reaches_the_blocker_nowhere() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let (a, b, c) = (
        connect(cloud, &alice).await,
        connect(cloud, &bob).await,
        connect(cloud, &carol).await,
    );
    let chat = open_chat(&a, &bob).await;
    let carols = open_chat(&c, &bob).await;
    let before = send(&a, &chat, "before the block").await;
    until_marker(&b, |e| is_message(e, "before the block")).await;

    let r = b
        .request("blockUser", json!({"userId": alice.user_id}))
        .await
        .unwrap();
    assert_eq!(r["blocked"], true);
    let listed = b.request("listBlocked", json!({})).await.unwrap();
    assert_eq!(listed["userIds"], json!([alice.user_id]));

    // Alice is answered as ever, and sees her own message when she reads.
    let withheld = send(&a, &chat, "while blocked").await;
    assert_eq!(withheld["seq"], 2);
    // Bob: Carol's marker comes, Alice's message never does, nor is it readable.
    send(&c, &carols, "marker from carol").await;
    let got = until_marker(&b, |e| is_message(e, "marker from carol")).await;
    assert!(
        got.iter().all(|e| !is_message(e, "while blocked")),
        "{got:?}"
    );
    let page = b.read_new_messages(&chat, None, None).await.unwrap();
    let payloads: Vec<_> = page.messages.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(payloads, ["before the block"]);
    let mine = a.read_new_messages(&chat, None, None).await.unwrap();
    assert_eq!(mine.messages.len(), 2);
    let status = a
        .request("getMessageStatus", json!({"msgId": withheld["msgId"]}))
        .await
        .unwrap();
    assert_eq!(status["status"], "sent", "one tick for ever: {status}");

    // Presence and profile fields are hidden from Alice; she cannot put Bob in a group.
    b.request("updateSettings", json!({"display": {"about": "busy"}}))
        .await
        .unwrap();
    let profile = a
        .request("getProfile", json!({"userId": bob.user_id}))
        .await
        .unwrap();
    for hidden in ["about", "online", "lastSeen"] {
        assert!(profile.get(hidden).is_none(), "{hidden}: {profile}");
    }
    let err = a
        .request(
            "initiateGroupChatSession",
            json!({"name": "trap", "members": [bob.user_id]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // Bob reports Alice with her message from before the block: stored for moderation.
    let filed = b
        .request(
            "reportUser",
            json!({"userId": alice.user_id, "messages": [
                {"msgId": before["msgId"], "text": "before the block"}]}),
        )
        .await
        .unwrap();
    assert_eq!(filed["blocked"], true);
    let id = filed["reportId"].as_str().unwrap();
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let body = cloud
        .media_object(&format!("reports/{day}/{id}.json"))
        .await;
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["reporter"], bob.user_id.as_str());
    assert_eq!(report["reported"], alice.user_id.as_str());
    assert_eq!(report["messages"][0]["text"], "before the block");
    // Carol's words cannot be reported as Alice's.
    let carols_msg = send(&c, &carols, "innocent").await;
    let err = b
        .request(
            "reportUser",
            json!({"userId": alice.user_id, "messages": [
                {"msgId": carols_msg["msgId"], "text": "innocent"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");

    // Unblocked: Alice's next message arrives.
    b.request("unblockUser", json!({"userId": alice.user_id}))
        .await
        .unwrap();
    send(&a, &chat, "after the unblock").await;
    until_marker(&b, |e| is_message(e, "after the unblock")).await;
}

#[tokio::test]
async fn floods_of_block_actions_are_cut_at_the_action_burst() {
    let cloud = TestCloud::shared();
    let (mallory, victim) = (cloud.sign_up().await, cloud.sign_up().await);
    let m = connect(cloud, &mallory).await;
    // The action burst is 30 per device and operation (ActionBurst), refilled one per 2 s.
    for action in ["blockUser", "listBlocked"] {
        let mut refused = None;
        for i in 0..40 {
            let params = match action {
                "blockUser" => json!({"userId": victim.user_id}),
                _ => json!({}),
            };
            if let Err(e) = m.request(action, params).await {
                refused = Some((i, e.code()));
                break;
            }
        }
        let (i, code) = refused.unwrap_or_else(|| panic!("40 {action} in a row were all served"));
        assert_eq!(code, Some(ErrorCode::LimitExceeded), "{action}");
        assert!(i >= 25, "{action} refused after only {i}");
    }
}
