//! DynamoDB as it behaves on AWS and DynamoDB Local does not: global secondary indexes that lag
//! behind their table, and transactions cancelled by a `TransactionConflict`. The local cloud's
//! fault switch makes both happen (docs/local-cloud.md; `--dynamodb-faults` puts the functions'
//! DynamoDB calls where it can act); these tests show that what a user does still works while
//! they do. Each test runs its own cloud, since the switch is the cloud's.

use courier_client::protocol::{Event, MessageKind, NewMessage};
use courier_client::{Client, ClientConfig, Session};
use courier_core::protocol::Credentials;
use courier_tests::{TestCloud, WAIT, eventually};
use serde_json::{Value, json};
use std::time::Instant;

/// How far behind the indexes are: far longer than AWS's usual lag (well under a second), so
/// that every step of a scenario happens while the index still misses what it just wrote.
const LAG_MS: u64 = 4000;

async fn lag(cloud: &TestCloud, ms: u64) -> Value {
    cloud
        .local("/_local/faults/gsi-lag", json!({"lagMs": ms}))
        .await
        .expect("the GSI lag switch")
}

async fn faults(cloud: &TestCloud) -> Value {
    cloud.local_get("/_local/faults").await.unwrap()
}

/// A lag longer than the whole of [`a_chat_started_while_the_index_lags_reaches_the_peer_and_is_listed`]:
/// nothing in it can be explained by the index catching up.
const LONGER_THAN_THE_TEST_MS: u64 = 600_000;

/// Whether `listSessions` names `session`, asked once.
async fn listed(s: &Session, session: &str) -> bool {
    s.list_sessions()
        .await
        .unwrap()
        .iter()
        .any(|l| l.session_id == session)
}

/// Alice starts a chat with Bob and writes at once; Bob's phone, offline, gets the push, and
/// comes online while the sessions index (byUser, behind `listSessions`) does not know the chat
/// (and will not for the rest of the test). Bob still gets the message by his own sync, and both
/// see the chat listed at once: `listSessions` does not depend on the index alone.
#[tokio::test]
async fn a_chat_started_while_the_index_lags_reaches_the_peer_and_is_listed() {
    let cloud = TestCloud::start_with(&["--dynamodb-faults"], &[]).expect("a cloud of its own");
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    // Bob's phone can be reached by push, then goes offline.
    let b = Session::connect(&cloud.ws_url, &bob.api_key).await.unwrap();
    let token = format!("apns-token-{}", uuid::Uuid::new_v4().simple());
    b.request(
        "registerPushToken",
        json!({"platform": "apns", "token": token}),
    )
    .await
    .unwrap();
    b.close().await;
    let armed = lag(&cloud, LONGER_THAN_THE_TEST_MS).await;
    assert_eq!(armed["gsiLag"]["lagMs"], LONGER_THAN_THE_TEST_MS);
    assert!(
        armed["gsiLag"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().ends_with("-SessionsTable")),
        "{armed}"
    );

    let a = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();
    let chat = a
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .unwrap()
        .session_id;
    let sent = a
        .send_message(
            &NewMessage {
                session_id: chat.clone(),
                kind: MessageKind::Text,
                payload: "written while the index lags".into(),
                attachments: vec![],
                client_msg_id: None,
            },
            "lag-1",
        )
        .await
        .unwrap();
    assert!(
        listed(&a, &chat).await,
        "Alice's listSessions names the chat she just started"
    );

    // The fan-out has run: Bob's phone got its push. Only now does it come online (still
    // within the lag), so what brings the message is the phone's own sync, not a live post.
    eventually("Bob's phone got a push", WAIT, async || {
        (!cloud.pushes_mentioning(&chat).await.is_empty()).then_some(())
    })
    .await;
    let (bob_client, mut events) = Client::connect(ClientConfig::new(&cloud.ws_url, &bob.api_key))
        .await
        .unwrap();
    let online = Instant::now();
    let got = tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Message(m) = events.recv().await.expect("events keep coming")
                && m.session_id == chat
            {
                return m;
            }
        }
    })
    .await
    .expect("Bob's device gets the message despite the lagging index");
    assert_eq!(got.msg_id, sent.msg_id);
    eprintln!(
        "Bob's phone had the message {} ms after coming online",
        online.elapsed().as_millis()
    );
    let b = Session::connect(&cloud.ws_url, &bob.api_key).await.unwrap();
    assert!(listed(&b, &chat).await, "Bob's listSessions names the chat");
    let f = faults(&cloud).await;
    assert!(
        f["gsiLag"]["laggedReads"].as_u64().unwrap() > 0,
        "listSessions read the lagging index: {f}"
    );
    assert_eq!(f["gsiLag"]["replicaFailures"], 0, "{f}");
    bob_client.close().await;
}

async fn request_link(cloud: &TestCloud) -> (String, String) {
    let (status, body) = cloud
        .post_raw(
            "/v1/devices/link-requests",
            json!({"name": "laptop", "platform": "web"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    (
        v["linkId"].as_str().unwrap().to_owned(),
        v["code"].as_str().unwrap().to_owned(),
    )
}

async fn link(cloud: &TestCloud, primary: &Session) -> Credentials {
    let (link_id, code) = request_link(cloud).await;
    primary
        .request("approveDeviceLink", json!({ "code": code }))
        .await
        .unwrap();
    let r = reqwest::get(format!(
        "{}/v1/devices/link-requests/{link_id}",
        cloud.http_url
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// `removeDevice` right after the device was linked, while the byDevice index does not know it
/// yet: the owner removes it (its key stops working at once), and another account's attempt on
/// a just-linked device is refused and removes nothing.
#[tokio::test]
async fn a_just_linked_device_is_removed_or_refused_while_the_index_lags() {
    let cloud = TestCloud::start_with(&["--dynamodb-faults"], &[]).expect("a cloud of its own");
    let (alice, mallory) = (cloud.sign_up().await, cloud.sign_up().await);
    let armed = lag(&cloud, LAG_MS).await;
    assert!(
        armed["gsiLag"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().ends_with("-UsersTable")),
        "{armed}"
    );
    let phone = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();

    // Another account tries to remove Alice's brand-new laptop.
    let laptop = link(&cloud, &phone).await;
    let m = Session::connect(&cloud.ws_url, &mallory.api_key)
        .await
        .unwrap();
    let refused = m
        .request("removeDevice", json!({"deviceId": laptop.device_id}))
        .await
        .expect_err("not Mallory's device");
    let code = match &refused {
        courier_client::ClientError::Api(e) => e.code,
        other => panic!("expected an API error, got {other:?}"),
    };
    assert!(
        matches!(
            code,
            courier_core::ErrorCode::Forbidden | courier_core::ErrorCode::NotFound
        ),
        "{refused:?}"
    );
    let still = Session::connect(&cloud.ws_url, &laptop.api_key).await;
    assert!(still.is_ok(), "the laptop's key still works");

    // Alice removes a second new laptop at once.
    let tablet = link(&cloud, &phone).await;
    phone
        .request("removeDevice", json!({"deviceId": tablet.device_id}))
        .await
        .expect("the owner removes a device the index does not know yet");
    match Session::connect(&cloud.ws_url, &tablet.api_key).await {
        Err(courier_client::ConnectError::Refused(401)) => {}
        other => panic!(
            "the removed device's key must be refused, got {:?}",
            other.err()
        ),
    }
    eprintln!("another account's removal of a just-linked device answered {code:?}");
}

/// Transactions cancelled by `TransactionConflict` (another writer on the same item): a few in
/// a row are retried and the user sees nothing; more than the retries allow fail the request
/// with an error (nothing half-written), and the same request succeeds afterwards.
#[tokio::test]
async fn transactions_cancelled_by_conflicts_are_retried() {
    let cloud = TestCloud::start_with(&["--dynamodb-faults"], &[]).expect("a cloud of its own");
    let (alice, bob, carol) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let a = Session::connect(&cloud.ws_url, &alice.api_key)
        .await
        .unwrap();

    let sessions = cloud.table("SessionsTable");
    let armed = cloud
        .local(
            "/_local/faults/transaction-conflicts",
            json!({"count": 3, "table": sessions}),
        )
        .await
        .unwrap();
    assert_eq!(armed["transactionConflicts"]["remaining"], 3);
    let chat = a
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .expect("three conflicts in a row are retried");
    assert!(chat.created);
    let f = faults(&cloud).await;
    assert_eq!(f["transactionConflicts"]["injected"], 3, "{f}");
    assert_eq!(f["transactionConflicts"]["remaining"], 0, "{f}");

    // More conflicts than any retry loop allows: the request fails, and nothing is half-made.
    cloud
        .local(
            "/_local/faults/transaction-conflicts",
            json!({"count": 50, "table": sessions}),
        )
        .await
        .unwrap();
    let failed = a.initiate_direct_chat(&carol.user_id, None).await;
    assert!(failed.is_err(), "{failed:?}");
    let listed = a.list_sessions().await.unwrap();
    assert!(
        listed.iter().all(|s| !s.members.contains(&carol.user_id)),
        "no session with Carol was stored: {listed:?}"
    );
    cloud
        .local("/_local/faults/transaction-conflicts", json!({"count": 0}))
        .await
        .unwrap();
    let again = a
        .initiate_direct_chat(&carol.user_id, None)
        .await
        .expect("once the conflicts are over");
    assert!(again.created);
    eprintln!("with every attempt in conflict, initiateDirectChatSession answered {failed:?}");
}
