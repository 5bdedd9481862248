//! One-time connect tickets (docs/security.md, item 17): a browser cannot set headers on a
//! WebSocket handshake, and a key in the URL (`?token=`) ends up in access logs. So it trades its
//! key, in a header, for a short-lived single-use ticket (`POST /v1/connect-tickets`), and the
//! URL carries only the ticket. On a cloud of its own, with tickets living 3 seconds.

use courier_tests::TestCloud;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `POST /v1/connect-tickets` with `key` in the `Authorization` header: status and body.
async fn ticket(cloud: &TestCloud, key: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/connect-tickets", cloud.http_url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A WebSocket handshake with `query` in the URL: the socket, or the refusal's status.
async fn open(cloud: &TestCloud, query: &str) -> Result<Ws, u16> {
    match tokio_tungstenite::connect_async(format!("{}/?{query}", cloud.ws_url)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The reply to one request on a raw socket.
async fn request(ws: &mut Ws, action: &str, fields: Value) -> Value {
    let mut frame = fields;
    frame["action"] = json!(action);
    frame["requestId"] = json!("r1");
    ws.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a reply within 15 s")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["requestId"] == "r1" {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn a_ticket_connects_once_and_a_reused_or_expired_ticket_or_a_key_in_the_url_is_refused() {
    let cloud = &TestCloud::start(&["ConnectTicketTtlSeconds=3"]).expect("a local cloud");
    let user = cloud.sign_up().await;

    // The attack surface: a live key in the URL, where access logs and proxies keep it.
    assert_eq!(
        open(cloud, &format!("token={}", user.api_key)).await.err(),
        Some(401),
        "a key in the URL opens nothing"
    );

    // The key goes in a header; the ticket is all the URL carries.
    let (status, body) = ticket(cloud, &user.api_key).await;
    assert_eq!(status, 201, "{body}");
    let t = body["ticket"].as_str().expect("a ticket").to_owned();
    assert!(
        t.starts_with("ct_") && !t.contains(&user.api_key[3..]),
        "{t}"
    );
    assert_eq!(body["expiresInSeconds"], 3);
    let mut ws = open(cloud, &format!("ticket={t}"))
        .await
        .expect("a fresh ticket connects");
    let reply = request(&mut ws, "listDevices", json!({"userIds": [user.user_id]})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["result"]["devices"][0]["deviceId"],
        user.device_id.as_str(),
        "the connection is the ticket's device: {reply}"
    );

    // Used once: the same ticket, replayed (say, from a log), is refused.
    assert_eq!(open(cloud, &format!("ticket={t}")).await.err(), Some(401));

    // Expired: a ticket not used within its lifetime is refused.
    let (status, body) = ticket(cloud, &user.api_key).await;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        open(
            cloud,
            &format!("ticket={}", body["ticket"].as_str().unwrap())
        )
        .await
        .err(),
        Some(401)
    );

    // No ticket without a live key; a made-up ticket opens nothing.
    assert_eq!(ticket(cloud, "ck_wrong").await.0, 401);
    assert_eq!(open(cloud, "ticket=ct_madeup").await.err(), Some(401));
    let _ = ws.close(None).await;
}
