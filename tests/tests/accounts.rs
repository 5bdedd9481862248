//! Accounts and sign-in, end to end: HTTP and WebSocket clients -> the local cloud's gateway ->
//! the real function binaries -> DynamoDB Local and moto (SNS).

use courier_client::{ConnectError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::{Credentials, DeviceInfo, Platform};
use courier_tests::{TestCloud, fresh_phone};
use serde_json::{Value, json};
use std::time::Duration;

fn device(name: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.into(),
        platform: Platform::Cli,
    }
}

async fn sign_up(cloud: &TestCloud, phone: &str, name: &str) -> Credentials {
    cloud
        .accounts()
        .register(phone)
        .await
        .expect("code requested");
    let code = cloud.code_for(phone).await.expect("code in the outbox");
    cloud
        .accounts()
        .verify(phone, &code, device(name))
        .await
        .expect("verified")
}

async fn refused(cloud: &TestCloud, key: &str) -> u16 {
    match Session::connect(&cloud.ws_url, key).await {
        Err(ConnectError::Refused(status)) => status,
        Ok(_) => panic!("the connection was accepted"),
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

async fn wait_closed(session: &Session) {
    tokio::time::timeout(Duration::from_secs(10), session.closed())
        .await
        .expect("the server closed the connection");
}

#[tokio::test]
async fn register_verify_connect_move_phone_and_delete() {
    let cloud = TestCloud::shared();
    let phone = fresh_phone();

    // Register: 202, and the code arrives by SMS (read back from the SNS emulator).
    let reply = cloud.accounts().register(&phone).await.unwrap();
    assert_eq!(reply.expires_in_seconds, 900);
    let sms = cloud.sms_to(&phone).await.unwrap();
    assert_eq!(sms.len(), 1);
    assert!(sms[0].contains("Courier code"));
    let code = cloud.code_for(&phone).await.unwrap();
    let first = cloud
        .accounts()
        .verify(&phone, &code, device("old phone"))
        .await
        .unwrap();

    // Connect with the key (in the header, or for browsers traded for a one-time ticket for the
    // URL); wrong and missing keys get 401.
    let old = Session::connect(&cloud.ws_url, &first.api_key)
        .await
        .expect("key accepted");
    let ticket = cloud
        .accounts()
        .connect_ticket(&first.api_key)
        .await
        .unwrap();
    let by_token = Session::connect_with_ticket(&cloud.ws_url, &ticket.ticket)
        .await
        .expect("ticket accepted");
    by_token.close().await;
    assert_eq!(refused(cloud, "ck_wrong-key").await, 401);
    assert_eq!(refused(cloud, "").await, 401);
    let no_key = tokio_tungstenite::connect_async(cloud.ws_url.as_str()).await;
    match no_key {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("expected 401 without a key, got {:?}", other.map(|_| ())),
    }

    // A request on the live connection works: an unknown action is answered, not dropped.
    let err = old.request("fly", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownAction));

    // The same number on a "new phone": same user, new device and key; the old key is refused
    // and the old connection is closed by the server.
    let second = sign_up(cloud, &phone, "new phone").await;
    assert_eq!(second.user_id, first.user_id);
    assert_ne!(second.device_id, first.device_id);
    wait_closed(&old).await;
    assert_eq!(refused(cloud, &first.api_key).await, 401);

    // Delete the account from the new phone: the reply arrives, then the connection closes and
    // the key is refused.
    let current = Session::connect(&cloud.ws_url, &second.api_key)
        .await
        .unwrap();
    let other_device = Session::connect(&cloud.ws_url, &second.api_key)
        .await
        .unwrap();
    let result = current.request("deleteAccount", json!({})).await.unwrap();
    assert_eq!(result["deleted"], true);
    wait_closed(&current).await;
    wait_closed(&other_device).await;
    assert_eq!(refused(cloud, &second.api_key).await, 401);

    // The number can be registered again, as a brand-new account.
    let again = sign_up(cloud, &phone, "fresh start").await;
    assert_ne!(again.user_id, first.user_id);
}

#[tokio::test]
async fn deleting_one_account_leaves_others_alone() {
    let cloud = TestCloud::shared();
    let alice = sign_up(cloud, &fresh_phone(), "alice").await;
    let bob = sign_up(cloud, &fresh_phone(), "bob").await;
    let bob_session = Session::connect(&cloud.ws_url, &bob.api_key).await.unwrap();
    let alice_session = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();
    alice_session
        .request("deleteAccount", json!({}))
        .await
        .unwrap();
    wait_closed(&alice_session).await;
    // Bob's connection still answers and his key still works.
    let err = bob_session
        .request("noSuchThing", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownAction));
    Session::connect(&cloud.ws_url, &bob.api_key)
        .await
        .expect("bob's key still works")
        .close()
        .await;
}

#[tokio::test]
async fn malformed_numbers_are_refused_and_no_sms_goes_out() {
    let cloud = TestCloud::shared();
    for bad in [
        "4155550100",
        "+1 415 555 0100",
        "+11234567890",
        "+",
        "+1415555010x",
        "+999123456",
    ] {
        let err = cloud.accounts().register(bad).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{bad}");
        assert!(cloud.sms_to(bad).await.unwrap().is_empty(), "{bad}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_and_unknown_routes() {
    let cloud = TestCloud::shared();
    let (status, body) = cloud.post_raw("/v1/accounts", "{not json").await.unwrap();
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "BAD_REQUEST");

    let (status, body) = cloud
        .post_raw("/v1/accounts", r#"{"phone": 14155550100}"#)
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("invalid type"), "{body}");

    let phone = fresh_phone();
    let big = format!(
        r#"{{"phone":"{phone}","padding":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let (status, body) = cloud.post_raw("/v1/accounts", big).await.unwrap();
    assert_eq!(status, 413);
    assert!(body.contains("PAYLOAD_TOO_LARGE"));
    assert!(
        cloud.sms_to(&phone).await.unwrap().is_empty(),
        "nothing was sent for a refused body"
    );

    let (status, _) = cloud.post_raw("/v1/nothing-here", "{}").await.unwrap();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn wrong_codes_lock_the_code_after_five_tries() {
    let cloud = TestCloud::shared();
    let phone = fresh_phone();
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (0..5).rev() {
        let err = cloud
            .accounts()
            .verify(&phone, wrong, device("x"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Unauthorized));
        assert!(
            err.to_string().contains(&format!("{left} tries left")),
            "{err}"
        );
    }
    let err = cloud
        .accounts()
        .verify(&phone, &code, device("x"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::LimitExceeded),
        "the 6th try is refused even with the right code"
    );

    // A code for a number that asked for none.
    let err = cloud
        .accounts()
        .verify(&fresh_phone(), "123456", device("x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    // Not six digits.
    let err = cloud
        .accounts()
        .verify(&phone, "12345", device("x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
}

#[tokio::test]
async fn at_most_three_codes_per_number_in_fifteen_minutes() {
    let cloud = TestCloud::shared();
    let phone = fresh_phone();
    for _ in 0..3 {
        cloud.accounts().register(&phone).await.unwrap();
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/accounts", cloud.http_url))
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 800 && retry <= 900, "{retry}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(v["error"]["retryAfter"], retry);
    assert_eq!(
        cloud.sms_to(&phone).await.unwrap().len(),
        3,
        "the 4th request sent nothing"
    );
}

#[tokio::test]
async fn bad_frames_get_error_replies_and_the_connection_stays_open() {
    let cloud = TestCloud::shared();
    let me = sign_up(cloud, &fresh_phone(), "frames").await;
    let s = Session::connect(&cloud.ws_url, &me.api_key).await.unwrap();

    // Not JSON: BAD_REQUEST with no request id (it could not be read); arrives as an event-less reply.
    s.send_raw("this is not json").await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), s.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "BAD_REQUEST");

    let reply = s
        .send_raw_and_wait("r1", r#"{"action":"fly","requestId":"r1"}"#)
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], "UNKNOWN_ACTION");
    let reply = s
        .send_raw_and_wait("r2", r#"{"action":42,"requestId":"r2"}"#)
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], "BAD_REQUEST");
    let reply = s
        .send_raw_and_wait("r3", r#"{"requestId":"r3"}"#)
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], "BAD_REQUEST");
    let reply = s
        .send_raw_and_wait("r3e", r#"{"action":"","requestId":"r3e"}"#)
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], "BAD_REQUEST");
    assert_eq!(reply["error"]["message"], "action must not be empty");
    // Truncated JSON: its request id cannot be read, so the reply carries none.
    s.send_raw(r#"{"action":"deleteAccount","requestId":"r4","extra":"#)
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), s.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply["error"]["code"], "BAD_REQUEST");
    assert!(reply["requestId"].is_null());

    // Still open, still this user's: the key works and the account is intact.
    let err = s.request("stillThere", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownAction));
}
