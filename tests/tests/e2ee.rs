//! End-to-end encryption on the local cloud, with real SDK clients (each device with its own
//! crypto store in a temporary directory) and the real server: every member device decrypts,
//! the server stores and relays only ciphertext, late and removed devices read only what they
//! should, and a changed identity is reported, not accepted.

use courier_client::client::Events;
use courier_client::crypto::CryptoStore;
use courier_client::e2ee::E2ee;
use courier_client::history::{HistoryEntry, HistoryStore};
use courier_client::history_bundle::{self, Limits};
use courier_client::protocol::OutgoingDeviceMessage;
use courier_client::{
    Client, ClientConfig, ClientError, CryptoError, Encryption, Event, Message,
    protocol::{GroupAction, MessageKind},
};
use courier_core::protocol::{Credentials, DeviceInfo, Platform};
use courier_tests::{TestCloud, WAIT, fresh_phone};
use std::path::PathBuf;
use std::time::Duration;

/// One device: its credentials, its crypto directory, its encrypting client and events.
struct Device {
    creds: Credentials,
    dir: PathBuf,
    client: Client,
    events: Events,
}

fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "courier-e2ee-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

impl Device {
    /// Connects an encrypting client for `creds` and waits until its keys are published.
    async fn open(cloud: &TestCloud, creds: Credentials) -> Device {
        Self::open_dir(cloud, creds, temp_dir("device")).await
    }

    /// The same, with its crypto state in `dir` (a device opened again).
    async fn open_dir(cloud: &TestCloud, creds: Credentials, dir: PathBuf) -> Device {
        let mut config = ClientConfig::new(&cloud.ws_url, &creds.api_key);
        config.encryption = Some(Encryption {
            dir: dir.clone(),
            user_id: creds.user_id.clone(),
            device_id: creds.device_id.clone(),
        });
        let (client, events) = Client::connect(config).await.expect("connected");
        client.keys_published().await;
        Device {
            creds,
            dir,
            client,
            events,
        }
    }

    fn user(&self) -> &str {
        &self.creds.user_id
    }

    /// The next message event with this id (other events skipped), decrypted.
    async fn message(&mut self, msg_id: &str) -> Message {
        let e = wait_for(&mut self.events, msg_id, |e| {
            matches!(e, Event::Message(m) if m.msg_id == msg_id)
                || matches!(e, Event::Undecryptable { message, .. } if message.msg_id == msg_id)
        })
        .await;
        match e {
            Event::Message(m) => m,
            other => panic!("{msg_id} could not be decrypted: {other:?}"),
        }
    }

    /// The undecryptable notice for this message id (other events skipped): its reason.
    async fn undecryptable(&mut self, msg_id: &str) -> String {
        let e = wait_for(&mut self.events, msg_id, |e| {
            matches!(e, Event::Message(m) if m.msg_id == msg_id)
                || matches!(e, Event::Undecryptable { message, .. } if message.msg_id == msg_id)
        })
        .await;
        match e {
            Event::Undecryptable { reason, .. } => reason,
            other => panic!("{msg_id} was accepted: {other:?}"),
        }
    }

    /// The crypto state on disk (after the client closed).
    fn crypto(&self) -> courier_client::DeviceCrypto {
        CryptoStore::load_or_create(&self.dir, &self.creds.user_id, &self.creds.device_id)
            .unwrap()
            .1
    }
}

async fn wait_for(events: &mut Events, what: &str, want: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(e) if want(&e) => return e,
                Some(_) => {}
                None => panic!("the client stopped while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

/// Links a companion device to the account whose primary `primary` is.
async fn link(cloud: &TestCloud, primary: &Client) -> Credentials {
    let accounts = cloud.accounts();
    let request = accounts
        .request_link(DeviceInfo {
            name: "laptop".into(),
            platform: Platform::Web,
        })
        .await
        .unwrap();
    primary.approve_device_link(&request.code).await.unwrap();
    tokio::time::timeout(
        WAIT,
        accounts.wait_for_link(&request.link_id, Duration::from_millis(100)),
    )
    .await
    .unwrap()
    .unwrap()
}

fn unique(text: &str) -> String {
    format!("{text} #{}", uuid::Uuid::new_v4().simple())
}

/// Scenario (a): Alice with a phone and a linked companion, Bob with a phone and a companion.
/// A message Bob sends is decrypted by both of Alice's devices and by Bob's other device;
/// Alice's answer from her companion by Bob's two devices and her phone. Returns the texts.
async fn direct_chat_across_linked_devices(cloud: &TestCloud) -> Vec<String> {
    let alice = cloud.sign_up().await;
    let bob = cloud.sign_up().await;
    let mut a1 = Device::open(cloud, alice).await;
    let mut a2 = Device::open(cloud, link(cloud, &a1.client).await).await;
    let mut b1 = Device::open(cloud, bob).await;
    let mut b2 = Device::open(cloud, link(cloud, &b1.client).await).await;

    let chat = b1
        .client
        .initiate_direct_chat(a1.user(), None)
        .await
        .unwrap()
        .session_id;
    let text = unique("the eagle lands at dawn");
    let sent = b1.client.send_text(&chat, &text).await.unwrap();
    for d in [&mut a1, &mut a2, &mut b2] {
        let m = d.message(&sent.msg_id).await;
        assert_eq!(m.text.as_deref(), Some(text.as_str()));
        assert!(!m.payload.contains("eagle"), "{}", m.payload);
    }

    let answer = unique("bring the blue umbrella");
    let sent = a2.client.send_text(&chat, &answer).await.unwrap();
    for d in [&mut a1, &mut b1, &mut b2] {
        let m = d.message(&sent.msg_id).await;
        assert_eq!(m.text.as_deref(), Some(answer.as_str()));
    }
    for d in [a1, a2, b1, b2] {
        d.client.close().await;
    }
    vec![text, answer]
}

/// Scenario (b): a group of three users; each member sends, every other member decrypts.
async fn group_of_three(cloud: &TestCloud) -> Vec<String> {
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(Device::open(cloud, cloud.sign_up().await).await);
    }
    let others: Vec<String> = members[1..].iter().map(|d| d.user().to_owned()).collect();
    let group = members[0]
        .client
        .create_group("Night owls", None, &others)
        .await
        .unwrap();
    let mut texts = Vec::new();
    for i in 0..3 {
        let text = unique(&format!("owl {i} hoots twice"));
        let sent = members[i].client.send_text(&group, &text).await.unwrap();
        for (j, d) in members.iter_mut().enumerate() {
            if j != i {
                let m = d.message(&sent.msg_id).await;
                assert_eq!(m.text.as_deref(), Some(text.as_str()), "member {j}");
            }
        }
        texts.push(text);
    }
    for d in members {
        d.client.close().await;
    }
    texts
}

/// Scenario (c): history on a new linked device. Alice's phone has a chat with Bob in its
/// history (and one message older than 90 days); she links a laptop and sends it the history
/// bundle; the laptop merges the recent messages, marked as synced. Returns the texts and the
/// bundle's uploads.
async fn history_to_a_new_companion(cloud: &TestCloud) -> (Vec<String>, Vec<String>) {
    let mut a1 = Device::open(cloud, cloud.sign_up().await).await;
    let b1 = Device::open(cloud, cloud.sign_up().await).await;
    let chat = b1
        .client
        .initiate_direct_chat(a1.user(), None)
        .await
        .unwrap()
        .session_id;
    let mut texts = Vec::new();
    let mut entries = Vec::new();
    for words in ["the heron waits by the weir", "meet at the old boathouse"] {
        let text = unique(words);
        let sent = b1.client.send_text(&chat, &text).await.unwrap();
        let m = a1.message(&sent.msg_id).await;
        assert_eq!(m.text.as_deref(), Some(text.as_str()));
        entries.push(HistoryEntry::shown(&m));
        texts.push(text);
    }
    let reply = unique("bring the brass lantern");
    let sent = a1.client.send_text(&chat, &reply).await.unwrap();
    entries.push(HistoryEntry::sent(
        &chat,
        &sent,
        a1.user(),
        &a1.creds.device_id,
        &reply,
    ));
    texts.push(reply);
    // What the phone recorded long ago stays on the phone.
    let mut old = entries[0].clone();
    old.msg_id = "m_from_last_summer".into();
    old.seq = 0;
    old.sent_at = "2025-06-01T12:00:00.000Z".into();
    old.text = Some(unique("the summer picnic plans"));
    entries.push(old.clone());
    HistoryStore::open(&a1.dir)
        .unwrap()
        .record(entries.clone())
        .unwrap();

    let mut a2 = Device::open(cloud, link(cloud, &a1.client).await).await;
    let phone_history = HistoryStore::open(&a1.dir).unwrap().load().unwrap();
    let sent = a1
        .client
        .send_history(&a2.creds.device_id, &phone_history, &Limits::default())
        .await
        .unwrap();
    assert_eq!((sent.messages, sent.chats), (3, 1));
    assert_eq!(sent.media_ids.len(), 1);

    let e = wait_for(&mut a2.events, "the history bundle", |e| {
        matches!(e, Event::HistorySynced { .. })
            || matches!(e, Event::Error(m) if m.contains("history"))
    })
    .await;
    let Event::HistorySynced {
        from_device,
        messages,
        chats,
        added,
    } = e
    else {
        panic!("the bundle was refused: {e:?}");
    };
    assert_eq!(from_device, a1.creds.device_id);
    assert_eq!((messages, chats, added), (3, 1, 3));
    a2.client.close().await;
    let laptop = HistoryStore::open(&a2.dir).unwrap().load().unwrap();
    let shown: Vec<&str> = laptop.iter().filter_map(|e| e.text.as_deref()).collect();
    assert_eq!(shown, texts, "the three recent messages, in order");
    assert!(laptop.iter().all(|e| e.synced && e.session_id == chat));
    assert!(!shown.contains(&old.text.as_deref().unwrap()));
    // The phone's own history is unchanged and not marked.
    let phone = HistoryStore::open(&a1.dir).unwrap().load().unwrap();
    assert_eq!(phone.len(), 4);
    assert!(phone.iter().all(|e| !e.synced));

    texts.push(old.text.unwrap());
    a1.client.close().await;
    b1.client.close().await;
    (texts, sent.media_ids)
}

#[tokio::test]
async fn a_new_companion_gets_the_phones_recent_history() {
    history_to_a_new_companion(TestCloud::shared()).await;
}

/// The next history event of a device: synced, or refused (other events skipped).
async fn history_event(d: &mut Device) -> Event {
    wait_for(&mut d.events, "a history event", |e| {
        matches!(e, Event::HistorySynced { .. })
            || matches!(e, Event::Error(m) if m.contains("history"))
    })
    .await
}

#[tokio::test]
async fn a_fake_or_tampered_history_bundle_is_refused_and_the_history_kept() {
    let cloud = TestCloud::shared();
    let mut a1 = Device::open(cloud, cloud.sign_up().await).await;
    let mut a2 = Device::open(cloud, link(cloud, &a1.client).await).await;
    let m1 = Device::open(cloud, cloud.sign_up().await).await;
    let a2_id = a2.creds.device_id.clone();
    // The laptop already has a message of its own.
    let own = HistoryEntry {
        session_id: "s_laptop".into(),
        msg_id: "m_laptop_own".into(),
        seq: 1,
        sender: a1.user().to_owned(),
        sender_device: a2_id.clone(),
        sent_at: "2026-12-01T12:00:00.000Z".into(),
        kind: "text".into(),
        text: Some(unique("written on the laptop")),
        payload: None,
        synced: false,
        expires_at: None,
    };
    HistoryStore::open(&a2.dir)
        .unwrap()
        .record([own.clone()])
        .unwrap();
    let fake_entry = HistoryEntry {
        text: Some(unique("mallory planted this")),
        msg_id: "m_planted".into(),
        ..own.clone()
    };

    // Mallory (another account) uploads a well-formed bundle naming Alice's account and offers
    // it to Alice's laptop over Olm (her own device's crypto state, a claimed one-time key).
    let mut sealed = history_bundle::seal(
        a1.user(),
        std::slice::from_ref(&fake_entry),
        chrono::Utc::now(),
        &Limits::default(),
    )
    .unwrap();
    m1.client.upload_bundle(&mut sealed).await.unwrap();
    let claimed = m1
        .client
        .claim_keys(a1.user(), Some(std::slice::from_ref(&a2_id)))
        .await
        .unwrap()
        .remove(0);
    m1.client.close().await;
    let (store, mut mallory) =
        CryptoStore::load_or_create(&m1.dir, m1.user(), &m1.creds.device_id).unwrap();
    let payload = mallory
        .encrypt_to_device(
            a1.user(),
            &a2_id,
            &claimed.identity_key,
            Some(&claimed.one_time_key.unwrap().key),
            &serde_json::to_vec(&sealed.offer()).unwrap(),
        )
        .unwrap();
    store.save(&mallory).unwrap();
    let (mallory_plain, _events) =
        Client::connect(ClientConfig::new(&cloud.ws_url, &m1.creds.api_key))
            .await
            .unwrap();
    let queued = mallory_plain
        .send_to_device(&[OutgoingDeviceMessage {
            user_id: a1.user().to_owned(),
            device_id: a2_id.clone(),
            payload,
        }])
        .await
        .unwrap();
    assert_eq!(
        queued.queued.len(),
        1,
        "the server relays it: only the laptop can judge it"
    );
    mallory_plain.close().await;

    // Alice's phone sends a bundle whose upload was altered on the way: its digest does not
    // match. (Her device's own state, with a plain connection for its requests.)
    let phone_entry = HistoryEntry {
        text: Some(unique("the phone's real message")),
        msg_id: "m_phone_real".into(),
        sender_device: a1.creds.device_id.clone(),
        ..own.clone()
    };
    a1.client.close().await;
    let (phone_plain, _events) =
        Client::connect(ClientConfig::new(&cloud.ws_url, &a1.creds.api_key))
            .await
            .unwrap();
    let phone = E2ee::open(&a1.dir, a1.user(), &a1.creds.device_id).unwrap();
    let mut sealed = history_bundle::seal(
        a1.user(),
        std::slice::from_ref(&phone_entry),
        chrono::Utc::now(),
        &Limits::default(),
    )
    .unwrap();
    for (ciphertext, _) in &mut sealed.parts {
        ciphertext[3] ^= 1;
    }
    phone_plain.upload_bundle(&mut sealed).await.unwrap();
    let offer = serde_json::to_vec(&sealed.offer()).unwrap();
    assert!(
        phone
            .send_to_own_device(&phone_plain, &a2_id, &offer)
            .await
            .unwrap()
    );

    // The laptop ignored Mallory's offer (no event at all) and refused the altered one.
    let e = history_event(&mut a2).await;
    assert!(
        matches!(&e, Event::Error(m) if m.contains("digest")),
        "{e:?}"
    );
    // Then the phone's real bundle is taken, beside what the laptop had.
    let sent = {
        // The phone's client again (its state on disk, now with the laptop's Olm session).
        drop(phone);
        phone_plain.close().await;
        a1 = Device::open_dir(cloud, a1.creds.clone(), a1.dir.clone()).await;
        a1.client
            .send_history(
                &a2_id,
                std::slice::from_ref(&phone_entry),
                &Limits::default(),
            )
            .await
            .unwrap()
    };
    assert_eq!(sent.messages, 1);
    let e = history_event(&mut a2).await;
    assert!(matches!(e, Event::HistorySynced { added: 1, .. }), "{e:?}");
    a2.client.close().await;
    let laptop = HistoryStore::open(&a2.dir).unwrap().load().unwrap();
    let texts: Vec<&str> = laptop.iter().filter_map(|e| e.text.as_deref()).collect();
    assert_eq!(
        texts,
        [
            own.text.as_deref().unwrap(),
            phone_entry.text.as_deref().unwrap()
        ],
        "the laptop's own message kept, the phone's added, nothing of Mallory's"
    );
    a1.client.close().await;
}

#[tokio::test]
async fn a_message_is_decrypted_by_every_device_of_both_users() {
    direct_chat_across_linked_devices(TestCloud::shared()).await;
}

#[tokio::test]
async fn a_group_of_three_decrypts_for_all_members() {
    group_of_three(TestCloud::shared()).await;
}

/// Every string in a DynamoDB item, flattened.
fn item_text(v: &aws_sdk_dynamodb::types::AttributeValue, out: &mut String) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) | A::N(s) => out.push_str(s),
        A::B(b) => out.push_str(&String::from_utf8_lossy(b.as_ref())),
        A::Ss(l) | A::Ns(l) => l.iter().for_each(|s| out.push_str(s)),
        A::Bs(l) => l
            .iter()
            .for_each(|b| out.push_str(&String::from_utf8_lossy(b.as_ref()))),
        A::L(l) => l.iter().for_each(|v| item_text(v, out)),
        A::M(m) => m.iter().for_each(|(k, v)| {
            out.push_str(k);
            item_text(v, out)
        }),
        _ => {}
    }
    out.push('\n');
}

/// Everything the local cloud holds or said: every item of its tables, every S3 object, its
/// push outbox, and every log file (its own, with the functions' output, and the emulators').
async fn everything_stored(cloud: &TestCloud) -> String {
    let db = cloud.dynamodb();
    let mut all = String::new();
    let tables = db.list_tables().send().await.unwrap();
    let ours: Vec<&String> = tables
        .table_names()
        .iter()
        .filter(|t| t.starts_with(&format!("{}-", cloud.resource_prefix)))
        .collect();
    assert!(ours.len() >= 5, "tables: {ours:?}");
    for table in ours {
        let mut pages = db.scan().table_name(table).into_paginator().send();
        while let Some(page) = pages.next().await {
            for item in page.unwrap().items() {
                for (k, v) in item {
                    all.push_str(k);
                    item_text(v, &mut all);
                }
            }
        }
    }
    all.push_str(&serde_json::to_string(&cloud.pushes().await.unwrap()).unwrap());
    // Every object of every bucket of the local S3.
    let s3 = cloud.s3();
    let buckets = s3.list_buckets().send().await.unwrap();
    for bucket in buckets.buckets() {
        let name = bucket.name().unwrap();
        let mut pages = s3.list_objects_v2().bucket(name).into_paginator().send();
        while let Some(page) = pages.next().await {
            for object in page.unwrap().contents() {
                let key = object.key().unwrap();
                let body = s3.get_object().bucket(name).key(key).send().await.unwrap();
                let bytes = body.body.collect().await.unwrap().into_bytes();
                all.push_str(key);
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    let state = cloud.state_dir.clone().expect("a local cloud");
    let mut dirs = vec![state];
    let mut logs = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
                logs += 1;
            }
        }
    }
    assert!(logs >= 1, "no log files found");
    all
}

#[tokio::test]
async fn the_server_never_sees_the_plaintext() {
    // A local cloud of its own (a parameter keeps it local even when the tests are pointed at
    // a deployed stack), so every table and log holds only this test's traffic.
    let cloud = &TestCloud::start(&["VerificationCodeTtlSeconds=900"]).expect("a local cloud");
    let mut texts = direct_chat_across_linked_devices(cloud).await;
    texts.extend(group_of_three(cloud).await);
    let (history, bundle) = history_to_a_new_companion(cloud).await;
    texts.extend(history);

    // A control: a client without encryption sends a canary, which the scan must find.
    let a = cloud.sign_up().await;
    let b = cloud.sign_up().await;
    let (plain, _events) = Client::connect(ClientConfig::new(&cloud.ws_url, &a.api_key))
        .await
        .unwrap();
    let chat = plain
        .initiate_direct_chat(&b.user_id, None)
        .await
        .unwrap()
        .session_id;
    let canary = unique("plaintext canary");
    // B is online for it: once B has it, its fan-out (the last one of the test; every earlier
    // message was received by its members above) has run.
    let receiver = courier_tests::connect(cloud, &b).await;
    plain.send_text(&chat, &canary).await.unwrap();
    let got = courier_tests::next(&receiver, "message").await;
    assert!(
        got["message"]["payload"]
            .as_str()
            .is_some_and(|p| courier_client::payload::decode(p).as_deref() == Some(&canary)),
        "{got}"
    );
    plain.close().await;
    receiver.close().await;

    let stored = everything_stored(cloud).await;
    assert!(
        stored.contains(&canary),
        "the scan finds a plaintext message"
    );
    assert!(
        stored.contains(r#""t":"megolm""#),
        "the encrypted messages are there, as ciphertext"
    );
    for id in &bundle {
        assert!(
            stored.contains(&format!("media/{id}")),
            "the history bundle's upload {id} is among what was scanned"
        );
    }
    for text in &texts {
        assert!(!stored.contains(text.as_str()), "plaintext found: {text}");
        // Not even the distinctive words alone.
        let words: Vec<&str> = text.split(' ').take(3).collect();
        assert!(!stored.contains(&words.join(" ")), "{words:?} found");
    }
}

#[tokio::test]
async fn a_device_linked_later_reads_only_what_follows() {
    let cloud = TestCloud::shared();
    let mut a1 = Device::open(cloud, cloud.sign_up().await).await;
    let b1 = Device::open(cloud, cloud.sign_up().await).await;
    let chat = b1
        .client
        .initiate_direct_chat(a1.user(), None)
        .await
        .unwrap()
        .session_id;
    let before = b1
        .client
        .send_text(&chat, "before the laptop")
        .await
        .unwrap();
    let before = a1.message(&before.msg_id).await;
    assert_eq!(before.text.as_deref(), Some("before the laptop"));

    // A companion linked after that message: its first sync reads it and cannot decrypt it.
    let mut a3 = Device::open(cloud, link(cloud, &a1.client).await).await;
    let e = wait_for(&mut a3.events, "the earlier message", |e| {
        matches!(e, Event::Undecryptable { message, .. } if message.msg_id == before.msg_id)
            || matches!(e, Event::Message(m) if m.msg_id == before.msg_id)
    })
    .await;
    assert!(matches!(e, Event::Undecryptable { .. }), "{e:?}");

    // What Bob sends next it reads.
    let after = b1
        .client
        .send_text(&chat, "after the laptop")
        .await
        .unwrap();
    assert_eq!(
        a3.message(&after.msg_id).await.text.as_deref(),
        Some("after the laptop")
    );
    // It now holds Bob's session, but from a later index: the earlier message stays unreadable.
    a3.client.close().await;
    let err = a3
        .crypto()
        .decrypt_message(&chat, b1.user(), &b1.creds.device_id, &before.payload)
        .unwrap_err();
    assert!(
        matches!(err, CryptoError::UnknownMessageIndex { .. }),
        "{err:?}"
    );
    a1.client.close().await;
    b1.client.close().await;
}

#[tokio::test]
async fn removed_devices_and_members_cannot_read_what_follows() {
    let cloud = TestCloud::shared();
    let mut a1 = Device::open(cloud, cloud.sign_up().await).await;
    let mut a2 = Device::open(cloud, link(cloud, &a1.client).await).await;
    let b1 = Device::open(cloud, cloud.sign_up().await).await;
    let mut c1 = Device::open(cloud, cloud.sign_up().await).await;

    // A direct chat: Alice removes her companion; Bob's next message is not readable by it.
    let chat = b1
        .client
        .initiate_direct_chat(a1.user(), None)
        .await
        .unwrap()
        .session_id;
    let m1 = b1.client.send_text(&chat, "both of you").await.unwrap();
    a1.message(&m1.msg_id).await;
    let m1_payload = a2.message(&m1.msg_id).await.payload;
    a2.client.close().await;
    a1.client.remove_device(&a2.creds.device_id).await.unwrap();
    let m2 = b1.client.send_text(&chat, "only the phone").await.unwrap();
    let m2 = a1.message(&m2.msg_id).await;
    assert_eq!(m2.text.as_deref(), Some("only the phone"));
    let mut removed = a2.crypto();
    assert_eq!(
        removed.decrypt_message(&chat, b1.user(), &b1.creds.device_id, &m1_payload),
        Ok(b"both of you".to_vec()),
        "the control: it read the earlier one"
    );
    let err = removed
        .decrypt_message(&chat, b1.user(), &b1.creds.device_id, &m2.payload)
        .unwrap_err();
    assert!(matches!(err, CryptoError::UnknownSession { .. }), "{err:?}");

    // A group: Alice removes Carol; Bob's next message is not readable by Carol's device.
    let group = a1
        .client
        .create_group(
            "Book club",
            None,
            &[b1.user().to_owned(), c1.user().to_owned()],
        )
        .await
        .unwrap();
    let g1 = b1.client.send_text(&group, "chapter one").await.unwrap();
    let g1_payload = c1.message(&g1.msg_id).await.payload;
    a1.message(&g1.msg_id).await;
    a1.client
        .group_member(GroupAction::Remove, &group, c1.user())
        .await
        .unwrap();
    let g2 = b1.client.send_text(&group, "chapter two").await.unwrap();
    let g2 = a1.message(&g2.msg_id).await;
    assert_eq!(g2.text.as_deref(), Some("chapter two"));
    c1.client.close().await;
    let mut carol = c1.crypto();
    assert_eq!(
        carol.decrypt_message(&group, b1.user(), &b1.creds.device_id, &g1_payload),
        Ok(b"chapter one".to_vec())
    );
    let err = carol
        .decrypt_message(&group, b1.user(), &b1.creds.device_id, &g2.payload)
        .unwrap_err();
    assert!(matches!(err, CryptoError::UnknownSession { .. }), "{err:?}");
    a1.client.close().await;
    b1.client.close().await;
}

#[tokio::test]
async fn a_changed_identity_is_reported_and_not_accepted_silently() {
    let cloud = TestCloud::shared();
    let phone = fresh_phone();
    let accounts = cloud.accounts();
    accounts.register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let device = || DeviceInfo {
        name: "phone".into(),
        platform: Platform::Ios,
    };
    let bob = accounts.verify(&phone, &code, device()).await.unwrap();
    let mut a1 = Device::open(cloud, cloud.sign_up().await).await;
    let mut b1 = Device::open(cloud, bob).await;
    let chat = a1
        .client
        .initiate_direct_chat(b1.user(), None)
        .await
        .unwrap()
        .session_id;
    let hi = a1.client.send_text(&chat, "hi bob").await.unwrap();
    b1.message(&hi.msg_id).await;
    let back = b1.client.send_text(&chat, "hi alice").await.unwrap();
    a1.message(&back.msg_id).await;
    let before = a1.client.safety(b1.user()).await.unwrap();
    assert_eq!(
        before.safety_number,
        b1.client.safety(a1.user()).await.unwrap().safety_number
    );
    b1.client.close().await;

    // Bob's number is registered again on a new phone: same user, a new device, new keys.
    accounts.register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let bob_again = accounts.verify(&phone, &code, device()).await.unwrap();
    assert_eq!(bob_again.user_id, b1.creds.user_id);
    let mut b9 = Device::open(cloud, bob_again).await;

    // Alice's send is refused before anything goes out.
    let err = a1
        .client
        .send_text(&chat, "are you still you?")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Crypto(CryptoError::IdentityChanged { user, .. }) if user == b1.user()),
        "{err:?}"
    );
    assert!(!a1.client.is_trusted(b1.user()).await.unwrap());
    let after = a1.client.safety(b1.user()).await.unwrap();
    assert_ne!(after.safety_number, before.safety_number);

    // The new phone writes: Alice is told, and the message is not shown as Bob's.
    let new = b9
        .client
        .send_text(&chat, "new phone, who dis")
        .await
        .unwrap();
    let e = wait_for(&mut a1.events, "the identity change", |e| {
        matches!(e, Event::IdentityChanged { .. })
            || matches!(e, Event::Message(m) if m.msg_id == new.msg_id)
    })
    .await;
    assert!(
        matches!(&e, Event::IdentityChanged { user_id, .. } if user_id == b1.user()),
        "{e:?}"
    );
    let e = wait_for(&mut a1.events, "the refused message", |e| {
        matches!(e, Event::Undecryptable { message, .. } if message.msg_id == new.msg_id)
            || matches!(e, Event::Message(m) if m.msg_id == new.msg_id)
    })
    .await;
    assert!(matches!(e, Event::Undecryptable { .. }), "{e:?}");

    // Alice compares safety numbers and accepts: the held message is shown, sends work again.
    assert_eq!(
        after.safety_number,
        b9.client.safety(a1.user()).await.unwrap().safety_number
    );
    assert_eq!(a1.client.accept_identity(b1.user()).await.unwrap(), 1);
    let m = a1.message(&new.msg_id).await;
    assert_eq!(m.text.as_deref(), Some("new phone, who dis"));
    let ok = a1.client.send_text(&chat, "welcome back").await.unwrap();
    assert_eq!(
        b9.message(&ok.msg_id).await.text.as_deref(),
        Some("welcome back")
    );
    a1.client.close().await;
    b9.client.close().await;
}

/// The issue's group scenario: four users with a phone and a laptop each. Members send from
/// either device in turn; every device gets every message meant for it (all but the sending
/// device's own), decrypted, once and in the group's order.
#[tokio::test]
async fn a_group_of_four_users_with_two_devices_each_reads_everything_in_order() {
    let cloud = TestCloud::shared();
    // devices[2u] is user u's phone, devices[2u + 1] its linked laptop.
    let mut devices: Vec<Device> = Vec::new();
    for _ in 0..4 {
        let phone = Device::open(cloud, cloud.sign_up().await).await;
        let laptop = Device::open(cloud, link(cloud, &phone.client).await).await;
        devices.push(phone);
        devices.push(laptop);
    }
    let others: Vec<String> = (1..4).map(|u| devices[2 * u].user().to_owned()).collect();
    let group = devices[0]
        .client
        .create_group("Quartet", None, &others)
        .await
        .unwrap();
    let senders = [0usize, 3, 5, 6, 1, 0, 7];
    let mut sent = Vec::new();
    for (i, &d) in senders.iter().enumerate() {
        let text = unique(&format!("quartet bar {i}"));
        let s = devices[d].client.send_text(&group, &text).await.unwrap();
        sent.push((d, s.msg_id, s.seq, text));
    }
    for (k, device) in devices.iter_mut().enumerate() {
        let want: Vec<(String, String)> = sent
            .iter()
            .filter(|(d, ..)| *d != k)
            .map(|(_, id, _, text)| (id.clone(), text.clone()))
            .collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let e = wait_for(&mut device.events, "the group's messages", |e| {
                matches!(e, Event::Message(m) if m.session_id == group && m.text.is_some())
                    || matches!(e, Event::Undecryptable { .. })
            })
            .await;
            match e {
                Event::Message(m) => got.push((m.msg_id, m.text.unwrap())),
                other => panic!("device {k}: {other:?}"),
            }
        }
        assert_eq!(got, want, "device {k}");
    }
    // The session order is the order they were sent in.
    assert!(sent.windows(2).all(|w| w[0].2 < w[1].2));
    for d in devices {
        d.client.close().await;
    }
}

/// What a malicious server (or a member's own second client) can put in a chat: a tampered
/// ciphertext, a stored message sent again as a new one, and a message of a Megolm session
/// whose key never came. Each is refused with its reason, and the chat goes on.
#[tokio::test]
async fn tampered_replayed_and_keyless_messages_are_refused_and_the_client_keeps_working() {
    let cloud = TestCloud::shared();
    let mut a1 = Device::open(cloud, cloud.sign_up().await).await;
    let b1 = Device::open(cloud, cloud.sign_up().await).await;
    let chat = b1
        .client
        .initiate_direct_chat(a1.user(), None)
        .await
        .unwrap()
        .session_id;
    let first = b1.client.send_text(&chat, "the real one").await.unwrap();
    let original = a1.message(&first.msg_id).await;
    assert_eq!(original.text.as_deref(), Some("the real one"));

    // Bob's own key, on a client that sends payloads as given.
    let (raw, _raw_events) = Client::connect(ClientConfig::new(&cloud.ws_url, &b1.creds.api_key))
        .await
        .unwrap();

    // A tampered ciphertext: one base64 character in the middle of the Megolm message.
    let mut envelope: serde_json::Value = serde_json::from_str(&original.payload).unwrap();
    let body = envelope["body"].as_str().unwrap().to_owned();
    let mid = body.len() / 2;
    let swapped = if &body[mid..=mid] == "A" { "B" } else { "A" };
    envelope["body"] = format!("{}{swapped}{}", &body[..mid], &body[mid + 1..]).into();
    let tampered = raw
        .send_message(&chat, MessageKind::Text, &envelope.to_string())
        .await
        .unwrap();
    assert_eq!(
        a1.undecryptable(&tampered.msg_id).await,
        CryptoError::Tampered.to_string()
    );

    // The first message's ciphertext again, as a new message.
    let replayed = raw
        .send_message(&chat, MessageKind::Text, &original.payload)
        .await
        .unwrap();
    let reason = a1.undecryptable(&replayed.msg_id).await;
    assert!(reason.contains("(replay)"), "{reason}");

    // A Megolm session nobody shared a key for (made with Bob's ids, not Bob's keys).
    let mut stranger = courier_client::DeviceCrypto::new(b1.user(), &b1.creds.device_id);
    let keyless = stranger.encrypt_message(&chat, b"from nowhere");
    let keyless = raw
        .send_message(&chat, MessageKind::Text, &keyless)
        .await
        .unwrap();
    assert_eq!(
        a1.undecryptable(&keyless.msg_id).await,
        "its room key has not arrived"
    );

    // Not text at all.
    let plain = raw
        .send_message(&chat, MessageKind::Text, "hello in the clear")
        .await
        .unwrap();
    assert_eq!(
        a1.undecryptable(&plain.msg_id).await,
        "not end-to-end encrypted"
    );

    // And the chat goes on, both ways.
    let next = b1.client.send_text(&chat, "still here").await.unwrap();
    assert_eq!(
        a1.message(&next.msg_id).await.text.as_deref(),
        Some("still here")
    );
    let back = a1.client.send_text(&chat, "me too").await.unwrap();
    assert!(back.seq > next.seq);
    raw.close().await;
    a1.client.close().await;
    b1.client.close().await;
}
