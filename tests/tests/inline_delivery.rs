//! Inline delivery end to end: `sendMessage` posts the reply and the message from the invocation
//! that stored it; the fan-out (the messages table's stream) delivers only what that invocation
//! did not finish. Real clients -> the local gateway -> the function binaries -> DynamoDB Local,
//! with the local cloud's fault switches killing `sendMessage` after its store.

use courier_client::Session;
use courier_tests::metrics::{grown, grown_within, scrape, total};
use courier_tests::{TestCloud, WAIT, connect, next, open_chat};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A cloud of the test's own (so that the fan-out's counters are the test's alone), Alice's
/// connection, Bob's two, and their chat.
async fn alice_and_bobs_two_connections() -> (TestCloud, Session, Session, Session, String) {
    let cloud = TestCloud::start(&[]).unwrap();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(&cloud, &alice).await;
    let b1 = connect(&cloud, &bob).await;
    let b2 = connect(&cloud, &bob).await;
    let chat = open_chat(&a, &bob).await;
    (cloud, a, b1, b2, chat)
}

fn frame(session: &str, cmid: &str, payload: &str) -> Value {
    json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": payload})
}

/// Every `message` event a session receives until it has seen each of `ids` (or the wait
/// ends), counted by msgId.
async fn receive_all(s: &Session, ids: &HashSet<String>, wait: Duration) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let _ = tokio::time::timeout(wait, async {
        while !ids.iter().all(|id| seen.contains_key(id)) {
            let e = s.next_event().await.expect("connection open");
            if e["event"] == "message" {
                let id = e["message"]["msgId"].as_str().unwrap().to_owned();
                *seen.entry(id).or_default() += 1;
            }
        }
    })
    .await;
    seen
}

/// Posts the fan-out made since `before` (0 when it only skipped).
fn fan_out_posts(
    before: &courier_tests::metrics::Samples,
    now: &courier_tests::metrics::Samples,
) -> f64 {
    let metric = "courier_management_api_calls_total";
    let labels = [r#"operation="fanOut""#];
    total(now, metric, &labels) - total(before, metric, &labels)
}

#[tokio::test]
async fn each_live_device_gets_a_message_once_from_the_send_and_the_stream_only_skips_it() {
    let (cloud, a, b1, b2, chat) = alice_and_bobs_two_connections().await;
    let before = scrape(&cloud).await;

    let n = 20;
    let mut ids = HashSet::new();
    for i in 0..n {
        let r = a
            .request(
                "sendMessage",
                frame(&chat, &format!("once-{i}"), "Y2lwaGVy"),
            )
            .await
            .unwrap();
        ids.insert(r["msgId"].as_str().unwrap().to_owned());
    }
    // The observable end: the fan-out has read every one of them from the stream and found its
    // inline delivery done. Only then is "nothing more arrived" a fact, not a guess.
    let skipped = grown_within(
        &cloud,
        &before,
        "courier_stream_deliveries_total",
        &[r#"action="skipped""#],
        n as f64,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(skipped, n as f64, "the stream skipped every message");
    for s in [&b1, &b2] {
        let seen = receive_all(s, &ids, WAIT).await;
        assert_eq!(seen.len(), n, "every message arrived");
        assert!(seen.values().all(|&c| c == 1), "none twice: {seen:?}");
    }
    let now = scrape(&cloud).await;
    assert_eq!(
        fan_out_posts(&before, &now),
        0.0,
        "the fan-out posted nothing"
    );
    assert_eq!(
        total(
            &now,
            "courier_inline_deliveries_total",
            &[r#"outcome="done""#]
        ) - total(
            &before,
            "courier_inline_deliveries_total",
            &[r#"outcome="done""#]
        ),
        n as f64
    );
}

/// Arms `kill-after-posts` for `sendMessage`: its process is killed after that many posts.
async fn kill_send_after(cloud: &TestCloud, posts: u64) {
    cloud
        .local(
            "/_local/faults/kill-after-posts",
            json!({"function": "SendMessageFunction", "posts": posts}),
        )
        .await
        .unwrap();
}

/// What the fault switch reports once its kill fired (it fires on a post the send makes after
/// its reply, so after the reply arrived): polled until then, or the wait ends.
/// Sends a message through a `sendMessage` armed to be killed: the SDK gets either the reply
/// (posted before the kill) or the gateway's error for the killed invocation, which a client
/// answers by sending again with the same clientMsgId, getting the first result.
async fn send_through_kill(s: &Session, request: Value) -> String {
    let reply = match s.request("sendMessage", request.clone()).await {
        Ok(r) => r,
        Err(_) => s
            .request("sendMessage", request)
            .await
            .expect("the retry answers with the stored message"),
    };
    reply["msgId"].as_str().unwrap().to_owned()
}

/// Asserts that `sendMessage` was the function killed, and that each of `devices` gets `msg`:
/// from the killed send's own posts, or from the fan-out once the dead invocation's grace (11 s)
/// is over.
async fn delivered_despite_the_kill(cloud: &TestCloud, devices: &[&Session], msg: &str) {
    let faults = fired(cloud).await;
    assert_eq!(
        faults["lastKill"]["function"], "SendMessageFunction",
        "the fault fired: {faults}"
    );
    let ids = HashSet::from([msg.to_owned()]);
    for s in devices {
        let seen = receive_all(s, &ids, Duration::from_secs(40)).await;
        assert!(seen.contains_key(msg), "delivered despite the kill");
    }
}

async fn fired(cloud: &TestCloud) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let faults = cloud.local_get("/_local/faults").await.unwrap();
        if !faults["lastKill"].is_null() || std::time::Instant::now() > deadline {
            return faults;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_send_killed_after_its_store_loses_nothing_the_stream_delivers_it() {
    let (cloud, a, b1, b2, chat) = alice_and_bobs_two_connections().await;
    let before = scrape(&cloud).await;
    // Three posts would follow the store (the reply and Bob's two connections); the process dies
    // right after the first, before it could record its delivery.
    kill_send_after(&cloud, 1).await;
    let msg = send_through_kill(&a, frame(&chat, "killed-1", "c3Vydml2ZXM=")).await;
    delivered_despite_the_kill(&cloud, &[&b1, &b2], &msg).await;
    assert_eq!(
        grown(
            &cloud,
            &before,
            "courier_inline_deliveries_abandoned_total",
            &[],
            1.0
        )
        .await,
        1.0,
        "the fan-out waited for the dead invocation, then delivered it itself"
    );
    let page = b1
        .request("readNewMessages", json!({"sessionId": chat}))
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "stored once");
}

#[tokio::test]
async fn a_group_send_killed_during_its_posts_loses_nothing() {
    let cloud = TestCloud::start(&[]).unwrap();
    let mut people = Vec::new();
    for _ in 0..5 {
        people.push(cloud.sign_up().await);
    }
    let admin = connect(&cloud, &people[0]).await;
    let mut members = Vec::new();
    for p in &people[1..] {
        members.push(connect(&cloud, p).await);
    }
    let group = admin
        .request(
            "initiateGroupChatSession",
            json!({"name": "kill", "members": people[1..].iter().map(|p| p.user_id.clone()).collect::<Vec<_>>()}),
        )
        .await
        .unwrap()["groupId"]
        .as_str()
        .unwrap()
        .to_owned();
    for s in &members {
        // Each member has seen the group's creation before the message is sent.
        next(s, "groupUpdate").await;
    }
    // Five posts would follow the store (the reply and the four members); the process dies
    // after the second.
    kill_send_after(&cloud, 2).await;
    let msg = send_through_kill(&admin, frame(&group, "g-killed", "Z3JvdXA=")).await;
    let members: Vec<&Session> = members.iter().collect();
    delivered_despite_the_kill(&cloud, &members, &msg).await;
}

#[tokio::test]
async fn a_frame_over_the_gateways_limit_is_skipped_and_the_next_message_still_arrives() {
    let cloud = TestCloud::start(&[]).unwrap();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(&cloud, &alice).await;
    let b = connect(&cloud, &bob).await;
    let chat = open_chat(&a, &bob).await;
    let before = scrape(&cloud).await;
    // A payload that fits the gateway's 128 KB limit on the way in but not on the way out: the
    // `message` event wraps it in about 200 more bytes than the request did. Three-byte
    // characters keep it under the 65,536-character limit.
    let limit = 128 * 1024;
    let euros = 40_000;
    let huge = format!(
        "{}{}",
        "€".repeat(euros),
        "a".repeat(limit - 200 - 3 * euros)
    );
    a.request("sendMessage", frame(&chat, "huge", &huge))
        .await
        .expect("stored: the request fits");
    let small = a
        .request("sendMessage", frame(&chat, "after", "c21hbGw="))
        .await
        .unwrap();
    let e = next(&b, "message").await;
    assert_eq!(
        e["message"]["msgId"], small["msgId"],
        "the next one is not held back"
    );
    assert_eq!(
        grown(&cloud, &before, "courier_frames_refused_total", &[], 1.0).await,
        1.0,
        "counted as refused"
    );
    // The refused one is not retried: the send's delivery was done, the stream skips both.
    assert_eq!(
        grown(
            &cloud,
            &before,
            "courier_stream_deliveries_total",
            &[r#"action="skipped""#],
            2.0
        )
        .await,
        2.0
    );
}

/// `initiateDirectChatSession` delivers the handshake it stores itself, as `sendMessage` does:
/// Bob's live device has `sessionStarted` once, the stream skips it, the fan-out posts nothing.
#[tokio::test]
async fn a_handshake_is_delivered_by_the_initiate_that_stores_it() {
    let cloud = TestCloud::start(&[]).unwrap();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(&cloud, &alice).await;
    let b = connect(&cloud, &bob).await;
    let before = scrape(&cloud).await;
    let chat = a
        .initiate_direct_chat(&bob.user_id, Some("b2xtLXByZWtleQ"))
        .await
        .unwrap()
        .session_id;
    let started = next(&b, "sessionStarted").await;
    assert_eq!(started["sessionId"], chat.as_str());
    assert_eq!(started["message"]["payload"], "b2xtLXByZWtleQ");
    // The observable end: the fan-out read the handshake from the stream and found it delivered.
    let skipped = grown_within(
        &cloud,
        &before,
        "courier_stream_deliveries_total",
        &[r#"action="skipped""#],
        1.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(skipped, 1.0, "the stream skipped the handshake");
    let now = scrape(&cloud).await;
    assert_eq!(
        fan_out_posts(&before, &now),
        0.0,
        "the fan-out posted nothing"
    );
    // Nothing else reached Bob: a marker sent after it is the next event.
    a.request("sendMessage", frame(&chat, "after-hs", "bWFya2Vy"))
        .await
        .unwrap();
    let e = b.next_event().await.expect("connection open");
    assert_eq!(e["event"], "message", "no second sessionStarted: {e}");
    assert_eq!(e["message"]["payload"], "bWFya2Vy");
}
