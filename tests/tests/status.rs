//! Status posts end to end: real WebSocket clients -> the local gateway -> the `status`,
//! `accounts` and `connections` binaries -> DynamoDB Local. A status is seen by those the
//! poster's privacy setting allows and nobody else, its viewers are listed for the poster only,
//! it is gone after its expiry (a cloud of its own with `StatusTtlSeconds=3`) and when removed,
//! and bad input gets its code.

use courier_client::{ClientError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::Credentials;
use courier_tests::{TestCloud, connect, next, until_marker};
use serde_json::{Value, json};
use std::time::Duration;

fn err(r: Result<Value, ClientError>) -> (ErrorCode, String) {
    match r.unwrap_err() {
        ClientError::Api(d) => (d.code, d.message),
        other => panic!("not an API error: {other}"),
    }
}

/// `from` sends `to` a direct message after what came before; returns the events `to_session`
/// got up to it (a `statusPosted` is posted before `postStatus` answers, so one sent to `to`
/// would be among them).
async fn marker_message(from: &Session, to: &Credentials, to_session: &Session) -> Vec<Value> {
    let chat = from
        .initiate_direct_chat(&to.user_id, None)
        .await
        .unwrap()
        .session_id;
    let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
    from.request(
        "sendMessage",
        json!({"sessionId": chat, "clientMsgId": marker, "type": "text", "payload": marker}),
    )
    .await
    .unwrap();
    until_marker(to_session, |e| courier_tests::is_message(e, &marker)).await
}

async fn privacy(s: &Session, status: &str) {
    s.request("updateSettings", json!({ "privacy": { "status": status } }))
        .await
        .unwrap();
}

async fn add_contacts(s: &Session, who: &[&Credentials]) {
    let ids: Vec<_> = who.iter().map(|c| c.user_id.clone()).collect();
    s.request("updateContacts", json!({ "add": ids }))
        .await
        .unwrap();
}

/// Uploads `bytes` as the user's media (createMediaUpload, then the presigned PUT) and returns
/// its id.
async fn upload(s: &Session, bytes: Vec<u8>) -> String {
    let r = s
        .request(
            "createMediaUpload",
            json!({ "contentType": "application/octet-stream", "size": bytes.len() }),
        )
        .await
        .unwrap();
    let mut put = reqwest::Client::new().put(r["uploadUrl"].as_str().unwrap());
    for (k, v) in r["uploadHeaders"].as_object().unwrap() {
        if !k.eq_ignore_ascii_case("content-length") {
            put = put.header(k, v.as_str().unwrap());
        }
    }
    let resp = put.body(bytes).send().await.unwrap();
    assert!(resp.status().is_success(), "upload: {}", resp.status());
    r["mediaId"].as_str().unwrap().to_owned()
}

async fn post(s: &Session, payload: &str) -> Value {
    s.request("postStatus", json!({ "payload": payload }))
        .await
        .unwrap()
}

async fn view(s: &Session, of: &Credentials) -> Vec<Value> {
    let r = s
        .request("viewStatus", json!({ "userId": of.user_id }))
        .await
        .unwrap();
    assert_eq!(r["userId"], of.user_id.as_str());
    assert_eq!(r["hasMore"], false);
    r["statuses"].as_array().unwrap().clone()
}

async fn viewers(s: &Session, status_id: &Value) -> Result<Value, ClientError> {
    s.request("getStatusViewers", json!({ "statusId": status_id }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contacts_privacy_a_contact_sees_it_and_is_listed_a_stranger_sees_nothing() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let (a, b, c) = (
        connect(cloud, &alice).await,
        connect(cloud, &bob).await,
        connect(cloud, &carol).await,
    );
    privacy(&a, "contacts").await;
    add_contacts(&a, &[&bob]).await;
    add_contacts(&c, &[&alice]).await; // carol knowing alice does not make her alice's contact

    let photos = [
        upload(&a, b"encrypted photo 1".to_vec()).await,
        upload(&a, b"encrypted photo 2".to_vec()).await,
    ];
    let posted = a
        .request(
            "postStatus",
            json!({ "payload": "ciphertext-of-a-sunset", "attachments": photos }),
        )
        .await
        .unwrap();
    let id = &posted["statusId"];
    let event = next(&b, "statusPosted").await;
    assert_eq!(event["userId"], alice.user_id.as_str());
    assert_eq!(&event["statusId"], id);
    assert_eq!(event["expiresAt"], posted["expiresAt"]);
    assert!(event.get("payload").is_none(), "fetched with viewStatus");

    let seen = view(&b, &alice).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0]["statusId"], id);
    assert_eq!(seen[0]["payload"], "ciphertext-of-a-sunset");
    assert_eq!(seen[0]["attachments"], json!(photos));
    assert_eq!(seen[0]["deviceId"], alice.device_id.as_str());
    assert_eq!(seen[0]["expiresAt"], posted["expiresAt"]);
    assert!(
        view(&c, &alice).await.is_empty(),
        "carol is not alice's contact"
    );
    assert_eq!(view(&a, &alice).await.len(), 1, "the poster sees its own");
    // A message to Carol, sent after the post: no statusPosted before it.
    let got = marker_message(&a, &carol, &c).await;
    assert!(
        got.iter().all(|e| e["event"] != "statusPosted"),
        "no event to a stranger: {got:?}"
    );

    let list = viewers(&a, id).await.unwrap();
    let list = list["viewers"].as_array().unwrap();
    assert_eq!(
        list.len(),
        1,
        "bob; not the poster, not carol who saw nothing"
    );
    assert_eq!(list[0]["userId"], bob.user_id.as_str());
    assert!(list[0]["viewedAt"].as_str().is_some());
    for other in [&b, &c] {
        assert_eq!(err(viewers(other, id).await).0, ErrorCode::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everyone_shows_it_to_strangers_nobody_hides_it_even_from_contacts() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let (a, b, c) = (
        connect(cloud, &alice).await,
        connect(cloud, &bob).await,
        connect(cloud, &carol).await,
    );
    add_contacts(&a, &[&bob]).await;
    let audience = a.request("getStatusAudience", json!({})).await.unwrap();
    assert_eq!(audience["userIds"], json!([bob.user_id]));

    // everyone (the default): a stranger can read it, contacts are told.
    let first = post(&a, "for-everyone").await;
    assert_eq!(
        next(&b, "statusPosted").await["statusId"],
        first["statusId"]
    );
    assert_eq!(view(&c, &alice).await.len(), 1);

    privacy(&a, "nobody").await;
    assert_eq!(
        a.request("getStatusAudience", json!({})).await.unwrap()["userIds"],
        json!([])
    );
    post(&a, "for-nobody").await;
    assert!(view(&b, &alice).await.is_empty(), "not even a contact");
    assert!(view(&c, &alice).await.is_empty());
    assert_eq!(view(&a, &alice).await.len(), 2, "the poster sees both");
    let got = marker_message(&a, &bob, &b).await;
    assert!(
        got.iter().all(|e| e["event"] != "statusPosted"),
        "no event when nobody may see it: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_status_is_removed_on_demand_by_its_poster_only() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let (a, b) = (connect(cloud, &alice).await, connect(cloud, &bob).await);
    let gone = post(&a, "oops").await;
    let kept = post(&a, "keep").await;
    assert_eq!(view(&b, &alice).await.len(), 2);
    let (code, _) = err(b
        .request("removeStatus", json!({ "statusId": gone["statusId"] }))
        .await);
    assert_eq!(code, ErrorCode::NotFound, "bob cannot remove alice's");
    a.request("removeStatus", json!({ "statusId": gone["statusId"] }))
        .await
        .unwrap();
    let left = view(&b, &alice).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["statusId"], kept["statusId"]);
    let (code, _) = err(a
        .request("removeStatus", json!({ "statusId": gone["statusId"] }))
        .await);
    assert_eq!(code, ErrorCode::NotFound);
    assert_eq!(
        err(viewers(&a, &gone["statusId"]).await).0,
        ErrorCode::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_its_code_and_account_deletion_removes_statuses_and_views() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let (a, b) = (connect(cloud, &alice).await, connect(cloud, &bob).await);
    for (action, body, code) in [
        (
            "postStatus",
            json!({ "payload": "x".repeat(65_537) }),
            ErrorCode::PayloadTooLarge,
        ),
        (
            "postStatus",
            json!({ "payload": "x", "attachments": ["m1", "m2", "m3", "m4", "m5"] }),
            ErrorCode::BadRequest,
        ),
        (
            "postStatus",
            json!({ "payload": 42 }),
            ErrorCode::BadRequest,
        ),
        (
            "postStatus",
            json!({ "payload": "" }),
            ErrorCode::BadRequest,
        ),
        (
            "postStatus",
            json!({ "payload": "x", "attachments": "m1" }),
            ErrorCode::BadRequest,
        ),
        (
            "postStatus",
            json!({ "payload": "x", "attachments": ["m_photo"] }),
            ErrorCode::BadRequest,
        ),
        (
            "postStatus",
            json!({ "payload": "x", "attachments": [format!("m_{}", "0".repeat(32))] }),
            ErrorCode::NotFound,
        ),
        ("viewStatus", json!({ "userId": 7 }), ErrorCode::BadRequest),
        (
            "viewStatus",
            json!({ "userId": "bob" }),
            ErrorCode::BadRequest,
        ),
        (
            "getStatusViewers",
            json!({ "statusId": "nope" }),
            ErrorCode::BadRequest,
        ),
        ("removeStatus", json!({}), ErrorCode::BadRequest),
    ] {
        let (got, message) = err(a.request(action, body.clone()).await);
        assert_eq!(got, code, "{action} {message}");
    }
    assert!(view(&a, &alice).await.is_empty(), "nothing was stored");
    // Someone else's media may not go on one's status.
    let bobs = upload(&b, vec![1; 10]).await;
    assert_eq!(
        err(a
            .request(
                "postStatus",
                json!({ "payload": "x", "attachments": [bobs] })
            )
            .await)
        .0,
        ErrorCode::Forbidden
    );
    assert!(view(&a, &alice).await.is_empty(), "nothing was stored");
    // The largest allowed payload with four attachments is accepted.
    let mut four = Vec::new();
    for i in 0..4u8 {
        four.push(upload(&a, vec![i; 10]).await);
    }
    a.request(
        "postStatus",
        json!({ "payload": "x".repeat(65_536), "attachments": four }),
    )
    .await
    .unwrap();
    assert_eq!(view(&b, &alice).await.len(), 1);

    a.request("deleteAccount", json!({})).await.unwrap();
    let left = cloud
        .dynamodb()
        .query()
        .table_name(cloud.table("StatusTable"))
        .key_condition_expression("pk = :p")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S(alice.user_id.clone()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(left.count, 0, "neither the status nor bob's view is left");
    assert!(view(&b, &alice).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_status_is_gone_after_its_expiry() {
    let cloud = TestCloud::start(&["StatusTtlSeconds=3"]).expect("local cloud");
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let (a, b) = (connect(&cloud, &alice).await, connect(&cloud, &bob).await);
    let before = chrono::Utc::now();
    let posted = post(&a, "short-lived").await;
    let after = chrono::Utc::now();
    let expires: chrono::DateTime<chrono::Utc> =
        posted["expiresAt"].as_str().unwrap().parse().unwrap();
    // expiresAt = the server's clock (this machine's) at posting + 3 s, in milliseconds.
    let ttl = chrono::Duration::seconds(3);
    assert!(
        expires >= before + ttl - chrono::Duration::milliseconds(1),
        "{expires} {before}"
    );
    assert!(expires <= after + ttl, "{expires} {after}");
    // Wait until it has expired (DynamoDB Local's TTL has not deleted it: the code hides it).
    let wait = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(500)).await;
    assert!(view(&b, &alice).await.is_empty());
    assert!(view(&a, &alice).await.is_empty(), "not even for the poster");
    assert_eq!(
        err(viewers(&a, &posted["statusId"]).await).0,
        ErrorCode::NotFound
    );
    let (code, _) = err(a
        .request("removeStatus", json!({ "statusId": posted["statusId"] }))
        .await);
    assert_eq!(code, ErrorCode::NotFound);
    // Room for a new one.
    post(&a, "again").await;
    assert_eq!(view(&b, &alice).await.len(), 1);
}

/// An encrypting SDK client for `creds`, with its own crypto store, keys published.
async fn encrypting(
    cloud: &TestCloud,
    creds: &Credentials,
) -> (courier_client::Client, courier_client::client::Events) {
    let dir =
        std::env::temp_dir().join(format!("courier-status-{}", uuid::Uuid::new_v4().simple()));
    let mut config = courier_client::ClientConfig::new(&cloud.ws_url, &creds.api_key);
    config.encryption = Some(courier_client::Encryption {
        dir,
        user_id: creds.user_id.clone(),
        device_id: creds.device_id.clone(),
    });
    let (client, events) = courier_client::Client::connect(config)
        .await
        .expect("connected");
    client.keys_published().await;
    (client, events)
}

async fn status_posted(events: &mut courier_client::client::Events, id: &str) {
    tokio::time::timeout(courier_tests::WAIT, async {
        loop {
            match events.recv().await {
                Some(courier_client::Event::StatusPosted { status_id, .. }) if status_id == id => {
                    return;
                }
                Some(_) => {}
                None => panic!("the client stopped"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no statusPosted for {id}"));
}

/// Links a companion device to the account whose primary `primary` is.
async fn link(cloud: &TestCloud, primary: &courier_client::Client) -> Credentials {
    let accounts = cloud.accounts();
    let request = accounts
        .request_link(courier_core::protocol::DeviceInfo {
            name: "laptop".into(),
            platform: courier_core::protocol::Platform::Web,
        })
        .await
        .unwrap();
    primary.approve_device_link(&request.code).await.unwrap();
    tokio::time::timeout(
        courier_tests::WAIT,
        accounts.wait_for_link(&request.link_id, Duration::from_millis(100)),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sdk_encrypts_a_status_once_for_the_audience_and_rotates_when_it_shrinks() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let (a, _a_events) = encrypting(cloud, &alice).await;
    let alice_laptop = link(cloud, &a).await;
    let (a2, mut a2_events) = encrypting(cloud, &alice_laptop).await;
    let (b, mut b_events) = encrypting(cloud, &bob).await;
    let (c, _c_events) = encrypting(cloud, &carol).await;
    a.call(
        courier_client::protocol::Request {
            action: "updateContacts",
            params: json!({ "add": [bob.user_id] }),
        },
        false,
    )
    .await
    .unwrap();

    let text = format!("sunset at the beach {}", uuid::Uuid::new_v4().simple());
    let (id, _) = a.post_status(&text, &[]).await.unwrap();
    status_posted(&mut b_events, &id).await;
    status_posted(&mut a2_events, &id).await;
    let seen = b.view_status(&alice.user_id).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].text.as_deref(),
        Some(text.as_str()),
        "bob decrypts it"
    );
    assert!(
        !seen[0].payload.contains("sunset"),
        "the server holds ciphertext"
    );
    let mine = a2.view_status(&alice.user_id).await.unwrap();
    assert_eq!(
        mine[0].text.as_deref(),
        Some(text.as_str()),
        "alice's laptop too"
    );
    let own = a.view_status(&alice.user_id).await.unwrap();
    assert_eq!(
        own[0].text.as_deref(),
        Some(text.as_str()),
        "and the posting phone"
    );
    // Privacy "everyone": carol may fetch it, but she is not in the audience: no key.
    let strangers = c.view_status(&alice.user_id).await.unwrap();
    assert_eq!(strangers.len(), 1);
    assert_eq!(strangers[0].text, None);

    let viewers = a.status_viewers(&id).await.unwrap();
    let mut who: Vec<_> = viewers.iter().map(|v| v.user_id.clone()).collect();
    who.sort();
    let mut expected = vec![bob.user_id.clone(), carol.user_id.clone()];
    expected.sort();
    assert_eq!(who, expected, "not alice's own laptop");

    // Bob leaves the audience: the next status is under a new key he never gets.
    a.call(
        courier_client::protocol::Request {
            action: "updateContacts",
            params: json!({ "remove": [bob.user_id] }),
        },
        false,
    )
    .await
    .unwrap();
    let (second, _) = a.post_status("after bob left", &[]).await.unwrap();
    let seen = b.view_status(&alice.user_id).await.unwrap();
    let later = seen.iter().find(|s| s.status_id == second).unwrap();
    assert_eq!(later.text, None, "rotated: bob cannot read it");
    let mine = a2.view_status(&alice.user_id).await.unwrap();
    let later = mine.iter().find(|s| s.status_id == second).unwrap();
    assert_eq!(later.text.as_deref(), Some("after bob left"));

    a.remove_status(&id).await.unwrap();
    assert_eq!(b.view_status(&alice.user_id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_photo_status_is_downloaded_and_decrypted_by_a_contact_and_refused_to_a_stranger() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let (a, _a_events) = encrypting(cloud, &alice).await;
    let (b, mut b_events) = encrypting(cloud, &bob).await;
    let (c, _c_events) = encrypting(cloud, &carol).await;
    for (action, params) in [
        (
            "updateSettings",
            json!({ "privacy": { "status": "contacts" } }),
        ),
        ("updateContacts", json!({ "add": [bob.user_id] })),
    ] {
        a.call(courier_client::protocol::Request { action, params }, false)
            .await
            .unwrap();
    }
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (id, _, descriptor) = a
        .post_status_file(
            courier_client::media::OutgoingFile {
                bytes: photo.clone(),
                content_type: "image/jpeg".into(),
                file_name: Some("beach.jpg".into()),
                caption: Some("the beach".into()),
            },
            None,
        )
        .await
        .unwrap();
    status_posted(&mut b_events, &id).await;
    // Only a status refers to the photo: tagged for ExpireStatusMedia, which removes it once the
    // status is long gone (docs/security.md, storage cost).
    assert_eq!(
        cloud.media_tags(&descriptor.media_id).await,
        [("courier-media".to_owned(), "status".to_owned())]
    );

    // Bob decrypts the status, finds the photo's descriptor, downloads and decrypts the photo.
    let seen = b.view_status(&alice.user_id).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].attachments, vec![descriptor.media_id.clone()]);
    let got = courier_client::media::MediaPayload::parse(seen[0].text.as_deref().unwrap())
        .expect("the status carries a media descriptor");
    assert_eq!(got, descriptor);
    assert_eq!(got.caption.as_deref(), Some("the beach"));
    let bytes = b.download_file(&got, None).await.unwrap();
    assert!(bytes == photo, "byte-identical");

    // Carol, not a contact, sees no status and may not download the photo even knowing its id.
    assert!(c.view_status(&alice.user_id).await.unwrap().is_empty());
    match c.get_media_download(&descriptor.media_id).await {
        Err(ClientError::Api(d)) => assert_eq!(d.code, ErrorCode::Forbidden, "{}", d.message),
        other => panic!("carol got {other:?}"),
    }
    // Once the status is removed, Bob may not download it any more.
    a.remove_status(&id).await.unwrap();
    match b.get_media_download(&descriptor.media_id).await {
        Err(ClientError::Api(d)) => assert_eq!(d.code, ErrorCode::Forbidden, "{}", d.message),
        other => panic!("bob got {other:?}"),
    }
}
