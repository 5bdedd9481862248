//! Devices and keys end to end (docs/protocol.md "Devices and keys"): the key directory with
//! real clients, one-time keys handed out once under concurrent claims, device messages live,
//! queued with a content-free push, read on reconnect and acknowledged, and removeDevice.

use courier_client::{ConnectError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::Credentials;
use courier_tests::fake_keys::{b64, key, upload};
use courier_tests::{TestCloud, WAIT, connect, eventually, next, until_marker};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

async fn link(cloud: &TestCloud, primary: &Session, name: &str) -> Credentials {
    let (status, body) = cloud
        .post_raw(
            "/v1/devices/link-requests",
            json!({"name": name, "platform": "web"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    primary
        .request("approveDeviceLink", json!({ "code": v["code"] }))
        .await
        .unwrap();
    let r = reqwest::get(format!(
        "{}/v1/devices/link-requests/{}",
        cloud.http_url,
        v["linkId"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn err(s: &Session, action: &str, params: Value) -> (ErrorCode, String) {
    let e = s.request(action, params).await.unwrap_err();
    (e.code().expect("a protocol error"), e.to_string())
}

fn device<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == id)
}

#[tokio::test]
async fn upload_list_and_claim_round_trip_with_the_count_going_down_then_the_fallback() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let (a, b) = (connect(cloud, &alice).await, connect(cloud, &bob).await);
    let r = b
        .request("uploadKeys", upload("bob", &ids("K", 3), Some("F")))
        .await
        .unwrap();
    assert_eq!(r["oneTimeKeyCount"], 3);

    // Alice sees Bob's device with its keys, but not his count.
    let seen = a
        .request("listDevices", json!({"userIds": [bob.user_id]}))
        .await
        .unwrap();
    let d = device(&seen, &bob.device_id).expect("bob's phone");
    assert_eq!(d["identityKey"], b64("bob", 43));
    assert_eq!(d["signingKey"], b64("gbob", 43));
    assert_eq!(
        (d["primary"].clone(), d["platform"].clone()),
        (json!(true), json!("ios"))
    );
    assert!(d.get("oneTimeKeyCount").is_none());

    let mut claimed = HashSet::new();
    for left in [2, 1, 0] {
        let c = a
            .request("claimKeys", json!({"userId": bob.user_id}))
            .await
            .unwrap();
        let bundle = &c["devices"][0];
        assert_eq!(bundle["fallback"], false);
        assert_eq!(bundle["identityKey"], b64("bob", 43));
        assert!(claimed.insert(bundle["oneTimeKey"]["keyId"].as_str().unwrap().to_owned()));
        let mine = b
            .request("listDevices", json!({"userIds": [bob.user_id]}))
            .await
            .unwrap();
        assert_eq!(
            device(&mine, &bob.device_id).unwrap()["oneTimeKeyCount"],
            left
        );
    }
    assert_eq!(claimed, ids("K", 3).into_iter().collect());
    for _ in 0..2 {
        let c = a
            .request(
                "claimKeys",
                json!({"userId": bob.user_id, "deviceIds": [bob.device_id]}),
            )
            .await
            .unwrap();
        assert_eq!(c["devices"][0]["fallback"], true);
        assert_eq!(c["devices"][0]["oneTimeKey"], key("F"));
    }
    // Topping up the same ids stores each once; a new identity starts afresh.
    let r = b
        .request("uploadKeys", upload("bob", &ids("T", 2), None))
        .await
        .unwrap();
    assert_eq!(r["oneTimeKeyCount"], 2);
    let r = b
        .request("uploadKeys", upload("bob", &ids("T", 3), None))
        .await
        .unwrap();
    assert_eq!(r["oneTimeKeyCount"], 3);
    let r = b
        .request("uploadKeys", upload("bob-new", &[], None))
        .await
        .unwrap();
    assert_eq!(r["oneTimeKeyCount"], 0);
    let c = a
        .request("claimKeys", json!({"userId": bob.user_id}))
        .await
        .unwrap();
    assert_eq!(c["devices"][0]["identityKey"], b64("bob-new", 43));
    assert_eq!(c["devices"][0]["oneTimeKey"], Value::Null);
    assert_eq!(c["devices"][0]["fallback"], false);
}

#[tokio::test]
async fn concurrent_claims_from_20_clients_never_get_the_same_key() {
    let cloud = TestCloud::shared();
    let bob = cloud.sign_up().await;
    let b = connect(cloud, &bob).await;
    b.request("uploadKeys", upload("bob", &ids("C", 10), Some("FB")))
        .await
        .unwrap();
    // 20 clients (20 users, each on its own connection) claim at once: one claim each.
    let mut claimers = Vec::new();
    for _ in 0..20 {
        let who = cloud.sign_up().await;
        claimers.push(connect(cloud, &who).await);
    }
    let target = json!({"userId": bob.user_id});
    let target = &target;
    let claims = claimers.iter().map(|s| async move {
        s.request("claimKeys", target.clone()).await.unwrap()["devices"][0].clone()
    });
    let bundles = futures_util::future::join_all(claims).await;
    assert_eq!(bundles.len(), 20);
    let one_time: Vec<&str> = bundles
        .iter()
        .filter(|b| b["fallback"] == false)
        .map(|b| b["oneTimeKey"]["keyId"].as_str().unwrap())
        .collect();
    let unique: HashSet<&&str> = one_time.iter().collect();
    assert_eq!(one_time.len(), 10, "{bundles:?}");
    assert_eq!(unique.len(), 10, "a key went out twice: {one_time:?}");
    let fallbacks = bundles.iter().filter(|b| b["fallback"] == true).count();
    assert_eq!(fallbacks, 10);
    assert!(
        bundles
            .iter()
            .filter(|b| b["fallback"] == true)
            .all(|b| b["oneTimeKey"]["keyId"] == "FB")
    );
}

#[tokio::test]
async fn a_device_message_arrives_live_once_or_waits_with_a_push_and_is_read_then_acked() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(cloud, &alice).await;
    let b = connect(cloud, &bob).await;
    let laptop_creds = link(cloud, &b, "Bob laptop").await;
    let laptop = connect(cloud, &laptop_creds).await;

    // Online: the target device gets one deviceMessage; Bob's other device nothing.
    let r = a
        .request(
            "sendToDevice",
            json!({"messages": [{"userId": bob.user_id, "deviceId": bob.device_id, "payload": "olm-ciphertext-1"}]}),
        )
        .await
        .unwrap();
    assert_eq!(r["queued"][0]["deviceId"], bob.device_id.as_str());
    assert_eq!(r["unknownDevices"], json!([]));
    let id = r["queued"][0]["id"].as_str().unwrap().to_owned();
    let e = next(&b, "deviceMessage").await;
    assert_eq!(e["message"]["id"], id.as_str());
    assert_eq!(e["message"]["payload"], "olm-ciphertext-1");
    assert_eq!(e["message"]["sender"], alice.user_id.as_str());
    assert_eq!(e["message"]["senderDevice"], alice.device_id.as_str());
    // Markers sent after it, one per device: the phone got it once, the laptop not at all.
    let markers = a
        .request(
            "sendToDevice",
            json!({"messages": [
                {"userId": bob.user_id, "deviceId": bob.device_id, "payload": "marker-phone"},
                {"userId": bob.user_id, "deviceId": laptop_creds.device_id, "payload": "marker-laptop"}
            ]}),
        )
        .await
        .unwrap();
    for (device, marker) in [(&b, "marker-phone"), (&laptop, "marker-laptop")] {
        let got = until_marker(device, |e| {
            e["event"] == "deviceMessage" && e["message"]["payload"] == marker
        })
        .await;
        let before: Vec<_> = got
            .iter()
            .filter(|e| e["event"] == "deviceMessage")
            .collect();
        assert_eq!(
            before.len(),
            1,
            "only the marker, after the one message: {before:?}"
        );
    }
    let acked = b
        .request("ackDeviceMessages", json!({"ids": [id]}))
        .await
        .unwrap();
    assert_eq!(acked["acked"], 1);
    // The markers are acknowledged too, so the queues hold only what follows.
    for (device, i) in [(&b, 0), (&laptop, 1)] {
        let marker = &markers["queued"][i]["id"];
        let acked = device
            .request("ackDeviceMessages", json!({"ids": [marker]}))
            .await
            .unwrap();
        assert_eq!(acked["acked"], 1);
    }

    // Offline with a push token: kept, and a push that names the sender but carries no payload.
    let token = format!("apns-token-{}", uuid::Uuid::new_v4().simple());
    laptop
        .request(
            "registerPushToken",
            json!({"platform": "apns", "token": token}),
        )
        .await
        .unwrap();
    let laptop_endpoint = cloud
        .push_endpoint(&bob.user_id, &laptop_creds.device_id)
        .await
        .expect("the laptop's push endpoint");
    laptop.close().await;
    cloud
        .wait_offline(&bob.user_id, &laptop_creds.device_id)
        .await;
    // Carol, offline with a push token of her own: her push is the marker below.
    let carol = cloud.sign_up().await;
    let c = connect(cloud, &carol).await;
    c.request(
        "registerPushToken",
        json!({"platform": "fcm", "token": format!("fcm-{}", uuid::Uuid::new_v4().simple())}),
    )
    .await
    .unwrap();
    let carol_endpoint = cloud
        .push_endpoint(&carol.user_id, &carol.device_id)
        .await
        .expect("Carol's push endpoint");
    c.close().await;
    cloud.wait_offline(&carol.user_id, &carol.device_id).await;
    let before = cloud.pushes().await.unwrap().len();
    let r = a
        .request(
            "sendToDevice",
            json!({"messages": [
                {"userId": bob.user_id, "deviceId": laptop_creds.device_id, "payload": "room-key-SECRET-1"},
                {"userId": bob.user_id, "deviceId": laptop_creds.device_id, "payload": "room-key-SECRET-2"},
                {"userId": bob.user_id, "deviceId": "d_00000000000000000000000000000000", "payload": "x"}
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(r["queued"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["unknownDevices"],
        json!([{"userId": bob.user_id, "deviceId": "d_00000000000000000000000000000000"}])
    );
    let pushes = eventually("a push for the offline device", WAIT, async || {
        let all = cloud.pushes().await.unwrap();
        let new: Vec<Value> = all[before.min(all.len())..]
            .iter()
            .filter(|p| {
                p["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("deviceMessage")
            })
            .cloned()
            .collect();
        (!new.is_empty()).then_some(new)
    })
    .await;
    // A device message for Carol, sent after: once her push is out, the laptop's are all out.
    a.request(
        "sendToDevice",
        json!({"messages": [{"userId": carol.user_id, "deviceId": carol.device_id, "payload": "x"}]}),
    )
    .await
    .unwrap();
    let all = eventually("Carol's push", WAIT, async || {
        let all = cloud.pushes().await.unwrap();
        all[before..]
            .iter()
            .any(|p| p["endpointArn"] == carol_endpoint.as_str())
            .then_some(all)
    })
    .await;
    let for_laptop: Vec<&Value> = all[before..]
        .iter()
        .filter(|p| p["endpointArn"] == laptop_endpoint.as_str())
        .collect();
    assert_eq!(for_laptop.len(), 1, "one push per device: {for_laptop:?}");
    for p in &pushes {
        let text = p.to_string();
        assert!(!text.contains("SECRET"), "no payload in a push: {text}");
        assert!(!text.contains("\"payload\""), "no payload field: {text}");
        assert!(
            text.contains(alice.user_id.as_str()),
            "the sender is named: {text}"
        );
    }
    // The queue item carries its TTL, 30 days out.
    let items = cloud
        .dynamodb()
        .query()
        .table_name(cloud.table("DeviceQueueTable"))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!(
                "{}#{}",
                bob.user_id, laptop_creds.device_id
            )),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 2);
    let ttl: i64 = items[0]["ttl"].as_n().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let in_30_days = now + 30 * 24 * 3600;
    assert!((ttl - in_30_days).abs() < 120, "{ttl} vs {in_30_days}");

    // Back online: read in order, ack, gone.
    let laptop = connect(cloud, &laptop_creds).await;
    let read = laptop
        .request("readDeviceMessages", json!({}))
        .await
        .unwrap();
    let payloads: Vec<&str> = read["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["room-key-SECRET-1", "room-key-SECRET-2"]);
    assert_eq!(read["hasMore"], false);
    let page = laptop
        .request("readDeviceMessages", json!({"limit": 1}))
        .await
        .unwrap();
    assert_eq!(page["hasMore"], true);
    let ids: Vec<Value> = read["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    let acked = laptop
        .request("ackDeviceMessages", json!({"ids": ids}))
        .await
        .unwrap();
    assert_eq!(acked["acked"], 2);
    let read = laptop
        .request("readDeviceMessages", json!({}))
        .await
        .unwrap();
    assert_eq!(read["messages"], json!([]));
}

#[tokio::test]
async fn remove_device_revokes_its_key_closes_it_and_deletes_its_keys_under_the_rules() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(cloud, &alice).await;
    let b = connect(cloud, &bob).await;
    let web_creds = link(cloud, &b, "Bob web").await;
    let desk_creds = link(cloud, &b, "Bob desktop").await;
    let alice_web = link(cloud, &a, "Alice web").await;
    let web = connect(cloud, &web_creds).await;
    let desk = connect(cloud, &desk_creds).await;
    web.request("uploadKeys", upload("web", &ids("W", 2), Some("WF")))
        .await
        .unwrap();
    desk.request("uploadKeys", upload("desk", &ids("D", 2), None))
        .await
        .unwrap();

    // The rules: a companion removes only itself, nobody removes the primary, nor another
    // user's device; an unknown device is not found.
    let code = |r: (ErrorCode, String)| r.0;
    assert_eq!(
        code(
            err(
                &desk,
                "removeDevice",
                json!({"deviceId": web_creds.device_id})
            )
            .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(err(&desk, "removeDevice", json!({"deviceId": bob.device_id})).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(err(&b, "removeDevice", json!({"deviceId": bob.device_id})).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(err(&b, "removeDevice", json!({"deviceId": alice_web.device_id})).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            err(
                &b,
                "removeDevice",
                json!({"deviceId": "d_00000000000000000000000000000000"})
            )
            .await
        ),
        ErrorCode::NotFound
    );
    let (c, m) = err(&b, "removeDevice", json!({"deviceId": "web"})).await;
    assert!(c == ErrorCode::BadRequest && m.contains("deviceId"), "{m}");

    // The primary removes the web companion.
    let r = b
        .request("removeDevice", json!({"deviceId": web_creds.device_id}))
        .await
        .unwrap();
    assert_eq!(r["removed"], true);
    tokio::time::timeout(Duration::from_secs(10), web.closed())
        .await
        .expect("its open connection was closed");
    match Session::connect(&cloud.ws_url, &web_creds.api_key).await {
        Err(ConnectError::Refused(status)) => assert_eq!(status, 401),
        other => panic!(
            "the removed device's key still connects: {:?}",
            other.map(|_| ())
        ),
    }
    let listed = a
        .request("listDevices", json!({"userIds": [bob.user_id]}))
        .await
        .unwrap();
    assert!(device(&listed, &web_creds.device_id).is_none());
    assert!(device(&listed, &desk_creds.device_id).is_some());
    let claimed = a
        .request("claimKeys", json!({"userId": bob.user_id}))
        .await
        .unwrap();
    let devices: Vec<&str> = claimed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(devices, [desk_creds.device_id.as_str()]);
    // Its keys are deleted, not just hidden.
    let left = cloud
        .dynamodb()
        .query()
        .table_name(cloud.table("KeysTable"))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{}", bob.user_id)),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|i| !format!("{i:?}").contains(&web_creds.device_id)),
        "{left:?}"
    );

    // A companion removes itself: it gets the reply, then its connection closes.
    let r = desk
        .request("removeDevice", json!({"deviceId": desk_creds.device_id}))
        .await
        .unwrap();
    assert_eq!(r["removed"], true);
    tokio::time::timeout(Duration::from_secs(10), desk.closed())
        .await
        .expect("closed after the reply");
    assert!(matches!(
        Session::connect(&cloud.ws_url, &desk_creds.api_key).await,
        Err(ConnectError::Refused(401))
    ));
    // The primary still works.
    b.request("listDevices", json!({"userIds": [bob.user_id]}))
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_inputs_each_get_their_error() {
    let cloud = TestCloud::shared();
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let a = connect(cloud, &alice).await;
    let mut bad = upload("a", &[], None);
    bad["identityKey"] = json!("short");
    let (c, m) = err(&a, "uploadKeys", bad).await;
    assert!(
        c == ErrorCode::BadRequest && m.contains("identityKey"),
        "{m}"
    );
    let (c, m) = err(&a, "uploadKeys", json!({"signingKey": b64("x", 43)})).await;
    assert!(
        c == ErrorCode::BadRequest && m.contains("identityKey"),
        "{m}"
    );
    let (c, _) = err(&a, "uploadKeys", upload("a", &ids("L", 101), None)).await;
    assert_eq!(c, ErrorCode::LimitExceeded);
    a.request("uploadKeys", upload("a", &ids("L", 100), None))
        .await
        .unwrap();
    a.request("uploadKeys", upload("a", &ids("M", 100), None))
        .await
        .unwrap();
    let (c, _) = err(&a, "uploadKeys", upload("a", &ids("N", 1), None)).await;
    assert_eq!(c, ErrorCode::LimitExceeded, "201 stored");
    let mine = a
        .request("listDevices", json!({"userIds": [alice.user_id]}))
        .await
        .unwrap();
    assert_eq!(
        device(&mine, &alice.device_id).unwrap()["oneTimeKeyCount"],
        200
    );

    let (c, _) = err(
        &a,
        "claimKeys",
        json!({"userId": "u_00000000000000000000000000000000"}),
    )
    .await;
    assert_eq!(c, ErrorCode::NotFound);
    let (c, m) = err(&a, "claimKeys", json!({"userId": 7})).await;
    assert!(c == ErrorCode::BadRequest && m.contains("userId"), "{m}");
    let (c, _) = err(&a, "listDevices", json!({"userIds": []})).await;
    assert_eq!(c, ErrorCode::BadRequest);
    let many: Vec<String> = (0..258).map(|i| format!("u_{i:032}")).collect();
    let (c, _) = err(&a, "listDevices", json!({"userIds": many})).await;
    assert_eq!(c, ErrorCode::LimitExceeded);

    let to = |payload: String| json!({"messages": [{"userId": bob.user_id, "deviceId": bob.device_id, "payload": payload}]});
    let (c, m) = err(&a, "sendToDevice", to("x".repeat(16_385))).await;
    assert!(
        c == ErrorCode::PayloadTooLarge && m.contains("payload"),
        "{m}"
    );
    let (c, _) = err(&a, "sendToDevice", json!({"messages": []})).await;
    assert_eq!(c, ErrorCode::BadRequest);
    let hundred_one: Vec<Value> = (0..101)
        .map(|_| json!({"userId": bob.user_id, "deviceId": bob.device_id, "payload": "x"}))
        .collect();
    let (c, _) = err(&a, "sendToDevice", json!({"messages": hundred_one})).await;
    assert_eq!(c, ErrorCode::LimitExceeded);
    let (c, m) = err(
        &a,
        "sendToDevice",
        json!({"messages": [{"userId": bob.user_id, "deviceId": "laptop", "payload": "x"}]}),
    )
    .await;
    assert!(c == ErrorCode::BadRequest && m.contains("deviceId"), "{m}");
    let (c, m) = err(
        &a,
        "sendToDevice",
        json!({"messages": [{"userId": bob.user_id}]}),
    )
    .await;
    assert!(c == ErrorCode::BadRequest && m.contains("deviceId"), "{m}");
    let (c, _) = err(&a, "readDeviceMessages", json!({"limit": 0})).await;
    assert_eq!(c, ErrorCode::BadRequest);
    let (c, _) = err(&a, "ackDeviceMessages", json!({"ids": []})).await;
    assert_eq!(c, ErrorCode::BadRequest);
    let (c, m) = err(&a, "ackDeviceMessages", json!({"ids": ["nope"]})).await;
    assert!(c == ErrorCode::BadRequest && m.contains("ids[0]"), "{m}");
    let (c, m) = err(&a, "removeDevice", json!({})).await;
    assert!(c == ErrorCode::BadRequest && m.contains("deviceId"), "{m}");
    // None of it queued anything for Bob, and the connection is still usable.
    let b = connect(cloud, &bob).await;
    let read = b.request("readDeviceMessages", json!({})).await.unwrap();
    assert_eq!(read["messages"], json!([]));
    a.request("listDevices", json!({"userIds": [bob.user_id]}))
        .await
        .unwrap();
}

/// Items of `table` whose key mentions `needle` (a user or device id), over every page of a
/// Scan (the shared cloud's tables outgrow one 1 MB page).
async fn items_mentioning(cloud: &TestCloud, table: &str, needle: &str) -> usize {
    let mut pages = cloud
        .dynamodb()
        .scan()
        .table_name(cloud.table(table))
        .consistent_read(true)
        .into_paginator()
        .send();
    let mut found = 0;
    while let Some(page) = pages.next().await {
        found += page
            .unwrap()
            .items()
            .iter()
            .filter(|i| format!("{:?}", i.get("pk")).contains(needle))
            .count();
    }
    found
}

#[tokio::test]
async fn a_new_phone_and_account_deletion_delete_the_removed_devices_keys_and_queues() {
    let cloud = TestCloud::shared();
    let phone = courier_tests::fresh_phone();
    let device = || courier_core::protocol::DeviceInfo {
        name: "phone".into(),
        platform: courier_core::protocol::Platform::Ios,
    };
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let old = cloud
        .accounts()
        .verify(&phone, &code, device())
        .await
        .unwrap();
    let alice = cloud.sign_up().await;
    let a = connect(cloud, &alice).await;
    let seed = |who: Credentials| {
        let a = &a;
        async move {
            let s = connect(cloud, &who).await;
            s.request(
                "uploadKeys",
                upload(&who.device_id, &ids("R", 3), Some("RF")),
            )
            .await
            .unwrap();
            s.close().await;
            a.request(
                "sendToDevice",
                json!({"messages": [{"userId": who.user_id, "deviceId": who.device_id, "payload": "c"}]}),
            )
            .await
            .unwrap();
        }
    };
    seed(old.clone()).await;
    assert_eq!(items_mentioning(cloud, "KeysTable", &old.user_id).await, 4);
    assert_eq!(
        items_mentioning(cloud, "DeviceQueueTable", &old.device_id).await,
        1
    );

    // The number moves to a new phone: the old device's keys and queue are deleted.
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let new = cloud
        .accounts()
        .verify(&phone, &code, device())
        .await
        .unwrap();
    assert_eq!(new.user_id, old.user_id);
    assert_eq!(items_mentioning(cloud, "KeysTable", &old.user_id).await, 0);
    assert_eq!(
        items_mentioning(cloud, "DeviceQueueTable", &old.device_id).await,
        0
    );
    let c = a
        .request("claimKeys", json!({"userId": new.user_id}))
        .await
        .unwrap();
    assert_eq!(c["devices"], json!([]));

    // Deleting the account deletes the current device's too.
    seed(new.clone()).await;
    assert_eq!(items_mentioning(cloud, "KeysTable", &new.user_id).await, 4);
    let s = connect(cloud, &new).await;
    s.request("deleteAccount", json!({})).await.unwrap();
    assert_eq!(items_mentioning(cloud, "KeysTable", &new.user_id).await, 0);
    assert_eq!(
        items_mentioning(cloud, "DeviceQueueTable", &new.device_id).await,
        0
    );
}
