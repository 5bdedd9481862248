//! The fan-out: stream records delivered, skipped or retried, failures reported per record.

use super::*;

#[tokio::test]
async fn the_fan_out_delivers_stream_records_and_reports_the_first_failure_for_retry() {
    use courier_core::usecases::deliver::Deliverer;
    let sessions = MemorySessions::default();
    let (alice, bob) = (
        UserId::from_trusted("u_alice"),
        UserId::from_trusted("u_bob"),
    );
    direct_session(&sessions, &alice, &bob).await;
    let (connections, gateway) =
        connected(&[(&alice, "d_alice", "ca"), (&bob, "d_bob", "cb")]).await;
    let stream_event = || serde_json::from_str(&fixture("messages-stream.json")).unwrap();
    let deliver = Deliverer {
        presence: &connections,
        connections: &connections,
        gateway: &gateway,
        push: None,
    };
    let out = courier_lambda::stream::handle(
        &sessions,
        &deliver,
        &MemoryMessages::default(),
        NO_GRACE,
        stream_event(),
    )
    .await;
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    let posted = gateway.posted();
    assert_eq!(
        posted.len(),
        1,
        "to Bob only: the sending device is skipped"
    );
    assert_eq!(posted[0].0.as_str(), "cb");
    let event: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(event["event"], "message");
    assert_eq!(event["message"]["payload"], "b64:ciphertext");

    let broken = Deliverer {
        presence: &connections,
        connections: &connections,
        gateway: &BrokenGateway,
        push: None,
    };
    let out = courier_lambda::stream::handle(
        &sessions,
        &broken,
        &MemoryMessages::default(),
        NO_GRACE,
        stream_event(),
    )
    .await;
    assert_eq!(
        out["batchItemFailures"][0]["itemIdentifier"],
        "111100000000000000000001"
    );
}

/// Posts through a recording gateway, except that frames of the listed (session, seq) fail.
struct FailingFor {
    inner: RecordingGateway,
    failing: Vec<(String, u64)>,
}

#[async_trait::async_trait]
impl courier_core::ports::ConnectionGateway for FailingFor {
    async fn post(
        &self,
        id: &ConnectionId,
        data: &str,
    ) -> Result<(), courier_core::ports::GatewayError> {
        let v: Value = serde_json::from_str(data).unwrap();
        let m = &v["message"];
        let key = (
            m["sessionId"].as_str().unwrap_or_default().to_owned(),
            m["seq"].as_u64().unwrap_or_default(),
        );
        if self.failing.contains(&key) {
            return Err(
                courier_core::error::PortError::backend("management API unavailable").into(),
            );
        }
        self.inner.post(id, data).await
    }
    async fn close(&self, id: &ConnectionId) -> Result<(), courier_core::ports::GatewayError> {
        self.inner.close(id).await
    }
}

#[tokio::test]
async fn the_fan_out_runs_sessions_side_by_side_and_reports_the_earliest_failed_record() {
    use courier_core::ports::SessionStore;
    use courier_core::usecases::deliver::Deliverer;
    let sessions = MemorySessions::default();
    let (alice, bob, carol) = (
        UserId::from_trusted("u_alice"),
        UserId::from_trusted("u_bob"),
        UserId::from_trusted("u_carol"),
    );
    let a = courier_core::SessionId::from_trusted("s_aaaa");
    let b = courier_core::SessionId::from_trusted("s_bbbb");
    let now = chrono::Utc::now();
    sessions.create_direct(&a, &alice, &bob, now).await.unwrap();
    sessions
        .create_direct(&b, &alice, &carol, now)
        .await
        .unwrap();
    let make_gateway = |failing: Vec<(String, u64)>| {
        let g = FailingFor {
            inner: RecordingGateway::default(),
            failing,
        };
        for c in ["cb", "cc"] {
            g.inner.open(&ConnectionId::new(c));
        }
        g
    };
    // The gateways are made per run below; only the connections are shared.
    let (connections, _) = connected(&[(&bob, "d_bob", "cb"), (&carol, "d_carol", "cc")]).await;
    // Alice writes a1, b1, a2, b2 (stream order), each record numbered by its position.
    let record = |pos: usize, session: &str, seq: u64| {
        serde_json::json!({
            "eventID": format!("e{pos}"), "eventName": "INSERT", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/Messages/stream/x",
            "dynamodb": {
                "SequenceNumber": format!("{pos}"), "SizeBytes": 100, "StreamViewType": "NEW_IMAGE",
                "Keys": {"sessionId": {"S": session}, "seq": {"N": seq.to_string()}},
                "NewImage": {
                    "msgId": {"S": format!("{session}.{seq}")}, "sessionId": {"S": session},
                    "seq": {"N": seq.to_string()}, "sender": {"S": "u_alice"},
                    "senderDevice": {"S": "d_alice"}, "clientMsgId": {"S": format!("c{pos}")},
                    "type": {"S": "text"}, "payload": {"S": "b64:x"},
                    "sentAt": {"S": "2026-11-28T00:00:00.000Z"}
                }
            }
        })
    };
    let event = || {
        serde_json::from_value::<aws_lambda_events::event::dynamodb::Event>(serde_json::json!({
            "Records": [record(0, "s_aaaa", 1), record(1, "s_bbbb", 1),
                        record(2, "s_aaaa", 2), record(3, "s_bbbb", 2)]
        }))
        .unwrap()
    };
    let seqs = |g: &FailingFor, conn: &str| -> Vec<u64> {
        g.inner
            .posted()
            .into_iter()
            .filter(|(c, _)| c.as_str() == conn)
            .map(|(_, f)| {
                serde_json::from_str::<Value>(&f).unwrap()["message"]["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    async fn run(
        sessions: &MemorySessions,
        connections: &MemoryConnections,
        g: &FailingFor,
        event: aws_lambda_events::event::dynamodb::Event,
    ) -> Value {
        let deliver = Deliverer {
            presence: connections,
            connections,
            gateway: g,
            push: None,
        };
        courier_lambda::stream::handle(
            sessions,
            &deliver,
            &MemoryMessages::default(),
            NO_GRACE,
            event,
        )
        .await
    }
    let run = |g| run(&sessions, &connections, g, event());

    // Everything works: each session's messages arrive in order.
    let g = make_gateway(vec![]);
    assert_eq!(run(&g).await["batchItemFailures"], serde_json::json!([]));
    assert_eq!((seqs(&g, "cb"), seqs(&g, "cc")), (vec![1, 2], vec![1, 2]));

    // a2 fails: session a stops there, session b is delivered in full, and the batch is
    // retried from a2 (position 2), not from b2.
    let g = make_gateway(vec![("s_aaaa".into(), 2)]);
    let out = run(&g).await;
    assert_eq!(
        out["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "2"}])
    );
    assert_eq!((seqs(&g, "cb"), seqs(&g, "cc")), (vec![1], vec![1, 2]));

    // b1 fails: b2 is not tried (it would overtake b1), the batch restarts at position 1.
    let g = make_gateway(vec![("s_bbbb".into(), 1)]);
    let out = run(&g).await;
    assert_eq!(
        out["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "1"}])
    );
    assert_eq!((seqs(&g, "cb"), seqs(&g, "cc")), (vec![1, 2], vec![]));
}

fn inline_batch() -> Value {
    serde_json::from_str(&fixture("messages-stream-inline.json")).unwrap()
}

async fn consume(chat: &Chat, batch: Value, grace: std::time::Duration) -> Value {
    courier_lambda::stream::handle(
        &chat.sessions,
        &chat.deliverer(),
        &chat.messages,
        grace,
        serde_json::from_value(batch).unwrap(),
    )
    .await
}

/// The fixture's message, as sent by the fixtures' caller.
fn from_caller(mut batch: Value) -> Value {
    let image = &mut batch["Records"][0]["dynamodb"]["NewImage"];
    image["sender"]["S"] = "u_test".into();
    image["senderDevice"]["S"] = "d_test".into();
    batch
}

#[tokio::test]
async fn the_fan_out_skips_a_message_whose_inline_delivery_is_done_in_the_batch_or_in_the_log() {
    use courier_core::ports::DeliveryLog;
    let chat = Chat::new().await;
    let grace = std::time::Duration::from_secs(3600);
    // Outcome in the same batch, right after its message: nothing to do, nothing read.
    let out = consume(&chat, from_caller(inline_batch()), grace).await;
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    assert!(chat.gateway.posted().is_empty());

    // The outcome fell into the next batch, but is in the log: still nothing.
    let mut only_message = from_caller(inline_batch());
    only_message["Records"].as_array_mut().unwrap().truncate(1);
    let id = courier_core::MsgId::parse("s_00000000000000000000000000000000.1").unwrap();
    chat.messages
        .record(&id, courier_core::chat::InlineOutcome::Done)
        .await
        .unwrap();
    let out = consume(&chat, only_message, grace).await;
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    assert!(chat.gateway.posted().is_empty());
}

#[tokio::test]
async fn the_fan_out_delivers_what_inline_delivery_asked_it_to_retry() {
    let chat = Chat::new().await;
    let mut batch = from_caller(inline_batch());
    batch["Records"][1]["dynamodb"]["NewImage"]["outcome"]["S"] = "retry".into();
    let out = consume(&chat, batch, std::time::Duration::from_secs(3600)).await;
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    assert_eq!(chat.posted_to("c_peer").len(), 1);
    assert_eq!(chat.posted_to("c_laptop").len(), 1);
    assert!(chat.posted_to(CALLER_CONN).is_empty());
}

#[tokio::test]
async fn the_fan_out_delivers_a_message_whose_writer_recorded_nothing_once_the_grace_is_over() {
    let chat = Chat::new().await;
    let mut batch = from_caller(inline_batch());
    batch["Records"].as_array_mut().unwrap().truncate(1);
    // Sent just now: the writer may still be delivering it, so the consumer waits for the grace
    // (short here) before delivering it itself.
    batch["Records"][0]["dynamodb"]["NewImage"]["sentAt"]["S"] =
        courier_core::chat::timestamp(chrono::Utc::now()).into();
    let out = consume(&chat, batch, std::time::Duration::from_millis(300)).await;
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    assert_eq!(chat.posted_to("c_peer").len(), 1);
}

#[tokio::test]
async fn the_fan_out_keeps_the_floor_under_disappearing_messages_and_skips_the_head_item() {
    let chat = Chat::new().await;
    let mut batch = from_caller(inline_batch());
    let records = batch["Records"].as_array_mut().unwrap();
    records.truncate(1);
    // The message disappears (the session's timer was on), and is delivered as any other.
    records[0]["dynamodb"]["NewImage"]["expiresAt"] =
        serde_json::json!({"S": "2099-01-01T00:00:00.000Z"});
    records[0]["dynamodb"]["NewImage"]["inline"] = serde_json::json!({"BOOL": false});
    // The session's head item (its timer) comes through the stream too: not a message.
    let mut head = records[0].clone();
    head["dynamodb"]["Keys"]["seq"]["N"] = "0".into();
    head["dynamodb"]["NewImage"] = serde_json::json!({
        "sessionId": {"S": "s_00000000000000000000000000000000"},
        "seq": {"N": "0"}, "timer": {"N": "86400"}, "timerSetAt": {"S": "2026-12-08T00:00:00.000Z"}
    });
    head["dynamodb"]["SequenceNumber"] = "000000000000000000000".into();
    records.insert(0, head);
    let out = consume(&chat, batch, NO_GRACE).await;
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    assert_eq!(
        chat.posted_to("c_peer").len(),
        1,
        "the message, not the head item"
    );
    let s = courier_core::SessionId::parse("s_00000000000000000000000000000000").unwrap();
    assert_eq!(chat.messages.floor(&s), 1, "the floor is above the message");
}

/// A gateway that refuses every frame for good, as API Gateway refuses one over 128 KB.
struct RefusingGateway;

#[async_trait::async_trait]
impl courier_core::ports::ConnectionGateway for RefusingGateway {
    async fn post(
        &self,
        _: &ConnectionId,
        _: &str,
    ) -> Result<(), courier_core::ports::GatewayError> {
        Err(courier_core::ports::GatewayError::Refused(
            "PayloadTooLargeException: Message too long".into(),
        ))
    }
    async fn close(&self, _: &ConnectionId) -> Result<(), courier_core::ports::GatewayError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_frame_the_gateway_refuses_for_good_never_fails_the_batch() {
    let chat = Chat::new().await;
    let deliver = courier_core::usecases::deliver::Deliverer {
        gateway: &RefusingGateway,
        ..chat.deliverer()
    };
    let out = courier_lambda::stream::handle(
        &chat.sessions,
        &deliver,
        &chat.messages,
        NO_GRACE,
        serde_json::from_str(&fixture("messages-stream.json")).unwrap(),
    )
    .await;
    assert_eq!(
        out["batchItemFailures"],
        serde_json::json!([]),
        "skipped, not retried ten times"
    );
}
