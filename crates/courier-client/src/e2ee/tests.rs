//! The wiring of [`E2ee`] against an in-memory fake of the server's key directory, device
//! queues and groups, implementing the actions as `docs/protocol.md` describes them: several
//! users and devices, each with its own [`E2ee`] (and its own encrypted store in a temporary
//! directory), exchanging exactly the JSON the server would relay.

use super::*;
use crate::crypto::OneTimeKey;
use serde_json::json;
use std::sync::Arc;

#[derive(Default)]
struct DeviceRecord {
    primary: bool,
    identity_key: Option<String>,
    signing_key: Option<String>,
    one_time_keys: Vec<OneTimeKey>,
    fallback: Option<OneTimeKey>,
}

#[derive(Default)]
struct Server {
    devices: BTreeMap<(String, String), DeviceRecord>,
    queues: BTreeMap<(String, String), Vec<DeviceMessage>>,
    next_id: u64,
    /// Every `sendToDevice` call's size in messages.
    send_to_device_calls: Vec<usize>,
    /// Corrupt the signature of claimed one-time keys.
    forge_signatures: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Server>>);

/// One device's connection to the fake.
struct As {
    fake: Fake,
    user: String,
    device: String,
}

impl Fake {
    fn add_device(&self, user: &str, device: &str, primary: bool) {
        self.0.lock().unwrap().devices.insert(
            (user.into(), device.into()),
            DeviceRecord {
                primary,
                ..Default::default()
            },
        );
    }

    fn remove_device(&self, user: &str, device: &str) {
        let mut s = self.0.lock().unwrap();
        s.devices.remove(&(user.into(), device.into()));
        s.queues.remove(&(user.into(), device.into()));
    }

    fn handle(&self, user: &str, device: &str, req: Request) -> Result<Value, ClientError> {
        let p = req.params;
        let mut s = self.0.lock().unwrap();
        let me = (user.to_owned(), device.to_owned());
        let str_list = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        };
        Ok(match req.action {
            "uploadKeys" => {
                let rec = s.devices.get_mut(&me).expect("a known device");
                let identity = p["identityKey"].as_str().map(str::to_owned);
                let signing = p["signingKey"].as_str().map(str::to_owned);
                if rec.identity_key.is_some()
                    && (rec.identity_key != identity || rec.signing_key != signing)
                {
                    rec.one_time_keys.clear();
                    rec.fallback = None;
                }
                rec.identity_key = identity;
                rec.signing_key = signing;
                let keys: Vec<OneTimeKey> =
                    serde_json::from_value(p["oneTimeKeys"].clone()).unwrap();
                assert!(keys.len() <= 100);
                for k in keys {
                    if !rec.one_time_keys.iter().any(|o| o.key_id == k.key_id) {
                        rec.one_time_keys.push(k);
                    }
                }
                if let Some(f) = p.get("fallbackKey").filter(|f| !f.is_null()) {
                    rec.fallback = Some(serde_json::from_value(f.clone()).unwrap());
                }
                json!({"oneTimeKeyCount": rec.one_time_keys.len()})
            }
            "listDevices" => {
                let users = str_list(&p["userIds"]);
                let devices: Vec<Value> = s
                    .devices
                    .iter()
                    .filter(|((u, _), _)| users.contains(u))
                    .map(|((u, d), r)| {
                        let mut v = json!({"userId": u, "deviceId": d, "name": d, "platform": "cli",
                            "primary": r.primary, "identityKey": r.identity_key, "signingKey": r.signing_key});
                        if u == user {
                            v["oneTimeKeyCount"] = json!(r.one_time_keys.len());
                        }
                        v
                    })
                    .collect();
                json!({ "devices": devices })
            }
            "claimKeys" => {
                let target = p["userId"].as_str().unwrap().to_owned();
                let only = p.get("deviceIds").map(str_list);
                let forge = s.forge_signatures;
                let mut out = vec![];
                for ((u, d), r) in s.devices.iter_mut() {
                    if *u != target || only.as_ref().is_some_and(|o| !o.contains(d)) {
                        continue;
                    }
                    let Some(identity) = r.identity_key.clone() else {
                        continue;
                    };
                    let (mut key, fallback) = if r.one_time_keys.is_empty() {
                        (r.fallback.clone(), true)
                    } else {
                        (Some(r.one_time_keys.remove(0)), false)
                    };
                    if forge && let Some(k) = key.as_mut() {
                        // Another valid key, with the real key's signature: must be refused.
                        k.key = vodozemac::Curve25519PublicKey::from(
                            &vodozemac::Curve25519SecretKey::new(),
                        )
                        .to_base64();
                    }
                    out.push(json!({"userId": u, "deviceId": d, "identityKey": identity,
                        "signingKey": r.signing_key, "oneTimeKey": key, "fallback": fallback}));
                }
                json!({ "devices": out })
            }
            "sendToDevice" => {
                let messages: Vec<OutgoingDeviceMessage> =
                    serde_json::from_value(p["messages"].clone()).unwrap();
                assert!((1..=100).contains(&messages.len()));
                assert!(p.to_string().len() < 128 * 1024);
                s.send_to_device_calls.push(messages.len());
                let (mut queued, mut unknown) = (vec![], vec![]);
                for m in messages {
                    assert!(m.payload.len() <= 16_384);
                    let key = (m.user_id.clone(), m.device_id.clone());
                    if !s.devices.contains_key(&key) {
                        unknown.push(json!({"userId": m.user_id, "deviceId": m.device_id}));
                        continue;
                    }
                    s.next_id += 1;
                    let id = format!("dm{:06}", s.next_id);
                    s.queues.entry(key).or_default().push(DeviceMessage {
                        id: id.clone(),
                        sender: user.to_owned(),
                        sender_device: device.to_owned(),
                        payload: m.payload,
                        sent_at: String::new(),
                    });
                    queued.push(json!({"userId": m.user_id, "deviceId": m.device_id, "id": id}));
                }
                json!({"queued": queued, "unknownDevices": unknown})
            }
            "readDeviceMessages" => {
                let limit = p["limit"].as_u64().unwrap_or(100) as usize;
                let q = s.queues.get(&me).cloned().unwrap_or_default();
                json!({"messages": q.iter().take(limit).collect::<Vec<_>>(), "hasMore": q.len() > limit})
            }
            "ackDeviceMessages" => {
                let ids = str_list(&p["ids"]);
                let q = s.queues.entry(me).or_default();
                let before = q.len();
                q.retain(|m| !ids.contains(&m.id));
                json!({"acked": before - q.len()})
            }
            other => panic!("the fake does not implement {other}"),
        })
    }
}

impl Caller for As {
    fn call(&self, req: Request) -> impl Future<Output = Result<Value, ClientError>> + Send {
        std::future::ready(self.fake.handle(&self.user, &self.device, req))
    }
}

/// A device: its E2ee (stored in its own temporary directory) and its connection.
struct Dev {
    e2ee: E2ee,
    conn: As,
    dir: std::path::PathBuf,
}

impl Dev {
    async fn new(fake: &Fake, user: &str, device: &str, primary: bool) -> Dev {
        fake.add_device(user, device, primary);
        let dir = std::env::temp_dir().join(format!(
            "courier-e2ee-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let dev = Dev {
            e2ee: E2ee::open(&dir, user, device).unwrap(),
            conn: As {
                fake: fake.clone(),
                user: user.into(),
                device: device.into(),
            },
            dir,
        };
        dev.e2ee.publish_keys(&dev.conn).await.unwrap();
        dev
    }

    async fn send(&self, chat: &str, members: &[&str], text: &str) -> Result<String, ClientError> {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        self.e2ee
            .encrypt_for(&self.conn, chat, &members, text)
            .await
    }

    /// Reads and acks the whole queue, as the client's sync does; returns released messages.
    async fn drain(&self) -> Result<Vec<(Message, Decrypted)>, ClientError> {
        let mut released = vec![];
        let page = read_device_messages(&self.conn, Some(100)).await?;
        let mut acks = vec![];
        for dm in &page.messages {
            if let Some(list) = self.e2ee.receive_device_message(&self.conn, dm).await? {
                released.extend(list);
            }
            acks.push(dm.id.clone());
        }
        if !acks.is_empty() {
            ack_device_messages(&self.conn, &acks).await?;
        }
        Ok(released)
    }

    fn read(&self, chat: &str, seq: u64, from: &Dev, payload: &str) -> Decrypted {
        self.e2ee.decrypt(&message(chat, seq, from, payload))
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn message(chat: &str, seq: u64, from: &Dev, payload: &str) -> Message {
    Message {
        msg_id: format!("{chat}.{seq}"),
        session_id: chat.into(),
        seq,
        sender: from.conn.user.clone(),
        sender_device: from.conn.device.clone(),
        client_msg_id: Some(format!("c{seq}")),
        kind: MessageKind::Text,
        payload: payload.into(),
        attachments: vec![],
        sent_at: String::new(),
        expires_at: None,
        text: None,
    }
}

fn text(t: &str) -> Decrypted {
    Decrypted::Text(t.into())
}

#[tokio::test]
async fn a_message_reaches_every_device_of_both_users_and_the_server_sees_no_plaintext() {
    let fake = Fake::default();
    let a1 = Dev::new(&fake, "alice", "a1", true).await;
    let a2 = Dev::new(&fake, "alice", "a2", false).await;
    let b1 = Dev::new(&fake, "bob", "b1", true).await;
    let b2 = Dev::new(&fake, "bob", "b2", false).await;

    let secret = "meet at the old mill at nine";
    let payload = b1.send("s_ab", &["alice", "bob"], secret).await.unwrap();
    assert!(!payload.contains("old mill"));
    for q in fake.0.lock().unwrap().queues.values().flatten() {
        assert!(!q.payload.contains("old mill") && !q.payload.contains("room_key"));
    }
    // One room key each for a1, a2, b2 (not for the sender itself), in one call.
    assert_eq!(fake.0.lock().unwrap().send_to_device_calls, vec![3]);
    for d in [&a1, &a2, &b2] {
        assert_eq!(
            d.read("s_ab", 1, &b1, &payload),
            Decrypted::Held,
            "no key yet"
        );
        let released = d.drain().await.unwrap();
        assert_eq!(released.len(), 1, "the held message is released by its key");
        assert_eq!(released[0].1, text(secret));
        assert_eq!(d.read("s_ab", 1, &b1, &payload), text(secret));
    }

    // A second message reuses the session: no new key, no claim.
    let before = fake.0.lock().unwrap().send_to_device_calls.len();
    let second = b1.send("s_ab", &["alice", "bob"], "second").await.unwrap();
    assert_eq!(fake.0.lock().unwrap().send_to_device_calls.len(), before);
    assert_eq!(a1.read("s_ab", 2, &b1, &second), text("second"));

    // Alice answers from her companion: Bob's devices and her phone read it.
    let answer = a2.send("s_ab", &["alice", "bob"], "see you").await.unwrap();
    for d in [&a1, &b1, &b2] {
        d.drain().await.unwrap();
        assert_eq!(d.read("s_ab", 3, &a2, &answer), text("see you"));
    }
    // Claiming the same device's keys again is not needed: Olm sessions are reused.
    let third = a2.send("s_ab2", &["bob"], "other chat").await.unwrap();
    b1.drain().await.unwrap();
    assert_eq!(b1.read("s_ab2", 1, &a2, &third), text("other chat"));

    // A message naming another sender, or another chat, is not accepted.
    assert!(matches!(
        b1.read("s_ab", 3, &a1, &answer),
        Decrypted::Failed(_)
    ));
    assert!(matches!(
        b1.read("s_other", 3, &a2, &answer),
        Decrypted::Failed(_)
    ));
    // Plain text is not shown as a message.
    assert!(matches!(
        b1.read("s_ab", 9, &a2, "hello"),
        Decrypted::Failed(_)
    ));
}

#[tokio::test]
async fn state_survives_a_restart() {
    let fake = Fake::default();
    let a1 = Dev::new(&fake, "alice", "a1", true).await;
    let b1 = Dev::new(&fake, "bob", "b1", true).await;
    let p1 = b1.send("s_ab", &["alice"], "one").await.unwrap();
    a1.drain().await.unwrap();
    assert_eq!(a1.read("s_ab", 1, &b1, &p1), text("one"));

    // Alice's process restarts: same keys, same sessions; nothing is uploaded again.
    let again = E2ee::open(&a1.dir, "alice", "a1").unwrap();
    assert_eq!(again.identity_key(), a1.e2ee.identity_key());
    let p2 = b1.send("s_ab", &["alice"], "two").await.unwrap();
    assert_eq!(again.decrypt(&message("s_ab", 2, &b1, &p2)), text("two"));
    // Bob restarts too: the key is not shared again (it was recorded as shared).
    let calls = fake.0.lock().unwrap().send_to_device_calls.len();
    let bob_again = Dev {
        e2ee: E2ee::open(&b1.dir, "bob", "b1").unwrap(),
        conn: As {
            fake: fake.clone(),
            user: "bob".into(),
            device: "b1".into(),
        },
        dir: std::env::temp_dir().join("unused-courier-e2ee"),
    };
    let p3 = bob_again.send("s_ab", &["alice"], "three").await.unwrap();
    assert_eq!(fake.0.lock().unwrap().send_to_device_calls.len(), calls);
    assert_eq!(again.decrypt(&message("s_ab", 3, &b1, &p3)), text("three"));
}

#[tokio::test]
async fn a_removed_device_or_member_cannot_read_what_follows_and_a_new_device_only_what_follows() {
    let fake = Fake::default();
    let a1 = Dev::new(&fake, "alice", "a1", true).await;
    let a2 = Dev::new(&fake, "alice", "a2", false).await;
    let b1 = Dev::new(&fake, "bob", "b1", true).await;
    let c1 = Dev::new(&fake, "carol", "c1", true).await;
    let group = "g_1";

    let p1 = b1
        .send(group, &["alice", "bob", "carol"], "before")
        .await
        .unwrap();
    for d in [&a1, &a2, &c1] {
        d.drain().await.unwrap();
        assert_eq!(d.read(group, 1, &b1, &p1), text("before"));
    }

    // Alice removes her companion a2, and Carol leaves the group.
    fake.remove_device("alice", "a2");
    let p2 = b1.send(group, &["alice", "bob"], "after").await.unwrap();
    a1.drain().await.unwrap();
    assert_eq!(a1.read(group, 2, &b1, &p2), text("after"));
    c1.drain().await.unwrap();
    assert_eq!(
        c1.read(group, 2, &b1, &p2),
        Decrypted::Held,
        "carol has no key"
    );
    assert_eq!(
        a2.read(group, 2, &b1, &p2),
        Decrypted::Held,
        "a2 has no key"
    );

    // A device linked now reads what follows, not what came before.
    let a3 = Dev::new(&fake, "alice", "a3", false).await;
    let p3 = b1.send(group, &["alice", "bob"], "welcome").await.unwrap();
    a3.drain().await.unwrap();
    assert_eq!(a3.read(group, 3, &b1, &p3), text("welcome"));
    assert!(
        matches!(a3.read(group, 2, &b1, &p2), Decrypted::Failed(ref r) if r.contains("precedes")),
        "{:?}",
        a3.read(group, 2, &b1, &p2)
    );
    assert_eq!(a3.read(group, 1, &b1, &p1), Decrypted::Held);
}

#[tokio::test]
async fn a_changed_identity_is_refused_both_ways_until_accepted() {
    let fake = Fake::default();
    let a1 = Dev::new(&fake, "alice", "a1", true).await;
    let b1 = Dev::new(&fake, "bob", "b1", true).await;
    let p = a1.send("s_ab", &["bob"], "hi").await.unwrap();
    b1.drain().await.unwrap();
    assert_eq!(b1.read("s_ab", 1, &a1, &p), text("hi"));
    let p = b1.send("s_ab", &["alice"], "hi back").await.unwrap();
    a1.drain().await.unwrap();
    assert_eq!(a1.read("s_ab", 2, &b1, &p), text("hi back"));

    // Bob's number is registered again: a new primary device, new keys; b1 is gone.
    fake.remove_device("bob", "b1");
    let b9 = Dev::new(&fake, "bob", "b9", true).await;
    assert!(!a1.e2ee.is_trusted(&a1.conn, "bob").await.unwrap());
    let err = a1.send("s_ab", &["bob"], "secret").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Crypto(CryptoError::IdentityChanged { ref user, .. }) if user == "bob"),
        "{err:?}"
    );
    assert!(
        fake.0
            .lock()
            .unwrap()
            .queues
            .get(&("bob".into(), "b9".into()))
            .is_none_or(Vec::is_empty)
    );

    // The new device writes: its room key is refused and stays queued; the message is held.
    let p = b9
        .send("s_ab", &["alice"], "it's me, new phone")
        .await
        .unwrap();
    let err = a1.drain().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Crypto(CryptoError::IdentityChanged { .. })
        ),
        "{err:?}"
    );
    assert_eq!(a1.read("s_ab", 3, &b9, &p), Decrypted::Held);

    // Alice accepts (after comparing safety numbers): both ways work again.
    let mine = a1.e2ee.safety(&a1.conn, "bob").await.unwrap();
    let theirs = b9.e2ee.safety(&b9.conn, "alice").await.unwrap();
    assert_eq!(mine.safety_number, theirs.safety_number);
    assert_eq!(a1.e2ee.accept_identity(&a1.conn, "bob").await.unwrap(), 1);
    assert!(a1.e2ee.is_trusted(&a1.conn, "bob").await.unwrap());
    let released = a1.drain().await.unwrap();
    assert_eq!(
        released,
        vec![(message("s_ab", 3, &b9, &p), text("it's me, new phone"))]
    );
    let p = a1.send("s_ab", &["bob"], "welcome back").await.unwrap();
    b9.drain().await.unwrap();
    assert_eq!(b9.read("s_ab", 4, &a1, &p), text("welcome back"));
}

#[tokio::test]
async fn forged_one_time_keys_are_refused() {
    let fake = Fake::default();
    let a1 = Dev::new(&fake, "alice", "a1", true).await;
    let _b1 = Dev::new(&fake, "bob", "b1", true).await;
    fake.0.lock().unwrap().forge_signatures = true;
    let err = a1.send("s_ab", &["bob"], "hi").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Crypto(CryptoError::BadSignature)),
        "{err:?}"
    );
}

#[tokio::test]
async fn one_time_keys_are_topped_up_and_sharing_is_batched() {
    let fake = Fake::default();
    let b1 = Dev::new(&fake, "bob", "b1", true).await;
    let count = |fake: &Fake| {
        fake.0.lock().unwrap().devices[&("bob".to_owned(), "b1".to_owned())]
            .one_time_keys
            .len()
    };
    assert_eq!(count(&fake), ONE_TIME_KEYS_TARGET as usize);
    // 35 claims leave 15: the next connect tops up to 50; above 20 nothing is uploaded.
    for _ in 0..35 {
        claim_keys(&b1.conn, "bob", None).await.unwrap();
    }
    assert_eq!(
        b1.e2ee.publish_keys(&b1.conn).await.unwrap(),
        ONE_TIME_KEYS_TARGET
    );
    for _ in 0..10 {
        claim_keys(&b1.conn, "bob", None).await.unwrap();
    }
    assert_eq!(b1.e2ee.publish_keys(&b1.conn).await.unwrap(), 40);
    assert_eq!(count(&fake), 40);

    // 150 devices in a group: keys go out in calls of at most 100, under 128 KB each.
    let many: Vec<OutgoingDeviceMessage> = (0..250)
        .map(|i| OutgoingDeviceMessage {
            user_id: format!("u{i}"),
            device_id: "d".into(),
            payload: "x".repeat(if i < 200 { 100 } else { 16_000 }),
        })
        .collect();
    let b = batches(many.clone(), SEND_TO_DEVICE_BYTES);
    assert!(b.iter().all(|b| b.len() <= 100));
    assert!(
        b.iter()
            .all(|b| serde_json::to_string(b).unwrap().len() < 128 * 1024)
    );
    assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 250);
    assert_eq!(b[0].len(), 100);
    // A browser's budget (one unfragmented frame under 32 KB): smaller calls, nothing lost.
    let small = batches(many, 24 * 1024);
    assert!(
        small
            .iter()
            .all(|b| serde_json::to_string(b).unwrap().len() < 32 * 1024)
    );
    assert_eq!(small.iter().map(Vec::len).sum::<usize>(), 250);
}

#[tokio::test]
async fn a_device_that_lost_its_state_and_uploads_new_keys_is_an_identity_change() {
    let fake = Fake::default();
    let a1 = Dev::new(&fake, "alice", "a1", true).await;
    let b1 = Dev::new(&fake, "bob", "b1", true).await;
    let b2 = Dev::new(&fake, "bob", "b2", false).await;
    let p = b2
        .send("s_ab", &["alice"], "from the laptop")
        .await
        .unwrap();
    a1.drain().await.unwrap();
    assert_eq!(a1.read("s_ab", 1, &b2, &p), text("from the laptop"));
    let p = a1.send("s_ab", &["bob"], "ok").await.unwrap();
    b1.drain().await.unwrap();
    assert_eq!(b1.read("s_ab", 2, &a1, &p), text("ok"));

    // Bob's laptop loses its state: same device id, new keys (uploadKeys replaces them).
    let fresh = std::env::temp_dir().join(format!(
        "courier-e2ee-test-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let b2_again = Dev {
        e2ee: E2ee::open(&fresh, "bob", "b2").unwrap(),
        conn: As {
            fake: fake.clone(),
            user: "bob".into(),
            device: "b2".into(),
        },
        dir: fresh,
    };
    b2_again.e2ee.publish_keys(&b2_again.conn).await.unwrap();
    // Alice's cached listing still has the old key; the message's key makes her look again.
    let p = b2_again.send("s_ab", &["alice"], "trust me").await.unwrap();
    let err = a1.drain().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Crypto(CryptoError::IdentityChanged { device, .. }) if device == "b2"),
        "{err:?}"
    );
    assert_eq!(a1.read("s_ab", 3, &b2_again, &p), Decrypted::Held);
    let err = a1.send("s_ab", &["bob"], "hm").await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Crypto(CryptoError::IdentityChanged { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_history_offer_is_taken_only_from_the_accounts_primary_device() {
    use crate::history_bundle::{BundlePart, HistoryOffer};
    let fake = Fake::default();
    let a1 = Dev::new(&fake, "alice", "a1", true).await;
    let a2 = Dev::new(&fake, "alice", "a2", false).await;
    let a3 = Dev::new(&fake, "alice", "a3", false).await;
    let m1 = Dev::new(&fake, "mallory", "m1", true).await;
    let offer = |media: &str| HistoryOffer {
        t: "historyBundle".into(),
        v: 1,
        parts: vec![BundlePart {
            media_id: media.into(),
            key: "k".into(),
            nonce: "n".into(),
            sha256: "00".into(),
            size: 10,
        }],
        messages: 1,
        chats: 1,
    };
    let bytes = |o: HistoryOffer| serde_json::to_vec(&o).unwrap();

    // Mallory's primary device opens an Olm session to Alice's companion and offers history.
    let claimed = claim_keys(&m1.conn, "alice", Some(&["a2".to_owned()][..]))
        .await
        .unwrap()
        .remove(0);
    let payload = m1
        .e2ee
        .state
        .lock()
        .unwrap()
        .device
        .encrypt_to_device(
            "alice",
            "a2",
            &claimed.identity_key,
            Some(&claimed.one_time_key.unwrap().key),
            &bytes(offer("m_mallory")),
        )
        .unwrap();
    send_to_device(
        &m1.conn,
        &[OutgoingDeviceMessage {
            user_id: "alice".into(),
            device_id: "a2".into(),
            payload,
        }],
    )
    .await
    .unwrap();
    // Another companion of Alice's offers some too.
    assert!(
        a3.e2ee
            .send_to_own_device(&a3.conn, "a2", &bytes(offer("m_a3")))
            .await
            .unwrap()
    );
    // Then the primary.
    assert!(
        a1.e2ee
            .send_to_own_device(&a1.conn, "a2", &bytes(offer("m_a1")))
            .await
            .unwrap()
    );
    // Only to the account's own devices: an unknown one is not sent to.
    assert!(
        !a1.e2ee
            .send_to_own_device(&a1.conn, "nope", b"{}")
            .await
            .unwrap()
    );

    {
        // Three offers queued for a2, none readable by the server.
        let s = fake.0.lock().unwrap();
        let q = &s.queues[&("alice".to_owned(), "a2".to_owned())];
        assert_eq!(q.len(), 3);
        assert!(q.iter().all(|m| !m.payload.contains("historyBundle")));
    }
    a2.drain().await.unwrap();
    let taken = a2.e2ee.take_history_offers();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].sender_device, "a1");
    assert_eq!(taken[0].offer, offer("m_a1"));
    assert!(a2.e2ee.take_history_offers().is_empty(), "taken once");
}
