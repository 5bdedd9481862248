//! Replies that fit a frame (issue 21 item 10), end to end: API Gateway sends no message over
//! 128 KB (the local gateway neither), so a list reply over it never arrives and the reader's
//! sync stalls. Each list action now cuts its page to a byte budget and says `hasMore`.

use courier_client::{ClientError, Session};
use courier_core::ErrorCode;
use courier_tests::{TestCloud, connect};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// Long enough for a page of 96 KiB under load; a reply the gateway refused never comes.
const REPLY_WAIT: Duration = Duration::from_secs(20);

async fn ask(s: &Session, action: &str, params: Value) -> Value {
    match s.request_with_timeout(action, params, REPLY_WAIT).await {
        Ok(v) => v,
        Err(ClientError::Timeout) => {
            panic!("{action}: no reply in {REPLY_WAIT:?} (a reply over 128 KB is never sent)")
        }
        Err(e) => panic!("{action}: {e}"),
    }
}

/// Two strangers fill a group with their victim with 100 messages of 65,000 characters each
/// (6.5 MB). The victim's `readNewMessages` at the largest page came back with nothing at all;
/// now it comes in pages, and following `hasMore` reads each message exactly once.
#[tokio::test]
async fn a_session_of_100_large_messages_is_read_in_pages_each_message_once() {
    let cloud = TestCloud::shared();
    let (victim, m1, m2) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let (a1, a2) = (connect(cloud, &m1).await, connect(cloud, &m2).await);
    let group = ask(
        &a1,
        "initiateGroupChatSession",
        json!({ "name": "big", "members": [victim.user_id, m2.user_id] }),
    )
    .await["groupId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Two senders: 50 each stays within one device's send burst.
    let mut sent = HashSet::new();
    for i in 0..100 {
        let from = if i % 2 == 0 { &a1 } else { &a2 };
        let payload = format!("{i:03}{}", "x".repeat(64_997));
        let r = ask(
            from,
            "sendMessage",
            json!({"sessionId": group, "clientMsgId": format!("c-{i}"), "type": "text",
                   "payload": payload}),
        )
        .await;
        sent.insert(r["msgId"].as_str().unwrap().to_owned());
    }

    let v = connect(cloud, &victim).await;
    let mut read = Vec::new();
    let mut last: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ask(
            &v,
            "readNewMessages",
            json!({"sessionId": group, "lastMsgId": last, "limit": 100}),
        )
        .await;
        pages += 1;
        let messages = page["messages"].as_array().unwrap();
        assert!(!messages.is_empty(), "a page moves the reader on");
        for m in messages {
            if m["type"] == "text" {
                read.push(m["msgId"].as_str().unwrap().to_owned());
            }
        }
        last = messages.last().unwrap()["msgId"]
            .as_str()
            .map(str::to_owned);
        if page["hasMore"] != true {
            break;
        }
    }
    assert_eq!(read.len(), 100, "each message once");
    assert_eq!(read.iter().cloned().collect::<HashSet<_>>(), sent);
    assert!(pages > 1, "{pages} page(s)");
}

/// A stranger queues 100 device messages of 16,384 characters for the victim's device
/// (1.6 MB). `readDeviceMessages` at the largest page came back with nothing; now the device
/// reads and acknowledges page after page and gets each message exactly once.
#[tokio::test]
async fn a_device_queue_of_100_large_messages_is_read_in_pages_each_message_once() {
    let cloud = TestCloud::shared();
    let (victim, stranger) = (cloud.sign_up().await, cloud.sign_up().await);
    let s = connect(cloud, &stranger).await;
    let mut queued = HashSet::new();
    // Seven of 16 KB make a request under the 128 KB frame.
    for batch in 0..15 {
        let messages: Vec<Value> = (batch * 7..(batch * 7 + 7).min(100))
            .map(|i| {
                json!({"userId": victim.user_id, "deviceId": victim.device_id,
                       "payload": format!("{i:03}{}", "y".repeat(16_381))})
            })
            .collect();
        let r = ask(&s, "sendToDevice", json!({ "messages": messages })).await;
        for q in r["queued"].as_array().unwrap() {
            queued.insert(q["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(queued.len(), 100);

    let v = connect(cloud, &victim).await;
    let mut read = Vec::new();
    let mut pages = 0;
    loop {
        let page = ask(&v, "readDeviceMessages", json!({ "limit": 100 })).await;
        pages += 1;
        let ids: Vec<String> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(!ids.is_empty(), "a page moves the reader on");
        read.extend(ids.iter().cloned());
        ask(&v, "ackDeviceMessages", json!({ "ids": ids })).await;
        if page["hasMore"] != true {
            break;
        }
    }
    assert_eq!(read.len(), 100, "each message once");
    assert_eq!(read.into_iter().collect::<HashSet<_>>(), queued);
    assert!(pages > 1, "{pages} page(s)");
}

/// `listSessions` pages by session id: `after` and `limit` walk every session once (a chat
/// opened a moment ago included), with `hasMore` on every page but the last; a bad `after` or
/// `limit` is a BAD_REQUEST.
#[tokio::test]
async fn list_sessions_pages_by_session_id() {
    let cloud = TestCloud::shared();
    let me = cloud.sign_up().await;
    let s = connect(cloud, &me).await;
    let mut opened = Vec::new();
    for _ in 0..3 {
        let peer = cloud.sign_up().await;
        let chat = s.initiate_direct_chat(&peer.user_id, None).await.unwrap();
        opened.push(chat.session_id);
    }
    opened.sort();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut p = json!({ "limit": 1 });
        if let Some(a) = &after {
            p["after"] = json!(a);
        }
        let page = ask(&s, "listSessions", p).await;
        let sessions = page["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 1, "{page}");
        assert_eq!(sessions[0]["members"].as_array().unwrap().len(), 2);
        listed.push(sessions[0]["sessionId"].as_str().unwrap().to_owned());
        after = listed.last().cloned();
        if page["hasMore"] != true {
            break;
        }
    }
    assert_eq!(listed, opened);
    // The SDK's list follows the pages too.
    let all: Vec<String> = s
        .list_sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.session_id)
        .collect();
    assert_eq!(all, opened);

    for (p, says) in [
        (json!({ "limit": 0 }), "limit"),
        (json!({ "limit": 101 }), "limit"),
        (json!({ "after": "nobody" }), "after"),
        (json!({ "after": 7 }), "after"),
    ] {
        match s
            .request_with_timeout("listSessions", p.clone(), REPLY_WAIT)
            .await
        {
            Err(ClientError::Api(e)) => {
                assert_eq!(e.code, ErrorCode::BadRequest, "{p}");
                assert!(e.message.contains(says), "{p}: {}", e.message);
            }
            other => panic!("{p}: {other:?}"),
        }
    }
}
