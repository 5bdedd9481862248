//! Linked devices end to end: a new device asks to be linked, the primary approves its code, the
//! new device gets its own key once; then every message reaches every device of every member
//! and the sender's other devices.

use courier_client::Session;
use courier_core::ErrorCode;
use courier_core::protocol::Credentials;
use courier_tests::TestCloud;
use serde_json::{Value, json};
use std::time::Duration;

async fn request_link(cloud: &TestCloud, name: &str) -> (String, String) {
    let (status, body) = cloud
        .post_raw(
            "/v1/devices/link-requests",
            json!({"name": name, "platform": "web"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["expiresInSeconds"], 300);
    (
        v["linkId"].as_str().unwrap().to_owned(),
        v["code"].as_str().unwrap().to_owned(),
    )
}

async fn poll(cloud: &TestCloud, link_id: &str) -> (u16, Value) {
    let r = reqwest::get(format!(
        "{}/v1/devices/link-requests/{link_id}",
        cloud.http_url
    ))
    .await
    .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn link(cloud: &TestCloud, primary: &Session, name: &str) -> Credentials {
    let (link_id, code) = request_link(cloud, name).await;
    assert_eq!(poll(cloud, &link_id).await.0, 202);
    primary
        .request("approveDeviceLink", json!({ "code": code }))
        .await
        .unwrap();
    let (status, body) = poll(cloud, &link_id).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn a_linked_device_gets_its_own_key_once_and_only_the_primary_approves() {
    let cloud = TestCloud::shared();
    let alice = cloud.sign_up().await;
    let phone = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();

    let (link_id, code) = request_link(cloud, "Firefox on laptop").await;
    assert_eq!(
        poll(cloud, &link_id).await,
        (202, json!({"status": "pending"}))
    );
    let approved = phone
        .request("approveDeviceLink", json!({ "code": code.to_lowercase() }))
        .await
        .unwrap();
    assert_eq!(approved["name"], "Firefox on laptop");
    let (status, creds) = poll(cloud, &link_id).await;
    assert_eq!(status, 200);
    assert_eq!(creds["userId"], alice.user_id.as_str());
    assert_ne!(creds["deviceId"], alice.device_id.as_str());
    assert_eq!(
        poll(cloud, &link_id).await.0,
        404,
        "the key is handed out once"
    );
    let web: Credentials = serde_json::from_value(creds).unwrap();
    let ticket = cloud.accounts().connect_ticket(&web.api_key).await.unwrap();
    let web_session = Session::connect_with_ticket(&cloud.ws_url, &ticket.ticket)
        .await
        .expect("its own key works, as a browser presents it");

    // Codes are single use; only the primary approves; malformed codes are bad requests.
    let err = phone
        .request("approveDeviceLink", json!({ "code": code }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let (_, other_code) = request_link(cloud, "intruder").await;
    let err = web_session
        .request("approveDeviceLink", json!({ "code": other_code }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = phone
        .request("approveDeviceLink", json!({ "code": "nope" }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    assert_eq!(poll(cloud, "l_doesnotexist").await.0, 404);
    let (status, _) = cloud
        .post_raw(
            "/v1/devices/link-requests",
            r#"{"name":"","platform":"web"}"#,
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
}

#[tokio::test]
async fn at_most_five_companions() {
    let cloud = TestCloud::shared();
    let alice = cloud.sign_up().await;
    let phone = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();
    for i in 0..5 {
        link(cloud, &phone, &format!("companion {i}")).await;
    }
    let (_, code) = request_link(cloud, "sixth").await;
    let err = phone
        .request("approveDeviceLink", json!({ "code": code }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded));
}

async fn next_message(s: &Session) -> Value {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let e = s.next_event().await.expect("open");
            if e["event"] == "message" {
                return e["message"].clone();
            }
        }
    })
    .await
    .expect("a message event")
}

#[tokio::test]
async fn a_message_reaches_every_device_of_the_recipient_and_the_senders_other_devices() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let alice_phone = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();
    let bob_phone = Session::connect(&cloud.ws_url, &bob.api_key).await.unwrap();
    let alice_web_creds = link(cloud, &alice_phone, "Alice web").await;
    let bob_laptop_creds = link(cloud, &bob_phone, "Bob laptop").await;
    let alice_web = Session::connect(&cloud.ws_url, &alice_web_creds.api_key)
        .await
        .unwrap();
    let bob_laptop = Session::connect(&cloud.ws_url, &bob_laptop_creds.api_key)
        .await
        .unwrap();

    let chat = alice_phone
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .unwrap()
        .session_id;
    for i in 1..=3 {
        alice_phone
            .request("sendMessage", json!({"sessionId": chat, "clientMsgId": format!("m{i}"), "type": "text", "payload": format!("p{i}")}))
            .await
            .unwrap();
    }
    for device in [&alice_web, &bob_phone, &bob_laptop] {
        let seqs: Vec<u64> = [
            next_message(device).await,
            next_message(device).await,
            next_message(device).await,
        ]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
        assert_eq!(seqs, vec![1, 2, 3]);
    }
    // A reply from Bob's laptop reaches both of Alice's devices and Bob's phone. For Alice's
    // phone it is the first message: the sending device got none of its own before it.
    bob_laptop
        .request(
            "sendMessage",
            json!({"sessionId": chat, "clientMsgId": "r1", "type": "text", "payload": "reply"}),
        )
        .await
        .unwrap();
    for device in [&alice_phone, &alice_web, &bob_phone] {
        let m = next_message(device).await;
        assert_eq!(
            (m["payload"].as_str(), m["seq"].as_u64()),
            (Some("reply"), Some(4)),
            "not echoed to the sending device: {m}"
        );
    }
}
