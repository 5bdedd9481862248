//! Rate limits end to end, on local clouds started with small limits: a device sending past its
//! burst, codes per phone and per address, link attempts, failed connections per address. Each
//! refusal is `LIMIT_EXCEEDED` with a retry-after, and nothing else is affected.
//!
//! Every client of a local cloud is 127.0.0.1, so the limits per address get a cloud of their
//! own ([`per_address_cloud`]), used by one test only: no other test's traffic counts there.

use courier_client::Session;
use courier_tests::{TestCloud, WAIT, connect, eventually, fresh_phone, next};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

const BURST: u64 = 5;
/// One token a minute: a burst of sends takes seconds at most (cold starts included), so no
/// token comes back in the middle of one and the refusal after it cannot be missed.
const REFILL_SECS: u64 = 60;

/// Every other action that writes, posts or pushes, per device and operation.
const ACTION_BURST: usize = 3;
/// Group adds and direct chats from strangers, per target and day.
const STRANGER_CAP: usize = 3;
/// `discoverContacts` calls per account and day.
const DISCOVERIES: usize = 2;
/// Claims per target and hour that may take a one-time key.
const ONE_TIME_KEYS: usize = 2;
/// Bytes of media uploads, and of backups, one user may start per day (3 MiB each).
const STORAGE_QUOTA: u64 = 3 * 1024 * 1024;

/// Sends, codes per phone and link attempts: limits keyed by device, number and account (and
/// link requests by address: only the link test makes them here).
fn cloud() -> &'static TestCloud {
    static CLOUD: OnceLock<TestCloud> = OnceLock::new();
    CLOUD.get_or_init(|| {
        TestCloud::start(&[
            "SendBurst=5",
            &format!("SendRefillIntervalMs={}", REFILL_SECS * 1000),
            "RegistrationCodesPerPhone=2",
            "LinkAttempts=3",
            &format!("ActionBurst={ACTION_BURST}"),
            &format!("ActionRefillIntervalMs={}", REFILL_SECS * 1000),
            &format!("GroupAddsByStrangersPerUserPerDay={STRANGER_CAP}"),
            &format!("ChatsFromStrangersPerUserPerDay={STRANGER_CAP}"),
            &format!("LookupBurst={ACTION_BURST}"),
            &format!("LookupRefillIntervalMs={}", REFILL_SECS * 1000),
            &format!("ContactDiscoveriesPerDay={DISCOVERIES}"),
            &format!("KeyClaimBurst={ACTION_BURST}"),
            &format!("KeyClaimRefillIntervalMs={}", REFILL_SECS * 1000),
            &format!("OneTimeKeysPerUserPerHour={ONE_TIME_KEYS}"),
            &format!("MediaUploadBytesPerUserPerDay={STORAGE_QUOTA}"),
            &format!("BackupBytesPerUserPerDay={STORAGE_QUOTA}"),
        ])
        .expect("a local cloud with small limits")
    })
}

/// The sum of a metric's series whose labels include `label` (e.g. `operation="sendMessage"`:
/// the other tests of this cloud send device messages and statuses meanwhile).
async fn scrape_total(cloud: &TestCloud, metric: &str, label: &str) -> f64 {
    let text = reqwest::get(format!("{}/_local/metrics", cloud.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(metric) && series.contains(label))
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

async fn send(
    s: &Session,
    session: &str,
    cmid: &str,
) -> Result<Value, courier_client::ClientError> {
    s.request(
        "sendMessage",
        json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": cmid}),
    )
    .await
}

fn retry_after(e: &courier_client::ClientError) -> u64 {
    match e {
        courier_client::ClientError::Api(d) => {
            assert_eq!(d.code, courier_core::ErrorCode::LimitExceeded, "{e}");
            d.retry_after.expect("retryAfter in the error")
        }
        other => panic!("expected LIMIT_EXCEEDED, got {other}"),
    }
}

#[tokio::test]
async fn a_device_past_its_burst_is_refused_others_keep_sending_and_it_may_send_after_retry_after()
{
    let cloud = cloud();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let (a, b) = (connect(cloud, &alice).await, connect(cloud, &bob).await);
    let chat = a
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .unwrap()
        .session_id;
    let sent_before = scrape_total(
        cloud,
        "courier_messages_sent_total",
        r#"operation="sendMessage""#,
    )
    .await;

    for i in 0..BURST {
        send(&a, &chat, &format!("a-{i}")).await.unwrap();
    }
    let err = send(&a, &chat, "a-refused").await.unwrap_err();
    let retry = retry_after(&err);
    assert!(
        (1..=REFILL_SECS).contains(&retry),
        "one token per {REFILL_SECS} s: {retry}"
    );

    // Every message before the refusal arrives, in order; the refused one never does.
    for i in 0..BURST {
        let e = next(&b, "message").await;
        assert_eq!(e["message"]["payload"], format!("a-{i}"));
    }
    // Bob's own bucket is full: his sends go through while Alice waits.
    for i in 0..BURST {
        send(&b, &chat, &format!("b-{i}")).await.unwrap();
    }

    tokio::time::sleep(Duration::from_secs(retry)).await;
    send(&a, &chat, "a-after").await.expect("a token refilled");

    let page = b
        .request("readNewMessages", json!({"sessionId": chat, "limit": 100}))
        .await
        .unwrap();
    let payloads: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads.len(), 2 * BURST as usize + 1, "{payloads:?}");
    assert!(!payloads.contains(&"a-refused"));
    assert_eq!(payloads.last(), Some(&"a-after"));

    // Only the stored messages count as sent (the functions' metrics reach the local cloud
    // through a pipe: poll until "a-after", sent after the refusal, is counted; a count for the
    // refused one would have come before it).
    let expected = sent_before + 2.0 * BURST as f64 + 1.0;
    let sent = eventually("\"a-after\" counted as sent", WAIT, async || {
        let sent = scrape_total(
            cloud,
            "courier_messages_sent_total",
            r#"operation="sendMessage""#,
        )
        .await;
        (sent >= expected).then_some(sent)
    })
    .await;
    assert_eq!(sent, expected, "the refused message is not counted as sent");
}

#[tokio::test]
async fn post_status_and_send_to_device_have_a_bucket_of_their_own_per_device() {
    let cloud = cloud();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(cloud, &alice).await;
    let to_bob = json!({"messages": [
        {"userId": bob.user_id, "deviceId": bob.device_id, "payload": "olm"}
    ]});
    for i in 0..BURST {
        a.request("postStatus", json!({ "payload": format!("status-{i}") }))
            .await
            .unwrap();
        a.request("sendToDevice", to_bob.clone()).await.unwrap();
    }
    let e = a
        .request("postStatus", json!({"payload": "refused"}))
        .await
        .unwrap_err();
    assert!(retry_after(&e) >= 1);
    let e = a.request("sendToDevice", to_bob.clone()).await.unwrap_err();
    assert!(retry_after(&e) >= 1);
    // Only the statuses within the limit exist (the poster sees its own).
    let mine = a
        .request("viewStatus", json!({ "userId": alice.user_id }))
        .await
        .unwrap();
    assert_eq!(
        mine["statuses"].as_array().unwrap().len(),
        BURST as usize,
        "{mine}"
    );
    let b = connect(cloud, &bob).await;
    // Bob's device queue holds exactly the device messages that were accepted.
    let queued = b.request("readDeviceMessages", json!({})).await.unwrap();
    assert_eq!(
        queued["messages"].as_array().unwrap().len(),
        BURST as usize,
        "{queued}"
    );
}

async fn register_status(cloud: &TestCloud, phone: &str) -> (u16, Option<u64>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/accounts", cloud.http_url))
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_third_code_for_a_number_within_the_window_is_refused_and_sends_no_sms() {
    let cloud = cloud();
    let phone = fresh_phone();
    for _ in 0..2 {
        assert_eq!(register_status(cloud, &phone).await.0, 202);
    }
    let (status, retry, body) = register_status(cloud, &phone).await;
    assert_eq!(status, 429, "{body}");
    let retry = retry.expect("a Retry-After header");
    assert!((1..=3600).contains(&retry));
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(body["error"]["retryAfter"], retry);
    assert_eq!(
        cloud.sms_to(&phone).await.unwrap().len(),
        2,
        "no SMS for the refusal"
    );
    // Another number is not affected.
    assert_eq!(register_status(cloud, &fresh_phone()).await.0, 202);
}

async fn request_link(cloud: &TestCloud) -> (u16, Option<u64>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/devices/link-requests", cloud.http_url))
        .json(&json!({"name": "web", "platform": "web"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn link_approvals_per_account_and_link_requests_per_address_are_limited() {
    let cloud = cloud();
    let owner = cloud.sign_up().await;
    let primary = connect(cloud, &owner).await;
    let (status, _, link) = request_link(cloud).await;
    assert_eq!(status, 201, "{link}");

    // Three wrong codes use the account's attempts; then even the right code must wait.
    for _ in 0..3 {
        let e = primary
            .request("approveDeviceLink", json!({"code": "0000000000"}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(courier_core::ErrorCode::NotFound));
    }
    let e = primary
        .request("approveDeviceLink", json!({"code": link["code"]}))
        .await
        .unwrap_err();
    let retry = retry_after(&e);
    assert!((1..=600).contains(&retry));
    let poll = reqwest::get(format!(
        "{}/v1/devices/link-requests/{}",
        cloud.http_url,
        link["linkId"].as_str().unwrap()
    ))
    .await
    .unwrap();
    let status = poll.status().as_u16();
    assert_eq!(status, 202, "the link is still pending, not approved");

    // The address made 1 link request; 2 more pass, the 4th is refused with 429.
    for _ in 0..2 {
        assert_eq!(request_link(cloud).await.0, 201);
    }
    let (status, retry, body) = request_link(cloud).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(body["error"]["retryAfter"], retry.expect("Retry-After"));
}

/// Codes per address and failed connections per address, with a cloud to themselves.
fn per_address_cloud() -> TestCloud {
    TestCloud::start(&[
        "RegistrationCodesPerIp=3",
        "FailedConnectsPerIp=3",
        "FailedConnectWindowSeconds=6",
    ])
    .expect("a local cloud with small limits per address")
}

async fn handshake(cloud: &TestCloud, key: &str) -> Result<(), (u16, Option<u64>, Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = cloud.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            Ok(())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse().unwrap());
            let body = resp
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((resp.status().as_u16(), retry, body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn an_address_is_limited_in_codes_and_a_failed_key_prefix_is_locked_out_not_its_neighbours() {
    let cloud = &per_address_cloud();
    // One code (the sign-up) and two more from this address; the fourth is refused.
    let user = cloud.sign_up().await;
    for _ in 0..2 {
        assert_eq!(register_status(cloud, &fresh_phone()).await.0, 202);
    }
    let phone = fresh_phone();
    let (status, retry, body) = register_status(cloud, &phone).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(body["error"]["retryAfter"], retry.expect("Retry-After"));
    assert!(cloud.sms_to(&phone).await.unwrap().is_empty());

    // A right key connects (and counts nothing); three wrong keys are refused with 401.
    handshake(cloud, &user.api_key).await.expect("connected");
    // Start at the beginning of a 6-second window, so that all of it happens in one.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    tokio::time::sleep(Duration::from_millis((6000 - (secs % 6000) as u64) + 50)).await;
    // An attacker behind the address (every local client is 127.0.0.1, as behind one NAT)
    // guesses keys that share a prefix: three are refused with 401...
    for guess in ["ck_wrongAAAA1", "ck_wrongAAAA2", "ck_wrongAAAA3"] {
        assert_eq!(handshake(cloud, guess).await.unwrap_err().0, 401);
    }
    // ...then that prefix is locked out from this address, even with a key it has not tried.
    let (status, retry, body) = handshake(cloud, "ck_wrongAAAA4").await.unwrap_err();
    assert_eq!(status, 429, "{body}");
    let retry = retry.expect("Retry-After");
    assert!((1..=6).contains(&retry), "{retry}");
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(body["error"]["retryAfter"], retry);
    // A neighbour at the same address with its own valid key still connects and is served
    // (the lockout is keyed on address and key prefix, not the address alone).
    let neighbour = Session::connect(&cloud.ws_url, &user.api_key)
        .await
        .expect("a neighbour behind the same address connects during the attacker's lockout");
    neighbour.request("listSessions", json!({})).await.unwrap();
    assert_eq!(handshake(cloud, "ck_wrongAAAA5").await.unwrap_err().0, 429);

    // Once the window is over, the attacker's prefix is counted afresh (401, not 429).
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(handshake(cloud, "ck_wrongAAAA6").await.unwrap_err().0, 401);
}

/// SMS pumping (docs/security.md, item 4): an attacker rotating addresses asks for codes to
/// ever new numbers in countries it profits from. Per-number and per-address limits do not hold
/// it; the country allow-list and the hourly budgets (global and per calling code) do.
#[tokio::test]
async fn sms_pumping_from_rotating_addresses_is_stopped_by_the_allow_list_and_the_hourly_budgets() {
    let cloud = &TestCloud::start(&[
        "SmsAllowedCallingCodes=1,44",
        "SmsBudgetPerCountryPerHour=2",
        "SmsBudgetPerHour=3",
    ])
    .expect("a local cloud with small SMS budgets");
    // The budgets are clock hours: start well inside one, so all of it is counted in one.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if 3600 - secs % 3600 < 90 {
        tokio::time::sleep(Duration::from_secs(3600 - secs % 3600 + 1)).await;
    }
    // A country not on the allow-list gets no SMS, whatever the address.
    let (status, _, body) = register_status(cloud, "+4915123456789").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "COUNTRY_NOT_SUPPORTED");
    assert!(cloud.sms_to("+4915123456789").await.unwrap().is_empty());

    // Each request is for a new number (the per-number limit never bites): two +1 codes go
    // out, then the +1 budget is spent and says so.
    let (us1, us2, us3) = (fresh_phone(), fresh_phone(), fresh_phone());
    for phone in [&us1, &us2] {
        assert_eq!(register_status(cloud, phone).await.0, 202);
    }
    let (status, retry, body) = register_status(cloud, &us3).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "SMS_BUDGET_EXHAUSTED");
    let retry = retry.expect("Retry-After");
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(body["error"]["retryAfter"], retry);
    assert!(cloud.sms_to(&us3).await.unwrap().is_empty(), "no SMS");

    // Another country still has its own budget, until the global one (3) is spent.
    assert_eq!(register_status(cloud, "+442071838750").await.0, 202);
    let (status, _, body) = register_status(cloud, "+442071838751").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "SMS_BUDGET_EXHAUSTED");
    assert!(cloud.sms_to("+442071838751").await.unwrap().is_empty());
    let sent = reqwest::get(format!("{}/_local/outbox/sms", cloud.http_url))
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert_eq!(sent.len(), 3, "three SMS in the hour, no more: {sent:?}");
}

/// Issue 21, item 3: before, 65 `initiateGroupChatSession` calls naming the same users were all
/// accepted and each target got every event and push. Now strangers may put a user in a group,
/// or open a chat with it, a few times a day (however many accounts they use), the refusal
/// names the limit with `retryAfter`, and the user's contacts still reach it.
#[tokio::test]
async fn strangers_can_put_a_user_in_only_so_many_groups_and_chats_a_day_contacts_always() {
    let cloud = cloud();
    let victim = cloud.sign_up().await;
    let friend = cloud.sign_up().await;
    let v = connect(cloud, &victim).await;
    v.request("updateContacts", json!({"add": [friend.user_id]}))
        .await
        .unwrap();
    let mut attackers = Vec::new();
    for _ in 0..STRANGER_CAP + 1 {
        let c = cloud.sign_up().await;
        attackers.push(connect(cloud, &c).await);
    }
    // One group each (each attacker's own device bucket is far from empty).
    let group = json!({"name": "spam", "members": [victim.user_id]});
    for a in &attackers[..STRANGER_CAP] {
        a.request("initiateGroupChatSession", group.clone())
            .await
            .unwrap();
    }
    let e = attackers[STRANGER_CAP]
        .request("initiateGroupChatSession", group.clone())
        .await
        .unwrap_err();
    // A daily cap on the victim (not the attacker's device bucket): it names the victim.
    assert!((1..=86_400).contains(&retry_after(&e)), "{e}");
    assert!(e.to_string().contains(&victim.user_id), "{e}");
    // ...and the same for direct chats with a handshake.
    for a in &attackers[..STRANGER_CAP] {
        a.initiate_direct_chat(&victim.user_id, Some("handshake"))
            .await
            .unwrap();
    }
    let e = attackers[STRANGER_CAP]
        .initiate_direct_chat(&victim.user_id, Some("handshake"))
        .await
        .unwrap_err();
    assert!((1..=86_400).contains(&retry_after(&e)), "{e}");
    assert!(e.to_string().contains(&victim.user_id), "{e}");
    // The victim is in exactly the groups and chats that were allowed.
    let listed = v.request("listSessions", json!({})).await.unwrap();
    let sessions = listed["sessions"].as_array().unwrap();
    let count = |kind: &str| sessions.iter().filter(|s| s["type"] == kind).count();
    assert_eq!(
        (count("group"), count("direct")),
        (STRANGER_CAP, STRANGER_CAP),
        "{listed}"
    );
    // A contact is not capped.
    let f = connect(cloud, &friend).await;
    f.request("initiateGroupChatSession", group).await.unwrap();
    f.initiate_direct_chat(&victim.user_id, Some("hello"))
        .await
        .unwrap();
}

/// Issue 21, item 3: every action that makes the server write, post or push has a bucket per
/// device and operation: past it, `LIMIT_EXCEEDED` with `retryAfter` (and the action is not
/// done), while the same device's other actions go on.
#[tokio::test]
async fn every_action_that_writes_or_pushes_is_limited_per_device() {
    let cloud = cloud();
    let (me, friend) = (cloud.sign_up().await, cloud.sign_up().await);
    let s = connect(cloud, &me).await;
    let f = connect(cloud, &friend).await;
    // The friend lists me, so no cap per target is involved.
    f.request("updateContacts", json!({"add": [me.user_id]}))
        .await
        .unwrap();
    let group = s
        .request(
            "initiateGroupChatSession",
            json!({"name": "mine", "members": [friend.user_id]}),
        )
        .await
        .unwrap()["groupId"]
        .clone();
    let actions: Vec<(&str, Value)> = vec![
        (
            "addUserToGroup",
            json!({"groupId": group, "userId": friend.user_id}),
        ),
        (
            "promoteUserToAdmin",
            json!({"groupId": group, "userId": me.user_id}),
        ),
        (
            "removeUserFromGroup",
            json!({"groupId": group, "userId": "u_nobody"}),
        ),
        (
            "deleteGroup",
            json!({"groupId": "g_00000000000000000000000000000000"}),
        ),
        (
            "initiateDirectChatSession",
            json!({"peerUserId": friend.user_id}),
        ),
        ("updateContacts", json!({"add": [friend.user_id]})),
        ("updateSettings", json!({"display": {"about": "hi"}})),
        (
            "registerPushToken",
            json!({"platform": "apns", "token": format!("t-{}", me.device_id)}),
        ),
        (
            "createMediaUpload",
            json!({"contentType": "image/jpeg", "size": 10}),
        ),
        ("createBackup", json!({"size": 10})),
        ("removeStatus", json!({"statusId": "st_nothing"})),
        ("setRegistrationPin", json!({"pin": "482913"})),
        ("removeRegistrationPin", json!({})),
        // Hashes a PIN (Argon2id) every time, right or wrong: limited per device as well as
        // by the account's budget of wrong PINs (here there is no PIN: NOT_FOUND until then).
        ("checkRegistrationPin", json!({"pin": "482913"})),
    ];
    for (action, params) in &actions {
        // Within the burst: whatever the action answers (some of these are refused on their
        // merits, which counts all the same), it is not the limit.
        for i in 0..ACTION_BURST {
            if let Err(courier_client::ClientError::Api(d)) =
                s.request(action, params.clone()).await
            {
                assert_ne!(
                    d.code,
                    courier_core::ErrorCode::LimitExceeded,
                    "{action} #{i}: {}",
                    d.message
                );
            }
        }
        let e = s.request(action, params.clone()).await.unwrap_err();
        let retry = retry_after(&e);
        assert!((1..=REFILL_SECS).contains(&retry), "{action}: {e}");
        assert!(e.to_string().contains(action), "{action}: {e}");
    }
    // The group is still there (the refused deletes were of another group, and nothing else
    // deleted it), and another device's buckets are its own.
    f.request("getGroup", json!({ "groupId": group }))
        .await
        .unwrap();
    f.request(
        "removeUserFromGroup",
        json!({"groupId": group, "userId": "u_nobody"}),
    )
    .await
    .unwrap_err()
    .code()
    .filter(|c| *c != courier_core::ErrorCode::LimitExceeded)
    .expect("the friend's own bucket is full");
}

/// Issue 21, item 7: `lookupUser` and `getProfile` were unlimited, so one device could walk the
/// number space and scrape profiles. Now each device has a bucket per operation, and address-book
/// sync goes through `discoverContacts`, a few calls of up to 1000 numbers per account a day.
#[tokio::test]
async fn scraping_by_lookups_is_limited_and_contact_discovery_has_a_daily_budget() {
    let cloud = cloud();
    let known_phone = courier_tests::fresh_phone();
    let (scraper, known) = (cloud.sign_up().await, cloud.sign_up_as(&known_phone).await);
    let s = connect(cloud, &scraper).await;
    // Walking the number space, one lookup at a time.
    for i in 0..ACTION_BURST {
        let phone = if i == 0 {
            known_phone.clone()
        } else {
            courier_tests::fresh_phone()
        };
        if let Err(e) = s.lookup_user(&phone).await {
            assert_eq!(e.code(), Some(courier_core::ErrorCode::NotFound), "{e}");
        }
    }
    let e = s
        .lookup_user(&courier_tests::fresh_phone())
        .await
        .unwrap_err();
    assert!((1..=REFILL_SECS).contains(&retry_after(&e)), "{e}");
    // Profiles likewise.
    for _ in 0..ACTION_BURST {
        s.request("getProfile", json!({"userId": known.user_id}))
            .await
            .unwrap();
    }
    let e = s
        .request("getProfile", json!({"userId": known.user_id}))
        .await
        .unwrap_err();
    assert!((1..=REFILL_SECS).contains(&retry_after(&e)), "{e}");
    // Address-book sync: registered numbers are found in one call, junk is skipped...
    let book: Vec<String> = vec![
        courier_tests::fresh_phone(),
        known_phone.clone(),
        "not a number".into(),
        known_phone.clone(),
    ];
    let found = s.discover_contacts(&book).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].phone.as_str(), found[0].user_id.as_str()),
        (known_phone.as_str(), known.user_id.as_str())
    );
    for _ in 1..DISCOVERIES {
        s.discover_contacts(&book).await.unwrap();
    }
    // ...a few times a day: the budget is spent until the next day (UTC).
    let e = s.discover_contacts(&book).await.unwrap_err();
    assert!(
        (1..=86_400).contains(&retry_after(&e)),
        "until the day ends: {e}"
    );
    assert!(e.to_string().contains("contact discoveries"), "{e}");
    // More than 1000 numbers at once is refused, whatever the budget.
    let huge: Vec<String> = (0..1001).map(|i| format!("+1415555{i:04}")).collect();
    let other = connect(cloud, &known).await;
    assert_eq!(
        other.discover_contacts(&huge).await.unwrap_err().code(),
        Some(courier_core::ErrorCode::LimitExceeded)
    );
}

/// Issue 21, item 8: `claimKeys` was unlimited, so anyone could take every one-time key of a
/// user and force its peers onto the fallback key; `listDevices` showed device names to anyone.
/// Now a claimer is limited per device, a target's one-time keys go to at most a few claims an
/// hour (later claims get the fallback key, so no one is refused), and names are the owner's.
#[tokio::test]
async fn one_time_keys_cannot_be_drained_and_device_names_are_the_owners() {
    use courier_tests::fake_keys::{key, upload};
    let cloud = cloud();
    let victim = cloud.sign_up().await;
    let v = connect(cloud, &victim).await;
    let otks: Vec<String> = (0..10).map(|i| format!("otk{i}")).collect();
    v.request("uploadKeys", upload("victim", &otks, Some("fb")))
        .await
        .unwrap();
    let claim = json!({"userId": victim.user_id});
    // One drainer, then a second account joining in.
    let d1 = connect(cloud, &cloud.sign_up().await).await;
    let mut handed = Vec::new();
    for _ in 0..ACTION_BURST {
        let r = d1.request("claimKeys", claim.clone()).await.unwrap();
        handed.push(r["devices"][0].clone());
    }
    let e = d1.request("claimKeys", claim.clone()).await.unwrap_err();
    assert!((1..=REFILL_SECS).contains(&retry_after(&e)), "{e}");
    let d2 = connect(cloud, &cloud.sign_up().await).await;
    for _ in 0..ACTION_BURST {
        let r = d2.request("claimKeys", claim.clone()).await.unwrap();
        handed.push(r["devices"][0].clone());
    }
    // Only the first claims of the hour took one-time keys; the rest got the fallback key, and
    // nobody was refused the victim's keys.
    let one_time = handed.iter().filter(|b| b["fallback"] == false).count();
    assert_eq!(one_time, ONE_TIME_KEYS, "{handed:?}");
    for b in &handed[ONE_TIME_KEYS..] {
        assert_eq!(
            (&b["fallback"], &b["oneTimeKey"]),
            (&json!(true), &key("fb"))
        );
    }
    let mine = v
        .request("listDevices", json!({"userIds": [victim.user_id]}))
        .await
        .unwrap();
    let device = &mine["devices"][0];
    assert_eq!(
        device["oneTimeKeyCount"],
        otks.len() - ONE_TIME_KEYS,
        "{mine}"
    );
    // The owner sees its device's name; the drainer does not.
    assert!(device["name"].is_string(), "{mine}");
    let theirs = d1
        .request("listDevices", json!({"userIds": [victim.user_id]}))
        .await
        .unwrap();
    assert!(theirs["devices"][0].get("name").is_none(), "{theirs}");
    assert_eq!(theirs["devices"][0]["deviceId"], device["deviceId"]);
}

/// The items of `table` with `attribute` = `value` (a scan: the tables here are small).
async fn items_with(
    cloud: &TestCloud,
    table: &str,
    attribute: &str,
    value: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = cloud
        .dynamodb()
        .scan()
        .table_name(cloud.table(table))
        .filter_expression("#a = :v")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(":v", AttributeValue::S(value.to_owned()))
        .send()
        .await
        .unwrap();
    assert!(out.last_evaluated_key.is_none(), "one page of {table}");
    out.items.unwrap_or_default()
}

/// The storage-cost attack (issue 21 item 11): a user asking for upload after upload, or
/// backup after backup, to fill the bucket. Past the daily byte quota each is refused with
/// `LIMIT_EXCEEDED` and a retry-after, and nothing is recorded or signed for it.
#[tokio::test]
async fn uploads_and_backups_past_the_daily_byte_quota_are_refused_and_nothing_is_stored() {
    let cloud = cloud();
    let creds = cloud.sign_up().await;
    let s = connect(cloud, &creds).await;
    let mib = 1024 * 1024;
    let upload = |size: u64| json!({"size": size, "contentType": "image/jpeg"});
    let quota_refusal = |e: &courier_client::ClientError| {
        let retry = retry_after(e);
        // Until the next UTC day at most; the message names the byte quota (the per-device
        // action limit would say "too many").
        assert!((1..=86_400).contains(&retry), "{e}");
        assert!(e.to_string().contains("bytes"), "{e}");
    };

    let first = s
        .request("createMediaUpload", upload(2 * mib))
        .await
        .unwrap();
    assert!(first["uploadUrl"].is_string(), "{first}");
    let e = s
        .request("createMediaUpload", upload(2 * mib))
        .await
        .unwrap_err();
    quota_refusal(&e);
    // What is left of the quota may still be used.
    let rest = s
        .request("createMediaUpload", upload(STORAGE_QUOTA - 2 * mib))
        .await
        .unwrap();
    assert!(rest["uploadUrl"].is_string(), "{rest}");
    // Two upload records, none for the refused one; never attached, each expires by DynamoDB
    // TTL two days after it was handed out (the local cloud's TTL deletion is not waited for).
    let records = items_with(cloud, "MediaTable", "uploader", &creds.user_id).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let now = chrono::Utc::now().timestamp();
    for r in &records {
        let ttl: i64 = r["ttl"].as_n().unwrap().parse().unwrap();
        assert!(
            (now + 2 * 86_400 - 600..=now + 2 * 86_400).contains(&ttl),
            "{r:?}"
        );
    }

    let backup = |size: u64| json!({"size": size});
    s.request("createBackup", backup(2 * mib)).await.unwrap();
    let e = s
        .request("createBackup", backup(2 * mib))
        .await
        .unwrap_err();
    quota_refusal(&e);
    let records = cloud
        .dynamodb()
        .query()
        .table_name(cloud.table("BackupTable"))
        .key_condition_expression("pk = :p")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{}", creds.user_id)),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .len();
    assert_eq!(records, 1, "one backup record, none for the refused one");
}

/// Issue 21 item 12 on the local cloud: the WebSocket stage's throttles (template.yaml's
/// `WebSocketStage`, here tightened by its parameters) refuse a flood of handshakes with 429
/// before any function runs, and a flood of one route with the gateway's `Too Many Requests`;
/// the SDK waits and gets through, and other routes are not held up.
#[tokio::test]
async fn floods_past_the_websocket_stage_throttles_are_refused_and_the_sdk_gets_through() {
    let cloud = TestCloud::start(&[
        "WebSocketConnectThrottleBurstLimit=4",
        "WebSocketConnectThrottleRateLimit=0.5",
        "WebSocketThrottleBurstLimit=3",
        "WebSocketThrottleRateLimit=0.5",
    ])
    .expect("a cloud of its own");
    let who = cloud.sign_up().await;

    // An attacker's handshakes, without waiting: the burst passes, the rest are refused by
    // the gateway itself (no Retry-After: that is the failed-connect lockout's, a function's).
    let mut refused = 0;
    for _ in 0..10 {
        match handshake(&cloud, &who.api_key).await {
            Ok(()) => {}
            Err((status, retry, _)) => {
                assert_eq!((status, retry), (429, None), "a stage throttle refusal");
                refused += 1;
            }
        }
    }
    // Four tokens and at most a refill or two while the handshakes ran.
    assert!(
        refused >= 4,
        "only {refused} of 10 handshakes at once were throttled"
    );

    // The SDK's handshake waits for a token and gets through (the bucket is empty now).
    let session = Session::connect(&cloud.ws_url, &who.api_key)
        .await
        .expect("the SDK tries a throttled handshake again");

    // One route flooded: three pass, the rest get LIMIT_EXCEEDED, asked again after a while.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = session.request("getSettings", json!({})).await;
        codes.push(r.err().and_then(|e| e.code()));
    }
    use courier_core::ErrorCode::LimitExceeded;
    assert_eq!(
        codes,
        [None, None, None, Some(LimitExceeded), Some(LimitExceeded)]
    );
    // Another route has its own bucket, and the connection stays open.
    session
        .request("listSessions", json!({}))
        .await
        .expect("another route is not held up");
}
