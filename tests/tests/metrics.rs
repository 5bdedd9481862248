//! Business metrics end to end: a scripted conversation on the local cloud (three users
//! registered and verified over the HTTP API, a direct chat, a small group, messages, delivered
//! and read acks), then `GET /_local/metrics`: the functions' EMF lines, as the local cloud
//! aggregated them, count exactly what the script did.
//!
//! Every figure is read as the difference between two snapshots ([`courier_tests::metrics`]),
//! polled until it reaches the expected value (or the wait ends) and then compared exactly.

use courier_client::Session;
use courier_core::ErrorCode;
use courier_tests::metrics::{grown, scrape, total};
use courier_tests::{TestCloud, connect, next, open_group};
use serde_json::{Value, json};

async fn send(s: &Session, session: &str, cmid: &str) -> Value {
    s.request(
        "sendMessage",
        json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": "Y2lwaGVy"}),
    )
    .await
    .unwrap()
}

async fn ack(s: &Session, session: &str, msg_id: &str, status: &str) {
    s.request(
        "ackMessages",
        json!({"sessionId": session, "msgId": msg_id, "status": status}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_local_metrics_count_what_a_scripted_conversation_did() {
    let cloud = TestCloud::shared();
    let before = scrape(cloud).await;

    // Three users, each registered (one SMS) and verified through the HTTP API.
    let (alice, bob, carol) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let a = connect(cloud, &alice).await;
    let b = connect(cloud, &bob).await;
    let c = connect(cloud, &carol).await;

    // A direct chat: Alice sends 3; Bob acks them delivered (up to the last), then read.
    let chat = a
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .unwrap()
        .session_id;
    let mut direct_ids = vec![];
    for i in 1..=3 {
        direct_ids.push(
            send(&a, &chat, &format!("d-{i}")).await["msgId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A client retry of the same clientMsgId stores nothing new and is not counted again.
    let again = send(&a, &chat, "d-3").await;
    assert_eq!(again["msgId"], direct_ids[2].as_str());
    for _ in 0..3 {
        next(&b, "message").await;
    }
    ack(&b, &chat, &direct_ids[2], "delivered").await;
    ack(&b, &chat, &direct_ids[2], "read").await;

    // A group of three: Alice sends 2 and Bob 1; Carol acks the last delivered and read, Alice
    // acks it delivered.
    let group = open_group(&a, "metrics", &[&bob.user_id, &carol.user_id]).await;
    send(&a, &group, "g-1").await;
    send(&a, &group, "g-2").await;
    let last = send(&b, &group, "g-3").await["msgId"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        next(&c, "message").await;
    }
    ack(&c, &group, &last, "delivered").await;
    ack(&c, &group, &last, "read").await;
    ack(&a, &group, &last, "delivered").await;

    // One refused request: an unknown message type.
    let err = a
        .request(
            "sendMessage",
            json!({"sessionId": chat, "clientMsgId": "bad", "type": "fax", "payload": "eA=="}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));

    macro_rules! ops {
        ($metric:expr, $labels:expr, $n:expr) => {
            grown(cloud, &before, $metric, $labels, $n).await
        };
    }
    let sent = "courier_messages_sent_total";
    assert_eq!(
        ops!(sent, &[r#"kind="direct""#], 3.0),
        3.0,
        "direct messages"
    );
    assert_eq!(ops!(sent, &[r#"kind="group""#], 3.0), 3.0, "group messages");
    assert_eq!(ops!(sent, &[r#"kind="media""#], 0.0), 0.0, "no media");
    assert_eq!(ops!(sent, &[r#"kind="status""#], 0.0), 0.0, "no status");

    // The dashboard page shows the same message counts as the Prometheus text.
    let page = reqwest::get(format!("{}/_local/dashboard", cloud.http_url))
        .await
        .expect("dashboard answers");
    assert_eq!(page.status(), 200);
    let ctype = page.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/html"), "content type {ctype}");
    let html = page.text().await.unwrap();
    let now = scrape(cloud).await;
    for kind in ["direct", "group"] {
        let n = total(&now, sent, &[&format!("kind=\"{kind}\"")]);
        let row =
            format!("MessagesSent kind={kind} operation=sendMessage</td><td class=\"n\">{n}</td>");
        assert!(html.contains(&row), "dashboard shows {kind} = {n}");
    }
    assert_eq!(ops!("courier_messages_delivered_total", &[], 3.0), 3.0);
    assert_eq!(ops!("courier_messages_read_total", &[], 2.0), 2.0);
    assert_eq!(ops!("courier_registrations_started_total", &[], 3.0), 3.0);
    assert_eq!(ops!("courier_registrations_completed_total", &[], 3.0), 3.0);
    assert_eq!(ops!("courier_sms_sent_total", &[], 3.0), 3.0);
    assert_eq!(ops!("courier_connections_opened_total", &[], 3.0), 3.0);
    assert_eq!(
        ops!(
            "courier_errors_total",
            &[r#"code="BAD_REQUEST""#, r#"operation="sendMessage""#],
            1.0
        ),
        1.0
    );
    // Fan-out: one observation per message it delivered (3 direct + 3 group). A failed batch is
    // retried by the stream mapping and observed again, so this may legitimately be higher.
    let fanned = ops!("courier_fan_out_size_count", &[], 6.0);
    assert!(
        fanned >= 6.0,
        "fan-out observed {fanned} messages, expected at least 6"
    );
    // Each reached at least one connection (every member was online).
    assert!(ops!("courier_fan_out_size_sum", &[], 6.0) >= 6.0);
    assert!(ops!("courier_fan_out_duration_ms_count", &[], 1.0) >= 1.0);
    // Every function process reports its cold start once, with its init time.
    let now = scrape(cloud).await;
    assert!(total(&now, "courier_cold_start_total", &[]) >= 1.0);
    assert!(total(&now, "courier_init_duration_ms_count", &[]) >= 1.0);

    // Closing the three connections: three $disconnect.
    // Analytics. Three users connected today: each is a daily and a monthly active user once,
    // however many connections it opens.
    let day = r#"period="day""#;
    let month = r#"period="month""#;
    assert_eq!(ops!("courier_active_users_total", &[day], 3.0), 3.0);
    assert_eq!(ops!("courier_active_users_total", &[month], 3.0), 3.0);
    let a2 = connect(cloud, &alice).await;
    a2.close().await;
    assert_eq!(ops!("courier_connections_opened_total", &[], 4.0), 4.0);
    let now = scrape(cloud).await;
    assert_eq!(
        total(&now, "courier_active_users_total", &[day])
            - total(&before, "courier_active_users_total", &[day]),
        3.0,
        "a second connection the same day is not a new active user"
    );
    // Delivery latency: one observation per delivered ack of someone else's message (Bob's of
    // the direct chat, Carol's and Alice's of Bob's group message); read acks are not deliveries.
    assert_eq!(ops!("courier_delivery_latency_ms_count", &[], 3.0), 3.0);
    let prom = reqwest::get(format!("{}/_local/metrics", cloud.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        prom.contains("courier_delivery_latency_ms{operation=\"ackMessages\",quantile=\"0.5\"}")
    );

    // The group census runs as EventBridge would run it (a scheduled event to the function's
    // binary): this test's cloud holds one group, of three.
    let census = reqwest::Client::new()
        .post(format!(
            "{}/_local/invoke/GroupCensusFunction",
            cloud.http_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(census.status(), 200);
    assert_eq!(
        census.json::<Value>().await.unwrap(),
        json!({ "groups": 1 })
    );
    assert_eq!(ops!("courier_groups_counted_total", &[], 1.0), 1.0);
    assert_eq!(ops!("courier_group_size_sum", &[], 3.0), 3.0);
    let prom = reqwest::get(format!("{}/_local/metrics", cloud.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(prom.contains("\ncourier_median_group_size 3\n"), "{prom}");
    let html = reqwest::get(format!("{}/_local/dashboard", cloud.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Median group size: <strong>3</strong> (latest census: 1 group)"));
    let unknown = reqwest::Client::new()
        .post(format!("{}/_local/invoke/NoSuchFunction", cloud.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    for s in [&a, &b, &c] {
        s.close().await;
    }
    assert_eq!(ops!("courier_connections_closed_total", &[], 4.0), 4.0);

    // The functions' logs (every function's output, in the local cloud's log) follow a user by
    // pseudonym, with the request id, and never hold a user id or a phone number.
    let log = std::fs::read_to_string(
        cloud
            .state_dir
            .as_ref()
            .expect("a local cloud")
            .join("courier-local.log"),
    )
    .unwrap();
    for who in [&alice, &bob, &carol] {
        assert!(!log.contains(&who.user_id), "the log holds a user id");
        assert!(!log.contains(&who.device_id), "the log holds a device id");
        let pseudonym = courier_core::ids::Pseudonym::keyed(
            courier_tests::LOG_PSEUDONYM_KEY.as_bytes(),
            &who.user_id,
        );
        let authorized: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("connection authorized") && l.contains(&pseudonym.to_string()))
            .collect();
        assert!(
            !authorized.is_empty(),
            "the authorizer logs the user's pseudonym"
        );
        assert!(
            authorized.iter().all(|l| l.contains("\"requestId\"")),
            "{authorized:?}"
        );
    }
    let phones = cloud_phones(&log);
    assert!(phones.is_empty(), "phone numbers in the log: {phones:?}");
}

/// Anything in the log that looks like a whole E.164 number (`+` and 8 to 15 digits).
fn cloud_phones(log: &str) -> Vec<String> {
    let bytes = log.as_bytes();
    let mut found = Vec::new();
    for (i, _) in log.match_indices('+') {
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if (8..=15).contains(&digits) {
            found.push(log[i..i + 1 + digits].to_owned());
        }
    }
    found
}
