//! The client SDK on the local cloud: it reconnects by itself after the server drops it, syncs
//! what it missed in order and once, and acks delivered so the sender's ticks move.

use courier_client::protocol::Event;
use courier_client::{Client, ClientConfig, Session};
use courier_tests::{TestCloud, eventually};
use serde_json::json;
use std::time::Duration;

/// A user's live connection ids, from the presence item.
async fn connections_of(cloud: &TestCloud, user: &str) -> Vec<String> {
    cloud
        .presence(user)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| m.split_once('#'))
        .map(|(_, c)| c.to_owned())
        .collect()
}

#[tokio::test]
async fn the_sdk_reconnects_syncs_what_it_missed_once_in_order_and_acks() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();
    let chat = a
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .unwrap()
        .session_id;
    let (bob_client, mut events) = Client::connect(ClientConfig::new(&cloud.ws_url, &bob.api_key))
        .await
        .unwrap();

    // The server drops Bob (as API Gateway does at the 2-hour limit, or a network change would).
    let conns = connections_of(cloud, &bob.user_id).await;
    assert_eq!(conns.len(), 1);
    let manage = cloud.ws_url.replacen("ws://", "http://", 1);
    let r = reqwest::Client::new()
        .delete(format!("{manage}/@connections/{}", conns[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // Alice sends while Bob is away.
    let mut ids = vec![];
    for i in 1..=3 {
        let r = a
            .request("sendMessage", json!({"sessionId": chat, "clientMsgId": format!("m{i}"), "type": "text", "payload": format!("while away {i}")}))
            .await
            .unwrap();
        ids.push(r["msgId"].as_str().unwrap().to_owned());
    }

    // Bob's SDK reconnects by itself and gets all three, once, in order.
    let mut got = vec![];
    let mut disconnected = false;
    tokio::time::timeout(Duration::from_secs(20), async {
        while got.len() < 3 {
            match events.recv().await.expect("events keep coming") {
                Event::Message(m) => got.push((m.seq, m.msg_id.clone(), m.payload.clone())),
                Event::Disconnected => disconnected = true,
                _ => {}
            }
        }
    })
    .await
    .expect("three messages after reconnecting");
    assert!(disconnected, "the SDK noticed the drop");
    let seqs: Vec<_> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(got[2].2, "while away 3");
    let extra = tokio::time::timeout(Duration::from_millis(800), async {
        loop {
            if let Some(Event::Message(m)) = events.recv().await {
                return m;
            }
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "no duplicates after de-duplication: {extra:?}"
    );

    // It acked delivered: Alice's ticks reach ✓✓ for the last one.
    eventually("delivered", Duration::from_secs(10), async || {
        let st = a
            .request("getMessageStatus", json!({"msgId": ids[2]}))
            .await
            .unwrap();
        (st["status"] == "delivered").then_some(())
    })
    .await;
    bob_client.close().await;
}

/// API Gateway runs the frames of a connection concurrently, so a sender's order is the SDK's
/// to keep: it sends to one session only after the previous send's reply. Ten sends started at
/// once (polled in order) are stored in the order they were called, and the peer reads them so.
#[tokio::test]
async fn sends_started_at_once_are_stored_in_the_order_called() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();
    let chat = a
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .unwrap()
        .session_id;
    let (client, _events) = Client::connect(ClientConfig::new(&cloud.ws_url, &alice.api_key))
        .await
        .unwrap();
    let texts: Vec<String> = (0..10).map(|i| format!("in order {i}")).collect();
    // join_all polls the sends in this order first, so this is the order they were called in.
    let sent = futures_util::future::join_all(
        texts
            .iter()
            .map(|t| client.send_message(&chat, courier_client::protocol::MessageKind::Text, t)),
    )
    .await;
    let seqs: Vec<u64> = sent.into_iter().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    let b = Session::connect(&cloud.ws_url, &bob.api_key).await.unwrap();
    let page = b.read_new_messages(&chat, None, Some(50)).await.unwrap();
    let read: Vec<&str> = page.messages.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(read, texts.iter().map(String::as_str).collect::<Vec<_>>());
    client.close().await;
}
