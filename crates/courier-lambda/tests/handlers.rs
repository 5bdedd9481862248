//! Handlers fed the sample events in `events/`, on in-memory ports: the status codes, reply
//! frames and stored state a client and an operator would check.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
use courier_core::clock::SystemClock;
use courier_core::memory::*;
use courier_core::ports::{
    ActivityStore, ConnectionStore, CredentialStore, LastSeenStore, SettingsStore,
};
use courier_core::usecases::{delete_account, register_account, validate_account};
use courier_core::{ConnectionId, UserId};
use courier_lambda::{authorizer, http, routes};
use serde_json::Value;

/// No grace for inline deliveries: these batches hold no message written for inline delivery.
const NO_GRACE: std::time::Duration = std::time::Duration::ZERO;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn http_event(name: &str, body: Option<&str>) -> lambda_http::Request {
    let mut v: Value = serde_json::from_str(&fixture(name)).unwrap();
    if let Some(b) = body {
        v["body"] = Value::String(b.to_owned());
    }
    lambda_http::request::from_str(&v.to_string()).unwrap()
}

fn ws_event(name: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn body_json(resp: &lambda_http::Response<lambda_http::Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).unwrap()
}

fn frame(resp: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Value {
    match resp.body.as_ref().expect("a reply body") {
        aws_lambda_events::encodings::Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

#[derive(Default)]
struct Ports {
    registrations: MemoryRegistrations,
    accounts: MemoryAccounts,
    connections: MemoryConnections,
    sms: RecordingSms,
    gateway: RecordingGateway,
    keys: MemoryKeys,
    queues: MemoryDeviceQueues,
    sessions: MemorySessions,
    messages: MemoryMessages,
    settings: MemorySettings,
    statuses: courier_core::memory::MemoryStatuses,
    backups: MemoryBackups,
    objects: MemoryObjects,
}

impl Ports {
    fn register(&self) -> register_account::Deps<'_> {
        register_account::Deps {
            registrations: &self.registrations,
            sms: &self.sms,
            clock: &SystemClock,
            code_lifetime_secs: register_account::CODE_LIFETIME_SECS,
            test_numbers: None,
            limits: None,
            sms_guard: None,
        }
    }
    fn validate(&self) -> validate_account::Deps<'_> {
        validate_account::Deps {
            registrations: &self.registrations,
            accounts: &self.accounts,
            connections: &self.connections,
            gateway: &self.gateway,
            keys: &self.keys,
            queues: &self.queues,
            clock: &SystemClock,
            data: delete_account::AccountData {
                sessions: &self.sessions,
                groups: &self.sessions,
                messages: &self.messages,
                presence: &self.connections,
                settings: &self.settings,
                statuses: &self.statuses,
                backups: &self.backups,
                objects: &self.objects,
            },
        }
    }
}

#[tokio::test]
async fn register_then_validate_through_the_http_handlers() {
    let p = Ports::default();
    let resp =
        http::register_account(&p.register(), http_event("register-account.json", None)).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(body_json(&resp)["expiresInSeconds"], 900);
    let code = p.sms.last_code("+14155550100").unwrap();

    let body = format!(
        r#"{{"phone":"+14155550100","code":"{code}","device":{{"name":"Pixel 9","platform":"android"}}}}"#
    );
    let resp = http::validate_account(
        &p.validate(),
        http_event("validate-account.json", Some(&body)),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let creds = body_json(&resp);
    assert!(creds["apiKey"].as_str().unwrap().starts_with("ck_"));
    assert!(creds["userId"].as_str().unwrap().starts_with("u_"));
}

#[tokio::test]
async fn http_bad_input_gets_a_clear_error_and_stores_nothing() {
    let p = Ports::default();
    let cases: &[(&str, u16, &str)] = &[
        ("not json", 400, "BAD_REQUEST"),
        (r#"{"phone": 14155550100}"#, 400, "BAD_REQUEST"),
        (r#"{"phone": "555-0100"}"#, 400, "BAD_REQUEST"),
        (r#"{}"#, 400, "BAD_REQUEST"),
    ];
    for (body, status, code) in cases {
        let resp = http::register_account(
            &p.register(),
            http_event("register-account.json", Some(body)),
        )
        .await;
        assert_eq!(resp.status(), *status, "{body}");
        let v = body_json(&resp);
        assert_eq!(v["error"]["code"], *code, "{body}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let big = format!(r#"{{"phone":"+14155550100","pad":"{}"}}"#, "x".repeat(5000));
    let resp = http::register_account(
        &p.register(),
        http_event("register-account.json", Some(&big)),
    )
    .await;
    assert_eq!(resp.status(), 413);
    assert_eq!(body_json(&resp)["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert!(p.sms.sent().is_empty());

    // The fixture's code was never sent: nothing is pending for the number.
    let resp =
        http::validate_account(&p.validate(), http_event("validate-account.json", None)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(body_json(&resp)["error"]["code"], "NOT_FOUND");
    assert_eq!(p.accounts.live_keys(), 0);
}

#[tokio::test]
async fn too_many_codes_answer_429_with_retry_after() {
    let p = Ports::default();
    for _ in 0..3 {
        assert_eq!(
            http::register_account(&p.register(), http_event("register-account.json", None))
                .await
                .status(),
            202
        );
    }
    let resp =
        http::register_account(&p.register(), http_event("register-account.json", None)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(body_json(&resp)["error"]["code"], "LIMIT_EXCEEDED");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
}

async fn signed_up(p: &Ports) -> (String, courier_core::protocol::Credentials) {
    let _ = http::register_account(&p.register(), http_event("register-account.json", None)).await;
    let code = p.sms.last_code("+14155550100").unwrap();
    let req = courier_core::protocol::ValidateAccountRequest {
        phone: "+14155550100".into(),
        code,
        device: courier_core::protocol::DeviceInfo {
            name: "Pixel".into(),
            platform: courier_core::protocol::Platform::Ios,
        },
        pin: None,
    };
    let creds = validate_account::validate_account(&p.validate(), &req)
        .await
        .unwrap();
    (creds.api_key.clone(), creds)
}

fn authorizer_event(name: &str, key: &str) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let text = fixture(name).replace("k_test", key);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn the_authorizer_allows_a_live_key_in_the_header_or_a_ticket_in_the_query_and_refuses_others()
 {
    use courier_core::usecases::connect_ticket;
    let p = Ports::default();
    let (key, creds) = signed_up(&p).await;
    let tickets = courier_core::memory::MemoryConnectTickets::default();
    let ticket_deps = connect_ticket::Deps {
        credentials: &p.accounts,
        tickets: &tickets,
        clock: &SystemClock,
        failures: None,
        lifetime_secs: 30,
    };
    let ticket = connect_ticket::create(&ticket_deps, Some(&format!("Bearer {key}")), None)
        .await
        .unwrap()
        .ticket;
    let authorize = |event: ApiGatewayCustomAuthorizerRequestTypeRequest| {
        let (accounts, tickets) = (&p.accounts, &tickets);
        async move {
            authorizer::handle_limited(accounts, Some(tickets), None, &SystemClock, &event).await
        }
    };
    for (name, secret) in [
        ("authorizer-header.json", &key),
        ("authorizer-query.json", &ticket),
    ] {
        let policy = authorize(authorizer_event(name, secret)).await.unwrap();
        assert_eq!(policy["principalId"], creds.user_id.as_str());
        assert_eq!(policy["policyDocument"]["Statement"][0]["Effect"], "Allow");
        assert_eq!(policy["context"]["userId"], creds.user_id.as_str());
        assert_eq!(policy["context"]["deviceId"], creds.device_id.as_str());
    }
    // A key in the URL, as the `ticket` or as the old `token` parameter, opens nothing; nor does
    // a used ticket.
    let token: ApiGatewayCustomAuthorizerRequestTypeRequest = serde_json::from_str(
        &fixture("authorizer-query.json")
            .replace("k_test", &key)
            .replace("\"ticket\"", "\"token\""),
    )
    .unwrap();
    for event in [
        authorizer_event("authorizer-header.json", "ck_wrong"),
        authorizer_event("authorizer-missing.json", "x"),
        authorizer_event("authorizer-query.json", &ticket),
        authorizer_event("authorizer-query.json", &key),
        token,
    ] {
        let err = authorize(event).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unauthorized",
            "API Gateway answers 401 only for this exact message"
        );
    }
}

fn with_caller(
    mut e: ApiGatewayWebsocketProxyRequest,
    user: &str,
    device: &str,
) -> ApiGatewayWebsocketProxyRequest {
    let f = &mut e.request_context.authorizer.fields;
    f.insert("userId".into(), Value::String(user.into()));
    f.insert("deviceId".into(), Value::String(device.into()));
    e
}

#[tokio::test]
async fn connect_and_disconnect_track_the_connection() {
    let p = Ports::default();
    let resp = routes::connect(
        &p.connections,
        &p.connections,
        &SystemClock,
        &ws_event("connect.json"),
    )
    .await;
    assert_eq!(resp.status_code, 200);
    assert!(resp.body.is_none());
    let user = UserId::from_trusted("u_test");
    // The connection marked the user active today: a second mark is not its first of the day.
    let again = p
        .connections
        .mark_active(&user, chrono::Utc::now().date_naive())
        .await
        .unwrap();
    assert!(!again.of_day && !again.of_month);
    let conns = p.connections.for_user(&user).await.unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].0.as_str(), "d_test");

    let resp = routes::disconnect(
        &p.connections,
        &p.connections,
        &SystemClock,
        &ws_event("disconnect.json"),
    )
    .await;
    assert_eq!(resp.status_code, 200);
    assert!(p.connections.for_user(&user).await.unwrap().is_empty());
    let seen = p.connections.last_seen(&user).await.unwrap();
    assert!(!seen.online && seen.at.is_some(), "last seen recorded");

    // A $connect without authorizer context (a misconfigured route) is refused.
    let mut bare = ws_event("connect.json");
    bare.request_context.authorizer.fields.clear();
    assert_eq!(
        routes::connect(&p.connections, &p.connections, &SystemClock, &bare)
            .await
            .status_code,
        401
    );
}

#[tokio::test]
async fn default_route_answers_malformed_frames_and_unknown_actions() {
    let resp = routes::default_route(&ws_event("default-malformed.json"));
    let f = frame(&resp);
    assert_eq!(f["ok"], false);
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
    assert!(f["requestId"].is_null());

    let f = frame(&routes::default_route(&ws_event(
        "default-unknown-action.json",
    )));
    assert_eq!(f["error"]["code"], "UNKNOWN_ACTION");
    assert_eq!(f["requestId"], "r1");
    assert!(f["error"]["message"].as_str().unwrap().contains("fly"));
}

#[tokio::test]
async fn delete_account_posts_its_reply_then_closes_the_connection() {
    let p = Ports::default();
    let (key, creds) = signed_up(&p).await;
    let event = with_caller(
        ws_event("delete-account.json"),
        &creds.user_id,
        &creds.device_id,
    );
    let conn = ConnectionId::new(event.request_context.connection_id.clone().unwrap());
    p.gateway.open(&conn);
    let sessions = MemorySessions::default();
    let deps = delete_account::Deps {
        accounts: &p.accounts,
        connections: &p.connections,
        gateway: &p.gateway,
        keys: &p.keys,
        queues: &p.queues,
        clock: &courier_core::clock::SystemClock,
        data: delete_account::AccountData {
            sessions: &sessions,
            groups: &sessions,
            messages: &MemoryMessages::default(),
            presence: &p.connections,
            settings: &MemorySettings::default(),
            statuses: &courier_core::memory::MemoryStatuses::default(),
            backups: &MemoryBackups::default(),
            objects: &MemoryObjects::default(),
        },
    };
    let resp = routes::delete_account(&deps, &event).await;
    assert_eq!(resp.status_code, 200);
    assert!(
        resp.body.is_none(),
        "the reply went through the management API"
    );
    let posted = p.gateway.posted();
    assert_eq!(posted.len(), 1);
    let reply: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(reply["requestId"], "r2");
    assert_eq!(reply["ok"], true);
    assert_eq!(p.gateway.closed(), vec![conn]);
    let hash = courier_core::secrets::ApiKey::presented(key).hash();
    assert!(p.accounts.device_for_key(&hash).await.unwrap().is_none());

    // The fixture's caller (u_test) has no account: NOT_FOUND, in the route response.
    let resp = routes::delete_account(&deps, &ws_event("delete-account.json")).await;
    assert_eq!(frame(&resp)["error"]["code"], "NOT_FOUND");
}

fn send_deps<'a>(
    sessions: &'a MemorySessions,
    messages: &'a MemoryMessages,
) -> courier_core::usecases::send_message::Deps<'a> {
    courier_core::usecases::send_message::Deps {
        sessions,
        messages,
        clock: &SystemClock,
        media: None,
        throttle: None,
    }
}

#[tokio::test]
async fn send_message_replies_with_the_stored_message_and_a_retry_gets_the_same() {
    use courier_core::ports::SessionStore;
    let (sessions, messages) = (MemorySessions::default(), MemoryMessages::default());
    let session = courier_core::SessionId::from_trusted("s_00000000000000000000000000000000");
    sessions
        .create_direct(
            &session,
            &UserId::from_trusted("u_test"),
            &UserId::from_trusted("u_peer"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
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
    let session = courier_core::SessionId::from_trusted("s_00000000000000000000000000000000");
    let (me, peer) = (
        UserId::from_trusted("u_test"),
        UserId::from_trusted("u_peer"),
    );
    sessions
        .create_direct(&session, &me, &peer, chrono::Utc::now())
        .await
        .unwrap();
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

/// A gateway whose every call fails (not with Gone): the management API is down.
struct BrokenGateway;

#[async_trait::async_trait]
impl courier_core::ports::ConnectionGateway for BrokenGateway {
    async fn post(
        &self,
        _: &ConnectionId,
        _: &str,
    ) -> Result<(), courier_core::ports::GatewayError> {
        Err(courier_core::error::PortError::backend("management API unavailable").into())
    }
    async fn close(&self, _: &ConnectionId) -> Result<(), courier_core::ports::GatewayError> {
        Err(courier_core::error::PortError::backend("management API unavailable").into())
    }
}

#[tokio::test]
async fn the_fan_out_delivers_stream_records_and_reports_the_first_failure_for_retry() {
    use courier_core::ports::{Connection, SessionStore};
    use courier_core::usecases::deliver::Deliverer;
    let sessions = MemorySessions::default();
    let session = courier_core::SessionId::from_trusted("s_00000000000000000000000000000000");
    let (alice, bob) = (
        UserId::from_trusted("u_alice"),
        UserId::from_trusted("u_bob"),
    );
    sessions
        .create_direct(&session, &alice, &bob, chrono::Utc::now())
        .await
        .unwrap();
    let connections = MemoryConnections::default();
    let gateway = RecordingGateway::default();
    for (user, device, conn) in [(&alice, "d_alice", "ca"), (&bob, "d_bob", "cb")] {
        let c = ConnectionId::new(conn);
        connections
            .add(&Connection {
                connection_id: c.clone(),
                user_id: user.clone(),
                device_id: courier_core::DeviceId::from_trusted(device),
                connected_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        gateway.open(&c);
    }
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
    use courier_core::ports::{Connection, SessionStore};
    use courier_core::usecases::deliver::Deliverer;
    let sessions = MemorySessions::default();
    let connections = MemoryConnections::default();
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
    for (user, device, conn) in [(&bob, "d_bob", "cb"), (&carol, "d_carol", "cc")] {
        connections
            .add(&Connection {
                connection_id: ConnectionId::new(conn),
                user_id: user.clone(),
                device_id: courier_core::DeviceId::from_trusted(device),
                connected_at: now,
            })
            .await
            .unwrap();
    }
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

fn device_of(user: &str, device: &str, primary: bool) -> courier_core::ports::Device {
    courier_core::ports::Device {
        user_id: UserId::from_trusted(user),
        device_id: courier_core::DeviceId::from_trusted(device),
        name: "web".into(),
        platform: courier_core::protocol::Platform::Web,
        primary,
        key_hash: courier_core::secrets::ApiKey::generate().hash(),
        created_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn a_companion_removing_itself_gets_its_reply_before_its_connection_is_closed() {
    use courier_core::ports::AccountStore;
    let p = Ports::default();
    let (_, creds) = signed_up(&p).await;
    let companion = device_of(&creds.user_id, "d_test", false);
    p.accounts.replace_devices(&companion, &[]).await.unwrap();
    let event = with_caller(ws_event("remove-device.json"), &creds.user_id, "d_test");
    let conn = ConnectionId::new(event.request_context.connection_id.clone().unwrap());
    p.gateway.open(&conn);
    let deps = courier_core::usecases::remove_device::Deps {
        accounts: &p.accounts,
        connections: &p.connections,
        presence: &p.connections,
        gateway: &p.gateway,
        keys: &p.keys,
        queues: &p.queues,
    };
    let resp = routes::remove_device(&deps, &event).await;
    assert_eq!(resp.status_code, 200);
    assert!(
        resp.body.is_none(),
        "the reply went through the management API"
    );
    let posted = p.gateway.posted();
    assert_eq!(posted.len(), 1);
    let reply: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(
        (
            reply["requestId"].clone(),
            reply["result"]["removed"].clone()
        ),
        ("r3".into(), true.into())
    );
    assert_eq!(p.gateway.closed(), vec![conn]);
    assert!(
        p.accounts
            .device_for_key(&companion.key_hash)
            .await
            .unwrap()
            .is_none()
    );
    // Again: the device is gone, answered in the route response.
    let resp = routes::remove_device(&deps, &event).await;
    assert_eq!(frame(&resp)["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn upload_keys_and_send_to_device_through_the_route_handler() {
    use courier_core::ports::{AccountStore, DeviceQueueStore, KeyStore};
    use courier_core::usecases::{device_messages, keys};
    let p = Ports::default();
    let key_deps = keys::Deps {
        accounts: &p.accounts,
        keys: &p.keys,
        one_time_keys_per_target: None,
        clock: &SystemClock,
    };
    let resp = routes::action(
        "uploadKeys",
        &ws_event("upload-keys.json"),
        |who, params| async move { keys::upload_keys(&key_deps, &who, params).await },
    )
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r4");
    assert_eq!(f["result"]["oneTimeKeyCount"], 2, "{f}");
    let me = UserId::from_trusted("u_test");
    let stored = p.keys.device_keys(&me).await.unwrap();
    assert_eq!(stored[0].fallback.as_ref().unwrap().key_id, "AAAAAAAAAAI");

    let deps = device_messages::Deps {
        accounts: &p.accounts,
        queues: &p.queues,
        deliver: Some(courier_core::usecases::deliver::Deliverer {
            presence: &p.connections,
            connections: &p.connections,
            gateway: &p.gateway,
            push: None,
        }),
        clock: &SystemClock,
        throttle: None,
    };
    let event = ws_event("send-to-device.json");
    let send = || {
        routes::action("sendToDevice", &event, |who, params| async {
            let who = who;
            device_messages::send_to_device(&deps, &who, params).await
        })
    };
    // No such device yet: reported, nothing queued.
    let f = frame(&send().await);
    assert_eq!(f["result"]["queued"], serde_json::json!([]));
    assert_eq!(f["result"]["unknownDevices"][0]["deviceId"], "d_peer");
    // The peer exists and is online: queued and delivered.
    let peer = device_of("u_peer", "d_peer", true);
    p.accounts
        .create_account(
            &courier_core::ports::User {
                user_id: peer.user_id.clone(),
                phone: courier_core::PhoneNumber::parse("+14155550199").unwrap(),
                created_at: chrono::Utc::now(),
            },
            &peer,
        )
        .await
        .unwrap();
    let conn = ConnectionId::new("peer-conn");
    p.connections
        .add(&courier_core::ports::Connection {
            connection_id: conn.clone(),
            user_id: peer.user_id.clone(),
            device_id: peer.device_id.clone(),
            connected_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    p.gateway.open(&conn);
    let f = frame(&send().await);
    assert_eq!(f["result"]["queued"][0]["deviceId"], "d_peer", "{f}");
    let posted = p.gateway.posted();
    assert_eq!(posted.len(), 1);
    let event: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(event["event"], "deviceMessage");
    assert_eq!(event["message"]["payload"], "AwogCiphertextOnly");
    assert_eq!(event["message"]["sender"], "u_test");
    let (queued, _) = p
        .queues
        .read(&peer.user_id, &peer.device_id, chrono::Utc::now(), 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
}

#[tokio::test]
async fn update_settings_replies_with_the_settings_and_names_a_bad_field() {
    use courier_core::usecases::profile;
    let p = Ports::default();
    let settings = MemorySettings::default();
    let deps = profile::Deps {
        settings: &settings,
        accounts: &p.accounts,
        last_seen: &p.connections,
        clock: &SystemClock,
    };
    let deps = &deps;
    let event = ws_event("update-settings.json");
    let resp = routes::action("updateSettings", &event, |who, params| async move {
        profile::update_settings(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r5");
    assert_eq!(f["ok"], true, "{f}");
    assert_eq!(f["result"]["display"]["name"], "Test");
    assert_eq!(f["result"]["privacy"]["lastSeen"], "contacts");
    assert_eq!(f["result"]["privacy"]["readReceipts"], false);
    assert_eq!(f["result"]["privacy"]["groupsAdd"], "everyone");

    let mut bad = ws_event("update-settings.json");
    bad.body = Some(
        r#"{"action":"updateSettings","requestId":"r6","privacy":{"lastSeen":"friends"}}"#.into(),
    );
    let resp = routes::action("updateSettings", &bad, |who, params| async move {
        profile::update_settings(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
    let message = f["error"]["message"].as_str().unwrap();
    assert!(message.contains("privacy.lastSeen"), "{message}");
    // Nothing changed.
    let s = settings
        .settings(&UserId::from_trusted("u_test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.privacy.last_seen,
        courier_core::settings::Audience::Contacts
    );
}

#[tokio::test]
async fn post_status_stores_it_tells_a_contacts_live_device_and_answers_its_id() {
    use courier_core::ports::{Connection, StatusStore};
    use courier_core::usecases::{deliver::Deliverer, status};
    let statuses = MemoryStatuses::default();
    let settings = MemorySettings::default();
    let connections = MemoryConnections::default();
    let gateway = RecordingGateway::default();
    let (poster, friend) = (
        UserId::from_trusted("u_test"),
        UserId::from_trusted("u_friend"),
    );
    settings
        .update_contacts(
            &poster,
            std::slice::from_ref(&friend),
            &[],
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let conn = ConnectionId::new("c-friend");
    gateway.open(&conn);
    connections
        .add(&Connection {
            connection_id: conn.clone(),
            user_id: friend.clone(),
            device_id: courier_core::DeviceId::from_trusted("d_friend"),
            connected_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let deps = status::Deps {
        statuses: &statuses,
        settings: &settings,
        deliver: Some(Deliverer {
            presence: &connections,
            connections: &connections,
            gateway: &gateway,
            push: None,
        }),
        media: None,
        clock: &SystemClock,
        ttl_secs: 60,
        throttle: None,
    };
    let deps = &deps;
    let event = ws_event("post-status.json");
    let resp = routes::action("postStatus", &event, |who, params| async move {
        status::post_status(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r7");
    assert_eq!(f["ok"], true, "{f}");
    let id = f["result"]["statusId"].as_str().unwrap();
    assert!(f["result"]["expiresAt"].as_str().is_some());
    let stored = statuses
        .status(&poster, id, chrono::Utc::now())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.device_id.as_str(), "d_test");
    assert_eq!(stored.attachments, vec!["m_01JDX7Q9V6T4ZK3M2N8P5R1S0A"]);
    let posted = gateway.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, conn);
    let event: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(event["event"], "statusPosted");
    assert_eq!(event["statusId"], id);

    let mut bad = ws_event("post-status.json");
    bad.body = Some(r#"{"action":"postStatus","requestId":"r8","payload":42}"#.into());
    let resp = routes::action("postStatus", &bad, |who, params| async move {
        status::post_status(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
    assert!(f["error"]["message"].as_str().unwrap().contains("payload"));
}

#[tokio::test]
async fn create_media_upload_replies_with_a_presigned_put_and_refuses_17_mib() {
    use courier_core::media::{MediaId, MediaStore, MemoryMedia};
    use courier_core::usecases::media;
    let (store, objects, sessions) = (
        MemoryMedia::default(),
        MemoryObjects::default(),
        MemorySessions::default(),
    );
    let deps = media::Deps {
        media: &store,
        objects: &objects,
        sessions: &sessions,
        statuses: None,
        clock: &SystemClock,
        upload_quota: None,
    };
    let deps = &deps;
    let event = ws_event("create-media-upload.json");
    let resp = routes::action("createMediaUpload", &event, |who, p| async move {
        media::create_upload(deps, &who, p).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r7");
    assert_eq!(f["ok"], true, "{f}");
    let id = MediaId::parse(f["result"]["mediaId"].as_str().unwrap()).expect("a media id");
    assert_eq!(f["result"]["uploadHeaders"]["content-type"], "image/jpeg");
    assert_eq!(f["result"]["uploadHeaders"]["content-length"], "2097152");
    assert!(
        f["result"]["uploadUrl"]
            .as_str()
            .unwrap()
            .ends_with(&id.object_key())
    );
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.uploader, UserId::from_trusted("u_test"));
    assert_eq!(rec.size, 2_097_152);

    let mut big = ws_event("create-media-upload.json");
    big.body = Some(
        r#"{"action":"createMediaUpload","requestId":"r8","contentType":"video/mp4","size":17825792}"#
            .into(),
    );
    let f = frame(
        &routes::action("createMediaUpload", &big, |who, p| async move {
            media::create_upload(deps, &who, p).await
        })
        .await,
    );
    assert_eq!(f["requestId"], "r8");
    assert_eq!(f["error"]["code"], "PAYLOAD_TOO_LARGE");
    let mut bad = ws_event("create-media-upload.json");
    bad.body = Some(r#"{"action":"createMediaUpload","requestId":"r9","size":"big"}"#.into());
    let f = frame(
        &routes::action("createMediaUpload", &bad, |who, p| async move {
            media::create_upload(deps, &who, p).await
        })
        .await,
    );
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn create_backup_replies_with_a_presigned_upload_and_refuses_oversized_ones() {
    use courier_core::usecases::backups;
    let records = MemoryBackups::default();
    let objects = MemoryObjects::default();
    let deps = backups::Deps {
        backups: &records,
        objects: &objects,
        clock: &SystemClock,
        quota: None,
    };
    let deps = &deps;
    let event = ws_event("create-backup.json");
    let resp = routes::action("createBackup", &event, |who, params| async move {
        backups::create_backup(deps, &who, params).await
    })
    .await;
    assert_eq!(resp.status_code, 200);
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r7");
    assert_eq!(f["ok"], true, "{f}");
    let id = f["result"]["backupId"].as_str().unwrap();
    assert_eq!(
        f["result"]["uploadUrl"],
        format!("memory://backups/u_test/{id}")
    );
    assert_eq!(
        f["result"]["uploadHeaders"]["content-type"],
        "application/octet-stream"
    );
    assert_eq!(f["result"]["uploadHeaders"]["content-length"], "4096");
    // Not listed until uploaded.
    let mut list = ws_event("create-backup.json");
    list.body = Some(r#"{"action":"listBackups","requestId":"r8"}"#.into());
    let resp = routes::action(
        "listBackups",
        &list,
        |who, _: courier_core::protocol::ListBackupsParams| async move {
            backups::list_backups(deps, &who).await
        },
    )
    .await;
    assert_eq!(frame(&resp)["result"]["backups"], serde_json::json!([]));

    let mut big = ws_event("create-backup.json");
    big.body = Some(r#"{"action":"createBackup","requestId":"r9","size":536870913}"#.into());
    let resp = routes::action("createBackup", &big, |who, params| async move {
        backups::create_backup(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r9");
    assert_eq!(f["error"]["code"], "PAYLOAD_TOO_LARGE");
}

fn window(max: u32) -> courier_core::rate_limit::Rule {
    courier_core::rate_limit::Rule::Window {
        max,
        window_secs: 3600,
    }
}

#[tokio::test]
async fn codes_over_the_per_ip_limit_answer_429_with_retry_after_and_send_no_sms() {
    let p = Ports::default();
    let limiter = MemoryRateLimiter::default();
    let throttle = |max| courier_core::rate_limit::Throttle {
        limiter: &limiter,
        rule: window(max),
    };
    let deps = register_account::Deps {
        limits: Some(register_account::CodeLimits {
            per_phone: throttle(100),
            per_ip: throttle(2),
        }),
        sms_guard: None,
        ..p.register()
    };
    // Two numbers from the fixture's address (203.0.113.10), then a third is refused.
    for phone in ["+14155550100", "+14155550101"] {
        let body = format!(r#"{{"phone":"{phone}"}}"#);
        let resp =
            http::register_account(&deps, http_event("register-account.json", Some(&body))).await;
        assert_eq!(resp.status(), 202);
    }
    let resp = http::register_account(
        &deps,
        http_event("register-account.json", Some(r#"{"phone":"+14155550102"}"#)),
    )
    .await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));
    let v = body_json(&resp);
    assert_eq!(v["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(v["error"]["retryAfter"], retry);
    assert_eq!(p.sms.sent().len(), 2, "no SMS for the refused request");
}

#[tokio::test]
async fn an_address_over_its_failed_connection_limit_is_refused_with_429_at_connect() {
    let p = Ports::default();
    let (key, _) = signed_up(&p).await;
    let limiter = MemoryRateLimiter::default();
    let failures = courier_core::rate_limit::Throttle {
        limiter: &limiter,
        rule: window(2),
    };
    let authorize = |key: &str| {
        let event = authorizer_event("authorizer-header.json", key);
        let (accounts, failures) = (&p.accounts, &failures);
        async move {
            authorizer::handle_limited(accounts, None, Some(failures), &SystemClock, &event).await
        }
    };
    for _ in 0..2 {
        assert_eq!(
            authorize("ck_wrong").await.unwrap_err().to_string(),
            "Unauthorized"
        );
    }
    // A neighbour at the same address with its right key (another prefix) is let in.
    let policy = authorize(&key).await.unwrap();
    assert!(policy["context"]["userId"].is_string(), "{policy}");
    // Over the limit: the same key prefix from this address is not looked at. The authorizer
    // lets the handshake reach the $connect route only, which refuses it with 429 and records
    // nothing.
    let policy = authorize("ck_wrong").await.unwrap();
    assert_eq!(policy["principalId"], "rate-limited");
    let context = policy["context"].as_object().unwrap();
    assert!(!context.contains_key("userId"));
    let retry = context[authorizer::RETRY_AFTER_CONTEXT]
        .as_str()
        .unwrap()
        .to_owned();

    let mut event = ws_event("connect.json");
    let fields = &mut event.request_context.authorizer.fields;
    fields.clear();
    fields.extend(context.clone());
    let resp = routes::connect(&p.connections, &p.connections, &SystemClock, &event).await;
    assert_eq!(resp.status_code, 429);
    assert_eq!(resp.headers["retry-after"].to_str().unwrap(), retry);
    let body = frame(&resp);
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(body["error"]["retryAfter"].to_string(), retry);
    assert!(
        p.connections
            .for_user(&UserId::from_trusted("u_test"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_send_over_the_device_limit_gets_limit_exceeded_with_retry_after_in_the_reply() {
    use courier_core::ports::SessionStore;
    let (sessions, messages) = (MemorySessions::default(), MemoryMessages::default());
    let session = courier_core::SessionId::from_trusted("s_00000000000000000000000000000000");
    sessions
        .create_direct(
            &session,
            &UserId::from_trusted("u_test"),
            &UserId::from_trusted("u_peer"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
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

/// A direct session of `u_test` (the fixtures' caller, device `d_test`, connection
/// `Zx9kQcT2oAMCJQg=`) and `u_peer`, with the peer's phone and the caller's second device live.
struct Chat {
    sessions: MemorySessions,
    messages: MemoryMessages,
    connections: MemoryConnections,
    gateway: RecordingGateway,
    session: courier_core::SessionId,
}

const CALLER_CONN: &str = "Zx9kQcT2oAMCJQg=";

impl Chat {
    async fn new() -> Chat {
        use courier_core::ports::{Connection, SessionStore};
        let sessions = MemorySessions::default();
        let session = courier_core::SessionId::from_trusted("s_00000000000000000000000000000000");
        let (me, peer) = (
            UserId::from_trusted("u_test"),
            UserId::from_trusted("u_peer"),
        );
        sessions
            .create_direct(&session, &me, &peer, chrono::Utc::now())
            .await
            .unwrap();
        let connections = MemoryConnections::default();
        let gateway = RecordingGateway::default();
        for (user, device, conn) in [
            (&me, "d_test", CALLER_CONN),
            (&me, "d_laptop", "c_laptop"),
            (&peer, "d_peer", "c_peer"),
        ] {
            let c = ConnectionId::new(conn);
            connections
                .add(&Connection {
                    connection_id: c.clone(),
                    user_id: user.clone(),
                    device_id: courier_core::DeviceId::from_trusted(device),
                    connected_at: chrono::Utc::now(),
                })
                .await
                .unwrap();
            gateway.open(&c);
        }
        Chat {
            sessions,
            messages: MemoryMessages::default(),
            connections,
            gateway,
            session,
        }
    }

    fn deliverer(&self) -> courier_core::usecases::deliver::Deliverer<'_> {
        courier_core::usecases::deliver::Deliverer {
            presence: &self.connections,
            connections: &self.connections,
            gateway: &self.gateway,
            push: None,
        }
    }

    /// Frames posted to one connection, parsed.
    fn posted_to(&self, conn: &str) -> Vec<Value> {
        self.gateway
            .posted()
            .into_iter()
            .filter(|(c, _)| c.as_str() == conn)
            .map(|(_, f)| serde_json::from_str(&f).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn send_message_posts_the_reply_delivers_the_message_itself_and_records_that_it_did() {
    use courier_core::ports::DeliveryLog;
    let chat = Chat::new().await;
    let deliver = chat.deliverer();
    let send = send_deps(&chat.sessions, &chat.messages);
    let handler = courier_lambda::inline::SendMessage {
        send: &send,
        sessions: &chat.sessions,
        deliver: &deliver,
        log: &chat.messages,
    };
    let resp = courier_lambda::inline::handle(&handler, &ws_event("send-message.json")).await;
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
    courier_lambda::inline::handle(&handler, &ws_event("send-message.json")).await;
    let replies = chat.posted_to(CALLER_CONN);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1]["result"], replies[0]["result"]);
    assert_eq!(chat.posted_to("c_peer").len(), 1);
    assert_eq!(chat.messages.all(&chat.session).len(), 1);

    // A refusal is a reply too, posted the same way.
    let outsider = with_caller(ws_event("send-message.json"), "u_other", "d_other");
    courier_lambda::inline::handle(&handler, &outsider).await;
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
    let send = send_deps(&chat.sessions, &chat.messages);
    let handler = courier_lambda::inline::SendMessage {
        send: &send,
        sessions: &chat.sessions,
        deliver: &deliver,
        log: &chat.messages,
    };
    let resp = courier_lambda::inline::handle(&handler, &ws_event("send-message.json")).await;
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
