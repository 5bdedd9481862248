//! `sendMessage` and `ackMessages`: replies, watermarks, the device limit, inline delivery.

use super::*;

#[tokio::test]
async fn send_message_replies_with_the_stored_message_and_a_retry_gets_the_same() {
    let (sessions, messages) = (MemorySessions::default(), MemoryMessages::default());
    let session = caller_session(&sessions).await;
    let event = ws_event("send-message.json");
    let deps = &send_deps(&sessions, &messages);
    let run = || {
        routes::action("sendMessage", &event, |who, p| async move {
            courier_core::usecases::send_message::send_message(deps, &who, p).await
        })
    };
    let first = frame(&run().await);
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["requestId"], "r3");
    assert_eq!(first["result"]["seq"], 1);
    assert_eq!(
        first["result"]["msgId"],
        "s_00000000000000000000000000000000.1"
    );
    assert_eq!(frame(&run().await)["result"], first["result"]);
    assert_eq!(messages.all(&session).len(), 1);

    // Someone who is not a member: NOT_FOUND (as for no such session), in the reply frame.
    let outsider = with_caller(ws_event("send-message.json"), "u_other", "d_other");
    let reply = frame(
        &routes::action("sendMessage", &outsider, |who, p| async move {
            courier_core::usecases::send_message::send_message(deps, &who, p).await
        })
        .await,
    );
    assert_eq!(reply["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn ack_messages_moves_the_watermark_once_and_tells_the_sender() {
    use courier_core::ports::{Connection, SessionStore};
    use courier_core::usecases::deliver::Deliverer;
    use courier_core::usecases::receipts;
    let (sessions, messages) = (MemorySessions::default(), MemoryMessages::default());
    let (me, peer) = (
        UserId::from_trusted("u_test"),
        UserId::from_trusted("u_peer"),
    );
    let session = direct_session(&sessions, &me, &peer).await;
    // The peer sends the message the fixture acknowledges (seq 1).
    let send = &send_deps(&sessions, &messages);
    let sent = frame(
        &routes::action(
            "sendMessage",
            &with_caller(ws_event("send-message.json"), "u_peer", "d_peer"),
            |who, p| async move {
                courier_core::usecases::send_message::send_message(send, &who, p).await
            },
        )
        .await,
    );
    assert_eq!(
        sent["result"]["msgId"],
        "s_00000000000000000000000000000000.1"
    );
    let (connections, gateway) = (MemoryConnections::default(), RecordingGateway::default());
    let peer_conn = ConnectionId::new("cp");
    connections
        .add(&Connection {
            connection_id: peer_conn.clone(),
            user_id: peer.clone(),
            device_id: courier_core::DeviceId::from_trusted("d_peer"),
            connected_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    gateway.open(&peer_conn);
    let settings = MemorySettings::default();
    let deps = &receipts::AckDeps {
        sessions: &sessions,
        messages: &messages,
        deliver: Deliverer {
            presence: &connections,
            connections: &connections,
            gateway: &gateway,
            push: None,
        },
        settings: &settings,
        clock: &SystemClock,
    };
    let event = ws_event("ack-messages.json");
    let ack = || {
        routes::action("ackMessages", &event, |who, p| async move {
            receipts::ack_messages(deps, &who, p).await
        })
    };
    let reply = frame(&ack().await);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["requestId"], "r4");
    assert_eq!(reply["result"]["moved"], true);
    let mine = sessions.membership(&session, &me).await.unwrap().unwrap();
    assert_eq!(mine.read.seq, 1);
    let posted = gateway.posted();
    assert_eq!(posted.len(), 1, "the sender's device is told: {posted:?}");
    assert_eq!(posted[0].0, peer_conn);
    let told: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(
        (
            &told["event"],
            &told["status"],
            &told["upToSeq"],
            &told["userId"]
        ),
        (
            &Value::from("status"),
            &Value::from("read"),
            &Value::from(1),
            &Value::from("u_test")
        )
    );
    // The same ack again (a client retry): nothing moves, nobody is told again.
    assert_eq!(frame(&ack().await)["result"]["moved"], false);
    assert_eq!(gateway.posted().len(), 1);
}

#[tokio::test]
async fn a_send_over_the_device_limit_gets_limit_exceeded_with_retry_after_in_the_reply() {
    let (sessions, messages) = (MemorySessions::default(), MemoryMessages::default());
    let session = caller_session(&sessions).await;
    let limiter = MemoryRateLimiter::default();
    let deps = &courier_core::usecases::send_message::Deps {
        throttle: Some(courier_core::rate_limit::Throttle {
            limiter: &limiter,
            rule: courier_core::rate_limit::Rule::TokenBucket {
                burst: 1,
                interval_ms: 60_000,
            },
        }),
        ..send_deps(&sessions, &messages)
    };
    let send = |cmid: &'static str| {
        let event = ws_event("send-message.json");
        let mut body: Value = serde_json::from_str(event.body.as_deref().unwrap()).unwrap();
        body["clientMsgId"] = Value::String(cmid.into());
        let mut event = event;
        event.body = Some(body.to_string());
        async move {
            frame(
                &routes::action("sendMessage", &event, |who, p| async move {
                    courier_core::usecases::send_message::send_message(deps, &who, p).await
                })
                .await,
            )
        }
    };
    assert_eq!(send("first").await["ok"], true);
    let reply = send("second").await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["requestId"], "r3");
    assert_eq!(reply["error"]["code"], "LIMIT_EXCEEDED");
    let retry = reply["error"]["retryAfter"].as_u64().unwrap();
    assert!((59..=60).contains(&retry), "{reply}");
    assert_eq!(
        messages.all(&session).len(),
        1,
        "the refused message was not stored"
    );
}

#[tokio::test]
async fn send_message_posts_the_reply_delivers_the_message_itself_and_records_that_it_did() {
    use courier_core::ports::DeliveryLog;
    let chat = Chat::new().await;
    let deliver = chat.deliverer();
    let resp = chat
        .send_inline(&deliver, &ws_event("send-message.json"))
        .await;
    assert_eq!(resp.status_code, 200);
    assert!(
        resp.body.is_none(),
        "the reply went out as a post, not as the route response"
    );

    let replies = chat.posted_to(CALLER_CONN);
    assert_eq!(
        replies.len(),
        1,
        "the sending device gets its reply and not its own message"
    );
    assert_eq!(replies[0]["requestId"], "r3");
    assert_eq!(replies[0]["result"]["seq"], 1);
    for conn in ["c_peer", "c_laptop"] {
        let got = chat.posted_to(conn);
        assert_eq!(got.len(), 1, "{conn} gets the message once");
        assert_eq!(got[0]["event"], "message");
        assert_eq!(got[0]["message"]["payload"], "b64:ciphertext");
    }
    let id = courier_core::MsgId::parse("s_00000000000000000000000000000000.1").unwrap();
    assert_eq!(
        chat.messages.outcome(&id).await.unwrap(),
        Some(courier_core::chat::InlineOutcome::Done)
    );
    assert!(chat.messages.is_inline(&id.to_string()));

    // A retry of the same clientMsgId: the same reply, and nothing delivered twice.
    chat.send_inline(&deliver, &ws_event("send-message.json"))
        .await;
    let replies = chat.posted_to(CALLER_CONN);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1]["result"], replies[0]["result"]);
    assert_eq!(chat.posted_to("c_peer").len(), 1);
    assert_eq!(chat.messages.all(&chat.session).len(), 1);

    // A refusal is a reply too, posted the same way.
    let outsider = with_caller(ws_event("send-message.json"), "u_other", "d_other");
    chat.send_inline(&deliver, &outsider).await;
    let replies = chat.posted_to(CALLER_CONN);
    assert_eq!(replies[2]["error"]["code"], "NOT_FOUND");
    assert_eq!(chat.posted_to("c_peer").len(), 1);
}

#[tokio::test]
async fn send_message_records_a_retry_when_a_post_fails_and_answers_as_the_route_response_when_the_reply_cannot_be_posted()
 {
    use courier_core::ports::DeliveryLog;
    let chat = Chat::new().await;
    let deliver = courier_core::usecases::deliver::Deliverer {
        gateway: &BrokenGateway,
        ..chat.deliverer()
    };
    let resp = chat
        .send_inline(&deliver, &ws_event("send-message.json"))
        .await;
    assert_eq!(
        frame(&resp)["result"]["seq"],
        1,
        "the reply, as the route response"
    );
    let id = courier_core::MsgId::parse("s_00000000000000000000000000000000.1").unwrap();
    assert_eq!(
        chat.messages.outcome(&id).await.unwrap(),
        Some(courier_core::chat::InlineOutcome::Retry),
        "the stream consumer must deliver it again"
    );
}
