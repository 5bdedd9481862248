//! Key directory, device queues and removeDevice on in-memory ports: the rules, limits and
//! errors of docs/protocol.md "Devices and keys".

mod support;

use chrono::{Duration, TimeZone, Utc};
use courier_core::memory::*;
use courier_core::ports::{
    ConnectionStore, CredentialStore, DeviceCredential, KeyStore, PresenceStore, SignedKey,
    UserDirectory,
};
use courier_core::protocol::*;
use courier_core::usecases::{device_messages, keys, remove_device};
use courier_core::{ConnectionId, DeviceId, ErrorCode, UserId};
use serde_json::{Value, json};
use support::{Wire, World};

fn b64(seed: &str, len: usize) -> String {
    let mut s: String = seed.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    while s.len() < len {
        s.push('A');
    }
    s.truncate(len);
    s
}

fn otk(id: &str) -> SignedKey {
    SignedKey {
        key_id: id.into(),
        key: b64(&format!("k{id}"), 43),
        signature: b64(&format!("s{id}"), 86),
    }
}

fn upload(identity: &str, otks: &[&str], fallback: Option<&str>) -> UploadKeysParams {
    UploadKeysParams {
        identity_key: b64(identity, 43),
        signing_key: b64(&format!("sig{identity}"), 43),
        one_time_keys: otks.iter().map(|i| otk(i)).collect(),
        fallback_key: fallback.map(otk),
    }
}

impl World {
    fn key_deps(&self) -> keys::Deps<'_> {
        keys::Deps {
            accounts: Some(&self.accounts),
            keys: &self.keys,
            one_time_keys_per_target: None,
            clock: &self.clock,
        }
    }

    fn queue_deps(&self) -> device_messages::Deps<'_> {
        device_messages::Deps {
            accounts: Some(&self.accounts),
            queues: &self.queues,
            deliver: Some(self.deliverer()),
            clock: &self.clock,
            throttle: None,
        }
    }

    async fn upload(&self, who: &DeviceCredential, p: UploadKeysParams) -> Result<u64, ErrorCode> {
        keys::upload_keys(&self.key_deps(), who, p)
            .await
            .map(|v| v.json()["oneTimeKeyCount"].as_u64().unwrap())
            .map_err(|e| e.code)
    }

    async fn claim(&self, who: &DeviceCredential, user: &UserId) -> Vec<Value> {
        let v = keys::claim_keys(
            &self.key_deps(),
            who,
            ClaimKeysParams {
                user_id: user.to_string(),
                device_ids: None,
            },
        )
        .await
        .unwrap();
        v.json()["devices"].as_array().unwrap().clone()
    }

    async fn send(&self, who: &DeviceCredential, to: &[(&UserId, &str, &str)]) -> Value {
        let messages = to
            .iter()
            .map(|(u, d, p)| OutgoingDeviceMessage {
                user_id: u.to_string(),
                device_id: d.to_string(),
                payload: p.to_string(),
            })
            .collect();
        device_messages::send_to_device(&self.queue_deps(), who, SendToDeviceParams { messages })
            .await
            .unwrap()
            .json()
    }

    async fn read(&self, who: &DeviceCredential) -> Value {
        device_messages::read_device_messages(
            &self.queue_deps(),
            who,
            ReadDeviceMessagesParams { limit: None },
        )
        .await
        .unwrap()
        .json()
    }
}

#[tokio::test]
async fn each_one_time_key_is_handed_out_once_then_the_fallback_key_is_returned_and_kept() {
    let w = World::new();
    let bob = w.account("+14155550101", 0).await;
    let alice = w.account("+14155550102", 0).await;
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &["A1", "A2", "A3"], Some("F1")))
            .await,
        Ok(3)
    );
    let mut handed = vec![];
    for _ in 0..3 {
        let d = w.claim(&alice.primary, &bob.user).await;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["fallback"], false);
        assert_eq!(d[0]["identityKey"], b64("bob", 43));
        assert_eq!(d[0]["deviceId"], bob.primary.device_id.as_str());
        handed.push(d[0]["oneTimeKey"]["keyId"].as_str().unwrap().to_owned());
    }
    handed.sort();
    assert_eq!(handed, ["A1", "A2", "A3"], "each key once");
    // Exhausted: the fallback, every time (it is not consumed).
    for _ in 0..2 {
        let d = w.claim(&alice.primary, &bob.user).await;
        assert_eq!(d[0]["fallback"], true);
        assert_eq!(d[0]["oneTimeKey"]["keyId"], "F1");
    }
    // The owner sees its count at zero, and tops up.
    let listed = keys::list_devices(
        &w.key_deps(),
        &bob.primary,
        ListDevicesParams {
            user_ids: vec![bob.user.to_string()],
        },
    )
    .await
    .unwrap();
    assert_eq!(listed.json()["devices"][0]["oneTimeKeyCount"], 0);
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &["A4"], None)).await,
        Ok(1)
    );
    let d = w.claim(&alice.primary, &bob.user).await;
    assert_eq!(
        (
            d[0]["oneTimeKey"]["keyId"].clone(),
            d[0]["fallback"].clone()
        ),
        (json!("A4"), json!(false))
    );
}

#[tokio::test]
async fn a_device_without_keys_is_left_out_and_one_without_any_key_left_gets_null() {
    let w = World::new();
    let bob = w.account("+14155550101", 2).await;
    let alice = w.account("+14155550102", 0).await;
    w.upload(&bob.primary, upload("bob", &[], None))
        .await
        .unwrap();
    w.upload(&bob.companions[0], upload("bob2", &["B1", "B2"], None))
        .await
        .unwrap();
    let d = w.claim(&alice.primary, &bob.user).await;
    assert_eq!(
        d.len(),
        2,
        "the companion without keys is not listed: {d:?}"
    );
    let primary = d
        .iter()
        .find(|x| x["deviceId"] == bob.primary.device_id.as_str())
        .unwrap();
    assert_eq!(primary["oneTimeKey"], Value::Null);
    assert_eq!(primary["fallback"], false);
    // Only the named devices.
    let v = keys::claim_keys(
        &w.key_deps(),
        &alice.primary,
        ClaimKeysParams {
            user_id: bob.user.to_string(),
            device_ids: Some(vec![bob.companions[0].device_id.to_string()]),
        },
    )
    .await
    .unwrap();
    assert_eq!(v.json()["devices"].as_array().unwrap().len(), 1);
    assert_eq!(
        v.json()["devices"][0]["oneTimeKey"]["keyId"],
        "B2",
        "B1 went to the first claim"
    );
}

#[tokio::test]
async fn a_new_identity_discards_the_old_keys_and_a_known_key_id_is_stored_once() {
    let w = World::new();
    let bob = w.account("+14155550101", 0).await;
    let alice = w.account("+14155550102", 0).await;
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &["A1", "A2", "A2"], Some("F1")))
            .await,
        Ok(2)
    );
    // Same ids again: not stored twice.
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &["A1", "A2", "A3"], None))
            .await,
        Ok(3)
    );
    // A new identity: the old one-time keys and fallback are gone.
    assert_eq!(
        w.upload(&bob.primary, upload("bobNEW", &["N1"], None))
            .await,
        Ok(1)
    );
    let d = w.claim(&alice.primary, &bob.user).await;
    assert_eq!(d[0]["identityKey"], b64("bobNEW", 43));
    assert_eq!(d[0]["oneTimeKey"]["keyId"], "N1");
    let d = w.claim(&alice.primary, &bob.user).await;
    assert_eq!(
        d[0]["oneTimeKey"],
        Value::Null,
        "the old fallback went with the old identity"
    );
}

#[tokio::test]
async fn upload_limits_and_bad_keys_are_refused_and_change_nothing() {
    let w = World::new();
    let bob = w.account("+14155550101", 0).await;
    let ids: Vec<String> = (0..101).map(|i| format!("K{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &refs, None)).await,
        Err(ErrorCode::LimitExceeded)
    );
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &refs[..100], None))
            .await,
        Ok(100)
    );
    let more: Vec<String> = (0..100).map(|i| format!("M{i}")).collect();
    let more: Vec<&str> = more.iter().map(String::as_str).collect();
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &more, None)).await,
        Ok(200)
    );
    assert_eq!(
        w.upload(&bob.primary, upload("bob", &["X1"], None)).await,
        Err(ErrorCode::LimitExceeded),
        "201 stored would pass the limit"
    );
    let mut bad = upload("bob", &["Y1"], None);
    bad.identity_key = "short".into();
    let e = keys::upload_keys(&w.key_deps(), &bob.primary, bad)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("identityKey"), "{}", e.message);
    let mut bad = upload("bob", &["Y1"], None);
    bad.one_time_keys[0].signature = "!".repeat(86);
    let e = keys::upload_keys(&w.key_deps(), &bob.primary, bad)
        .await
        .unwrap_err();
    assert!(
        e.message.contains("oneTimeKeys[0].signature"),
        "{}",
        e.message
    );
    let mut bad = upload("bob", &[], Some("F"));
    bad.fallback_key.as_mut().unwrap().key_id = String::new();
    let e = keys::upload_keys(&w.key_deps(), &bob.primary, bad)
        .await
        .unwrap_err();
    assert!(e.message.contains("fallbackKey.keyId"), "{}", e.message);
    assert_eq!(
        w.keys
            .one_time_key_count(&bob.user, &bob.primary.device_id)
            .await
            .unwrap(),
        200,
        "nothing changed"
    );
}

#[tokio::test]
async fn claim_and_list_errors() {
    let w = World::new();
    let alice = w.account("+14155550102", 0).await;
    let kd = w.key_deps();
    let claim = |user: &str, devices: Option<Vec<String>>| {
        keys::claim_keys(
            &kd,
            &alice.primary,
            ClaimKeysParams {
                user_id: user.into(),
                device_ids: devices,
            },
        )
    };
    assert_eq!(
        claim(UserId::generate().as_str(), None)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let e = claim("bob", None).await.unwrap_err();
    assert!(e.code == ErrorCode::BadRequest && e.message.contains("userId"));
    let e = claim(alice.user.as_str(), Some(vec!["x".into()]))
        .await
        .unwrap_err();
    assert!(e.code == ErrorCode::BadRequest && e.message.contains("deviceIds"));
    let list = |ids: Vec<String>| {
        keys::list_devices(&kd, &alice.primary, ListDevicesParams { user_ids: ids })
    };
    assert_eq!(list(vec![]).await.unwrap_err().code, ErrorCode::BadRequest);
    let many: Vec<String> = (0..258).map(|_| UserId::generate().to_string()).collect();
    assert_eq!(list(many).await.unwrap_err().code, ErrorCode::LimitExceeded);
    // Unknown users are left out; others' counts are not shown.
    let bob = w.account("+14155550101", 1).await;
    w.upload(&bob.primary, upload("bob", &["A"], None))
        .await
        .unwrap();
    let v = list(vec![
        bob.user.to_string(),
        UserId::generate().to_string(),
        bob.user.to_string(),
    ])
    .await
    .unwrap();
    let v = v.json();
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let with_keys: Vec<_> = devices
        .iter()
        .filter(|d| d.get("identityKey").is_some())
        .collect();
    assert_eq!(with_keys.len(), 1);
    assert!(with_keys[0].get("oneTimeKeyCount").is_none());
    assert!(devices.iter().any(|d| d["primary"] == true));
}

#[tokio::test]
async fn a_device_message_reaches_a_live_device_once_is_kept_until_acked_and_expires() {
    let w = World::new();
    let alice = w.account("+14155550102", 0).await;
    let bob = w.account("+14155550101", 1).await;
    let live = w.connect(&bob.primary, "c-bob").await;
    let other = w.connect(&bob.companions[0], "c-bob2").await;
    let v = w
        .send(
            &alice.primary,
            &[(&bob.user, bob.primary.device_id.as_str(), "CIPHER-1")],
        )
        .await;
    assert_eq!(v["queued"].as_array().unwrap().len(), 1);
    assert_eq!(v["unknownDevices"], json!([]));
    let posted = w.gateway.posted();
    assert_eq!(posted.len(), 1, "to the target device only: {posted:?}");
    assert_eq!(posted[0].0, live);
    let event: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(event["event"], "deviceMessage");
    assert_eq!(event["message"]["payload"], "CIPHER-1");
    assert_eq!(event["message"]["sender"], alice.user.as_str());
    assert_eq!(
        event["message"]["senderDevice"],
        alice.primary.device_id.as_str()
    );
    assert!(!posted.iter().any(|(c, _)| *c == other));
    // Kept in the queue until acknowledged.
    let id = v["queued"][0]["id"].as_str().unwrap().to_owned();
    let qd = w.queue_deps();
    let r = w.read(&bob.primary).await;
    assert_eq!(r["messages"][0]["id"], id.as_str());
    assert_eq!(r["hasMore"], false);
    assert_eq!(w.read(&bob.companions[0]).await["messages"], json!([]));
    let ack = |ids: Vec<String>| {
        device_messages::ack_device_messages(&qd, &bob.primary, AckDeviceMessagesParams { ids })
    };
    assert_eq!(ack(vec![id.clone()]).await.unwrap().json()["acked"], 1);
    assert_eq!(ack(vec![id.clone()]).await.unwrap().json()["acked"], 0);
    assert_eq!(w.read(&bob.primary).await["messages"], json!([]));
    // Unacknowledged messages expire after 30 days.
    w.send(
        &alice.primary,
        &[(&bob.user, bob.primary.device_id.as_str(), "CIPHER-2")],
    )
    .await;
    w.clock.advance(Duration::days(30) - Duration::seconds(1));
    assert_eq!(
        w.read(&bob.primary).await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    w.clock.advance(Duration::seconds(2));
    assert_eq!(w.read(&bob.primary).await["messages"], json!([]));
}

#[tokio::test]
async fn an_offline_device_gets_a_push_without_the_payload_and_unknown_devices_are_reported() {
    let w = World::new();
    let alice = w.account("+14155550102", 0).await;
    let bob = w.account("+14155550101", 0).await;
    w.connections
        .set_push_endpoint(&bob.user, &bob.primary.device_id, "arn:bob")
        .await
        .unwrap();
    let ghost = DeviceId::generate();
    let v = w
        .send(
            &alice.primary,
            &[
                (&bob.user, bob.primary.device_id.as_str(), "C1"),
                (&bob.user, bob.primary.device_id.as_str(), "C2"),
                (&bob.user, ghost.as_str(), "C3"),
            ],
        )
        .await;
    assert_eq!(v["queued"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["unknownDevices"],
        json!([{"userId": bob.user, "deviceId": ghost}])
    );
    assert_eq!(
        w.push.device_message_pushes(),
        vec![("arn:bob".to_owned(), alice.user.clone())],
        "one push per device, naming only the sender"
    );
    assert!(w.push.sent().is_empty());
    // Both in queue order, and nothing stored for the unknown device.
    let r = w.read(&bob.primary).await;
    let payloads: Vec<_> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["C1", "C2"]);
    assert_eq!(w.queues.all().len(), 2);
}

#[tokio::test]
async fn send_read_and_ack_validate_their_input_and_change_nothing() {
    let w = World::new();
    let alice = w.account("+14155550102", 0).await;
    let bob = w.account("+14155550101", 0).await;
    let deps = w.queue_deps();
    let msg = |u: &str, d: &str, p: String| OutgoingDeviceMessage {
        user_id: u.into(),
        device_id: d.into(),
        payload: p,
    };
    let send = |messages| {
        device_messages::send_to_device(&deps, &alice.primary, SendToDeviceParams { messages })
    };
    let (u, d) = (bob.user.as_str(), bob.primary.device_id.as_str());
    assert_eq!(send(vec![]).await.unwrap_err().code, ErrorCode::BadRequest);
    let hundred_one = (0..101).map(|_| msg(u, d, "x".into())).collect();
    assert_eq!(
        send(hundred_one).await.unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    let e = send(vec![msg(u, d, "x".into()), msg(u, d, "é".repeat(16_385))])
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    assert!(e.message.contains("messages[1].payload"), "{}", e.message);
    let e = send(vec![msg("nobody", d, "x".into())]).await.unwrap_err();
    assert!(e.code == ErrorCode::BadRequest && e.message.contains("messages[0].userId"));
    let e = send(vec![msg(u, "d-1", "x".into())]).await.unwrap_err();
    assert!(e.code == ErrorCode::BadRequest && e.message.contains("messages[0].deviceId"));
    assert!(w.queues.all().is_empty(), "nothing was queued");
    // Exactly 16,384 characters is fine.
    send(vec![msg(u, d, "é".repeat(16_384))]).await.unwrap();

    let read = |limit| {
        device_messages::read_device_messages(
            &deps,
            &bob.primary,
            ReadDeviceMessagesParams { limit: Some(limit) },
        )
    };
    assert_eq!(read(0).await.unwrap_err().code, ErrorCode::BadRequest);
    assert_eq!(read(101).await.unwrap_err().code, ErrorCode::BadRequest);
    let ack = |ids: Vec<String>| {
        device_messages::ack_device_messages(&deps, &bob.primary, AckDeviceMessagesParams { ids })
    };
    assert_eq!(ack(vec![]).await.unwrap_err().code, ErrorCode::BadRequest);
    let e = ack(vec!["not-an-id".into()]).await.unwrap_err();
    assert!(e.code == ErrorCode::BadRequest && e.message.contains("ids[0]"));
    let many = (0..101)
        .map(|_| device_messages::new_ids(Utc::now(), 1).remove(0))
        .collect();
    assert_eq!(ack(many).await.unwrap_err().code, ErrorCode::LimitExceeded);
    assert_eq!(w.queues.all().len(), 1, "still queued");
}

#[tokio::test]
async fn message_ids_sort_in_queue_order() {
    let t = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
    let ids = device_messages::new_ids(t, 50);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let later = device_messages::new_ids(t + Duration::milliseconds(1), 1);
    assert!(later[0] > ids[49]);
    assert!(ids.iter().all(|i| device_messages::is_message_id(i)));
}

#[tokio::test]
async fn the_primary_removes_a_companion_with_its_key_connections_push_keys_and_queue() {
    let w = World::new();
    let bob = w.account("+14155550101", 2).await;
    let alice = w.account("+14155550102", 0).await;
    let companion = &bob.companions[0];
    w.upload(companion, upload("c", &["A1"], Some("F")))
        .await
        .unwrap();
    w.connections
        .set_push_endpoint(&bob.user, &companion.device_id, "arn:c")
        .await
        .unwrap();
    w.send(
        &alice.primary,
        &[(&bob.user, companion.device_id.as_str(), "C1")],
    )
    .await;
    let c1 = w.connect(companion, "c-1").await;
    let c2 = w.connect(companion, "c-2").await;
    let current = w.connect(&bob.primary, "c-primary").await;
    let removed = remove_device::remove_device(
        &w.remove_deps(),
        &bob.primary,
        &current,
        RemoveDeviceParams {
            device_id: companion.device_id.to_string(),
        },
    )
    .await
    .unwrap();
    assert_eq!(removed.close_after_reply, None);
    assert!(
        w.accounts
            .device_for_key(&bob.keys[1].hash())
            .await
            .unwrap()
            .is_none(),
        "its API key is refused"
    );
    assert!(
        w.accounts
            .device_for_key(&bob.keys[0].hash())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(w.gateway.closed(), vec![c1, c2]);
    assert_eq!(
        w.connections.for_user(&bob.user).await.unwrap(),
        vec![(bob.primary.device_id.clone(), current)]
    );
    let presence = w
        .connections
        .presence(std::slice::from_ref(&bob.user))
        .await
        .unwrap();
    assert!(presence[0].push.is_empty());
    assert!(w.keys.device_keys(&bob.user).await.unwrap().is_empty());
    assert!(w.queues.all().is_empty());
    let d = w.claim(&alice.primary, &bob.user).await;
    assert!(d.is_empty());
    // Again: it is gone.
    let again = remove_device::remove_device(
        &w.remove_deps(),
        &bob.primary,
        &ConnectionId::new("c-primary"),
        RemoveDeviceParams {
            device_id: companion.device_id.to_string(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(again.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn remove_device_rules() {
    let w = World::new();
    let bob = w.account("+14155550101", 2).await;
    let alice = w.account("+14155550102", 1).await;
    let w = &w;
    let remove = |who: &DeviceCredential, device: &DeviceId| {
        let who = who.clone();
        let device = device.to_string();
        async move {
            remove_device::remove_device(
                &w.remove_deps(),
                &who,
                &ConnectionId::new("cur"),
                RemoveDeviceParams { device_id: device },
            )
            .await
        }
    };
    let code = |r: Result<remove_device::Removed, courier_core::ApiError>| r.unwrap_err().code;
    let (c0, c1) = (&bob.companions[0], &bob.companions[1]);
    assert_eq!(code(remove(c0, &c1.device_id).await), ErrorCode::Forbidden);
    assert_eq!(
        code(remove(c0, &bob.primary.device_id).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(remove(&bob.primary, &bob.primary.device_id).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(remove(&bob.primary, &alice.companions[0].device_id).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(remove(&bob.primary, &DeviceId::generate()).await),
        ErrorCode::NotFound
    );
    let e = remove_device::remove_device(
        &w.remove_deps(),
        &bob.primary,
        &ConnectionId::new("cur"),
        RemoveDeviceParams {
            device_id: "phone".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(e.code == ErrorCode::BadRequest && e.message.contains("deviceId"));
    assert_eq!(
        w.accounts.devices(&bob.user).await.unwrap().len(),
        3,
        "nothing removed"
    );
    assert_eq!(w.accounts.live_keys(), 5);
    // A companion removes itself: its own connection is closed after the reply.
    let own = w.connect(c1, "own").await;
    let removed = remove_device::remove_device(
        &w.remove_deps(),
        c1,
        &own,
        RemoveDeviceParams {
            device_id: c1.device_id.to_string(),
        },
    )
    .await
    .unwrap();
    assert_eq!(removed.close_after_reply, Some(own));
    assert!(w.gateway.closed().is_empty(), "not before the reply");
    assert_eq!(w.accounts.devices(&bob.user).await.unwrap().len(), 2);
}

/// Issue 21, item 8: others' claims take a user's one-time keys only so often an hour; later
/// claims get the fallback key (nobody is refused, nobody drains the pool), the owner's own
/// claims are not counted, and the count starts again the next hour.
#[tokio::test]
async fn claims_by_others_take_one_time_keys_only_so_often_an_hour() {
    use courier_core::rate_limit::{Rule, Throttle};
    let w = World::new();
    let bob = w.account("+14155550101", 1).await;
    let alice = w.account("+14155550102", 0).await;
    let limiter = MemoryRateLimiter::default();
    let capped = keys::Deps {
        one_time_keys_per_target: Some(Throttle {
            limiter: &limiter,
            rule: Rule::Window {
                max: 2,
                window_secs: 3600,
            },
        }),
        ..w.key_deps()
    };
    let ids: Vec<String> = (0..6).map(|i| format!("K{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    w.upload(&bob.primary, upload("bob", &ids, Some("F")))
        .await
        .unwrap();
    let claim = |by: DeviceCredential| {
        let capped = &capped;
        let user = bob.user.to_string();
        async move {
            let p = ClaimKeysParams {
                user_id: user,
                device_ids: None,
            };
            let v = keys::claim_keys(capped, &by, p).await.unwrap();
            v.json()["devices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["oneTimeKey"].is_object())
                .map(|d| d["fallback"].as_bool().unwrap())
        }
    };
    assert_eq!(claim(alice.primary.clone()).await, Some(false));
    assert_eq!(claim(alice.primary.clone()).await, Some(false));
    for _ in 0..3 {
        assert_eq!(claim(alice.primary.clone()).await, Some(true), "fallback");
    }
    // Bob's companion claiming its own account's keys is not counted.
    assert_eq!(claim(bob.companions[0].clone()).await, Some(false));
    // The next hour, one-time keys again.
    w.clock.advance(chrono::Duration::hours(1));
    assert_eq!(claim(alice.primary.clone()).await, Some(false));
}

/// Issue 21, item 8: a device's name is shown to its owner only.
#[tokio::test]
async fn device_names_are_shown_to_their_owner_only() {
    let w = World::new();
    let bob = w.account("+14155550101", 1).await;
    let alice = w.account("+14155550102", 0).await;
    let list = |by: DeviceCredential| {
        let deps = w.key_deps();
        let p = ListDevicesParams {
            user_ids: vec![bob.user.to_string()],
        };
        async move { keys::list_devices(&deps, &by, p).await.unwrap().json() }
    };
    let mine = list(bob.companions[0].clone()).await;
    let theirs = list(alice.primary.clone()).await;
    let devices = |v: &Value| v["devices"].as_array().unwrap().clone();
    assert_eq!(devices(&mine).len(), 2);
    assert_eq!(devices(&theirs).len(), 2);
    assert!(
        devices(&mine).iter().all(|d| d["name"].is_string()),
        "{mine}"
    );
    assert!(
        devices(&theirs).iter().all(|d| d.get("name").is_none()),
        "{theirs}"
    );
}

/// Issue 21 item 10: a queue of 100 device messages of 16,384 two-byte characters is 3.2 MB;
/// read 100 at a time it made replies API Gateway refuses (128 KB), and the device could never
/// read its queue. Each page now fits a frame, and reading and acknowledging page after page
/// returns every message once.
#[tokio::test]
async fn a_queue_of_large_device_messages_is_read_in_pages_that_fit_a_frame() {
    let w = World::new();
    let bob = w.account("+14155550101", 0).await;
    let alice = w.account("+14155550102", 0).await;
    let device = bob.primary.device_id.to_string();
    let payloads: Vec<String> = (0..100)
        .map(|i| format!("{i:03}{}", "é".repeat(16_381)))
        .collect();
    let to: Vec<(&UserId, &str, &str)> = payloads
        .iter()
        .map(|p| (&bob.user, device.as_str(), p.as_str()))
        .collect();
    w.send(&alice.primary, &to).await;

    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = device_messages::read_device_messages(
            &w.queue_deps(),
            &bob.primary,
            ReadDeviceMessagesParams { limit: Some(100) },
        )
        .await
        .unwrap();
        pages += 1;
        let page = support::page_in_one_frame(&page);
        let messages = page["messages"].as_array().unwrap();
        let ids: Vec<String> = messages
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        seen.extend(
            messages
                .iter()
                .map(|m| m["payload"].as_str().unwrap()[..3].to_owned()),
        );
        device_messages::ack_device_messages(
            &w.queue_deps(),
            &bob.primary,
            AckDeviceMessagesParams { ids },
        )
        .await
        .unwrap();
        if page.json()["hasMore"] != true {
            break;
        }
    }
    let expected: Vec<String> = (0..100).map(|i| format!("{i:03}")).collect();
    assert_eq!(seen, expected, "every message once, oldest first");
    assert!(pages > 1, "{pages} page(s)");
}

/// Issue 21 item 10: `listDevices` of the most users it accepts, each with a primary and the
/// most companions, all with keys, still fits a reply frame (it took 257 users: 1,542 devices,
/// about 400 KB, a reply API Gateway never sends); one user more is refused.
#[tokio::test]
async fn list_devices_of_the_most_users_with_the_most_devices_fits_a_frame() {
    let w = World::new();
    let mut users = Vec::new();
    for i in 0..keys::MAX_LIST_USERS {
        let a = w
            .account(
                &format!("+1415{:07}", 5_550_000 + i),
                courier_core::usecases::link_device::MAX_COMPANIONS,
            )
            .await;
        for d in std::iter::once(&a.primary).chain(&a.companions) {
            let seed = format!("{}", d.device_id);
            w.upload(d, upload(&seed, &[], None)).await.unwrap();
        }
        users.push(a);
    }
    let ids: Vec<String> = users.iter().map(|a| a.user.to_string()).collect();
    let deps = w.key_deps();
    let list = |ids: Vec<String>| {
        keys::list_devices(
            &deps,
            &users[0].primary,
            ListDevicesParams { user_ids: ids },
        )
    };
    let r = list(ids.clone()).await.unwrap();
    let r = r.json();
    let devices = r["devices"].as_array().unwrap();
    assert_eq!(
        devices.len(),
        keys::MAX_LIST_USERS * (1 + courier_core::usecases::link_device::MAX_COMPANIONS)
    );
    assert!(devices.iter().all(|d| d["identityKey"].is_string()));
    let frame = reply_ok(Some("r1"), &r);
    assert!(
        frame.len() <= REPLY_BUDGET_BYTES,
        "a {} byte reply",
        frame.len()
    );
    let mut more = ids;
    more.push(UserId::generate().to_string());
    assert_eq!(list(more).await.unwrap_err().code, ErrorCode::LimitExceeded);
}
