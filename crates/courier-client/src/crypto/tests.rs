//! Scenarios across devices: what a user of each device would check. The server is simulated
//! by handing payloads from one `DeviceCrypto` to another with the ids the server would attach.

use super::*;

pub(crate) fn device(user: &str, device: &str) -> DeviceCrypto {
    DeviceCrypto::new(user, device)
}

/// `uploadKeys` + `claimKeys` in one: one fresh one-time key of `target`, signature checked.
fn claim_one_time_key(target: &mut DeviceCrypto) -> String {
    let key = target.generate_one_time_keys(1).remove(0);
    verify_one_time_key(&target.signing_key(), &key.key, &key.signature).unwrap();
    key.key
}

/// `from` sends `plaintext` to `to` over Olm (claiming a one-time key only when needed);
/// returns what `to` decrypted.
pub(crate) fn send_olm(
    from: &mut DeviceCrypto,
    to: &mut DeviceCrypto,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let payload = olm_payload(from, to, plaintext);
    to.decrypt_from_device(
        from.user_id(),
        from.device_id(),
        &from.identity_key(),
        &payload,
    )
}

fn olm_payload(from: &mut DeviceCrypto, to: &mut DeviceCrypto, plaintext: &[u8]) -> String {
    let otk = (!from.has_olm_session(&to.identity_key())).then(|| claim_one_time_key(to));
    from.encrypt_to_device(
        to.user_id(),
        to.device_id(),
        &to.identity_key(),
        otk.as_deref(),
        plaintext,
    )
    .unwrap()
}

fn olm_type(payload: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap();
    v["type"].as_u64().unwrap()
}

/// A chat session, as the server names it.
pub(crate) struct Chat {
    id: String,
}

impl Chat {
    pub(crate) fn new(id: &str) -> Self {
        Self { id: id.to_owned() }
    }

    /// `from` shares its current room key of this chat with `to` over Olm.
    pub(crate) fn share_key(&self, from: &mut DeviceCrypto, to: &mut DeviceCrypto) {
        let room_key = from.room_key(&self.id);
        let payload = olm_payload(from, to, room_key.as_bytes());
        let received = to
            .receive_to_device(
                from.user_id(),
                from.device_id(),
                &from.identity_key(),
                &payload,
            )
            .unwrap();
        assert_eq!(
            received,
            ToDeviceMessage::RoomKey {
                chat_session_id: self.id.clone(),
                session_id: from.outbound_session_info(&self.id).unwrap().0,
            }
        );
    }

    /// `reader` decrypts a message of this chat that the server says `from` (user, device) sent.
    pub(crate) fn read(
        &self,
        reader: &mut DeviceCrypto,
        from: (&str, &str),
        payload: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        reader.decrypt_message(&self.id, from.0, from.1, payload)
    }
}

/// Flips one bit of the decoded `body` of an envelope, `from_end` bytes before its end.
fn tamper(payload: &str, from_end: usize) -> String {
    let mut v: serde_json::Value = serde_json::from_str(payload).unwrap();
    let mut body = vodozemac::base64_decode(v["body"].as_str().unwrap()).unwrap();
    let i = body.len() - 1 - from_end;
    body[i] ^= 0x01;
    v["body"] = vodozemac::base64_encode(&body).into();
    v.to_string()
}

fn with_field(payload: &str, field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(payload).unwrap();
    v[field] = value.into();
    v.to_string()
}

#[test]
fn olm_first_message_creates_the_session_and_later_ones_reuse_it_both_ways() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let bob_otk = claim_one_time_key(&mut bob);
    assert!(!alice.has_olm_session(&bob.identity_key()));

    // No session and no one-time key: refused, and Alice can still go on.
    assert_eq!(
        alice.encrypt_to_device("bob", "b1", &bob.identity_key(), None, b"x"),
        Err(CryptoError::NoOlmSession {
            user: "bob".into(),
            device: "b1".into()
        })
    );

    let first = alice
        .encrypt_to_device(
            "bob",
            "b1",
            &bob.identity_key(),
            Some(&bob_otk),
            b"hello bob",
        )
        .unwrap();
    assert_eq!(
        olm_type(&first),
        0,
        "the first message is a pre-key message"
    );
    assert_eq!(envelope_kind(&first), Ok(EnvelopeKind::Olm));
    assert!(!first.contains("hello"));
    // Until Bob answers, Alice's messages stay pre-key messages of the same session.
    let second = alice
        .encrypt_to_device("bob", "b1", &bob.identity_key(), None, b"still me")
        .unwrap();
    assert_eq!(olm_type(&second), 0);

    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &first)
            .unwrap(),
        b"hello bob"
    );
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &second)
            .unwrap(),
        b"still me"
    );
    // Bob answers on the session Alice created, without claiming her keys.
    assert!(bob.has_olm_session(&alice.identity_key()));
    let reply = bob
        .encrypt_to_device("alice", "a1", &alice.identity_key(), None, b"hi alice")
        .unwrap();
    assert_eq!(
        olm_type(&reply),
        1,
        "an established session sends normal messages"
    );
    assert_eq!(
        alice
            .decrypt_from_device("bob", "b1", &bob.identity_key(), &reply)
            .unwrap(),
        b"hi alice"
    );
    let third = alice
        .encrypt_to_device("bob", "b1", &bob.identity_key(), None, b"great")
        .unwrap();
    assert_eq!(olm_type(&third), 1);
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &third)
            .unwrap(),
        b"great"
    );

    // Both pinned each other.
    assert_eq!(
        bob.trust().pinned("alice", "a1"),
        Some(alice.identity_key().as_str())
    );
    assert_eq!(
        alice.trust().pinned("bob", "b1"),
        Some(bob.identity_key().as_str())
    );
}

#[test]
fn one_time_keys_are_signed_handed_out_once_and_the_fallback_key_works_when_they_run_out() {
    let mut bob = device("bob", "b1");
    let keys = bob.generate_one_time_keys(5);
    assert_eq!(keys.len(), 5);
    let mut ids: Vec<_> = keys.iter().map(|k| k.key_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    for k in &keys {
        verify_one_time_key(&bob.signing_key(), &k.key, &k.signature).unwrap();
    }
    // A signature over another key, or by another device, does not verify.
    assert_eq!(
        verify_one_time_key(&bob.signing_key(), &keys[0].key, &keys[1].signature),
        Err(CryptoError::BadSignature)
    );
    let mallory = device("mallory", "m1");
    assert_eq!(
        verify_one_time_key(&mallory.signing_key(), &keys[0].key, &keys[0].signature),
        Err(CryptoError::BadSignature)
    );
    // Published keys are not handed out again.
    let more = bob.generate_one_time_keys(2);
    assert_eq!(more.len(), 2);
    assert!(more.iter().all(|k| !keys.contains(k)));
    let json = serde_json::to_value(&more[0]).unwrap();
    assert!(json.get("keyId").is_some() && json.get("key").is_some());

    // A one-time key creates one session only: a second pre-key message with it is refused.
    let mut alice = device("alice", "a1");
    let mut carol = device("carol", "c1");
    let p1 = alice
        .encrypt_to_device("bob", "b1", &bob.identity_key(), Some(&keys[0].key), b"1")
        .unwrap();
    let p2 = carol
        .encrypt_to_device("bob", "b1", &bob.identity_key(), Some(&keys[0].key), b"2")
        .unwrap();
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &p1)
            .unwrap(),
        b"1"
    );
    assert!(matches!(
        bob.decrypt_from_device("carol", "c1", &carol.identity_key(), &p2),
        Err(CryptoError::OlmSession(_))
    ));

    // The fallback key serves several senders.
    let fallback = bob.generate_fallback_key();
    verify_one_time_key(&bob.signing_key(), &fallback.key, &fallback.signature).unwrap();
    let mut dave = device("dave", "d1");
    let mut erin = device("erin", "e1");
    for sender in [&mut dave, &mut erin] {
        let p = sender
            .encrypt_to_device("bob", "b1", &bob.identity_key(), Some(&fallback.key), b"fb")
            .unwrap();
        let (user, dev, key) = (
            sender.user_id().to_owned(),
            sender.device_id().to_owned(),
            sender.identity_key(),
        );
        assert_eq!(
            bob.decrypt_from_device(&user, &dev, &key, &p).unwrap(),
            b"fb"
        );
    }
}

#[test]
fn alice_with_two_devices_and_bob_exchange_over_olm_then_megolm() {
    let mut a1 = device("alice", "a1");
    let mut a2 = device("alice", "a2");
    let mut b1 = device("bob", "b1");
    let chat = Chat::new("direct-alice-bob");

    // a1 shares its room key with every other device of the chat, its own a2 included.
    chat.share_key(&mut a1, &mut a2);
    chat.share_key(&mut a1, &mut b1);
    let sent: Vec<String> = (0..3)
        .map(|i| a1.encrypt_message(&chat.id, format!("alice says {i}").as_bytes()))
        .collect();
    for payload in &sent {
        assert_eq!(envelope_kind(payload), Ok(EnvelopeKind::Megolm));
        assert!(!payload.contains("alice says"));
    }
    for reader in [&mut a2, &mut b1] {
        for (i, payload) in sent.iter().enumerate() {
            assert_eq!(
                chat.read(reader, ("alice", "a1"), payload).unwrap(),
                format!("alice says {i}").as_bytes()
            );
        }
    }
    // The sender reads its own messages back (history re-read after a reconnect).
    assert_eq!(
        chat.read(&mut a1, ("alice", "a1"), &sent[2]).unwrap(),
        b"alice says 2"
    );

    // Bob answers with his own Megolm session, shared over Olm with both of Alice's devices.
    chat.share_key(&mut b1, &mut a1);
    chat.share_key(&mut b1, &mut a2);
    let reply = b1.encrypt_message(&chat.id, b"bob answers");
    for reader in [&mut a1, &mut a2] {
        assert_eq!(
            chat.read(reader, ("bob", "b1"), &reply).unwrap(),
            b"bob answers"
        );
    }
    // a2 writes too; every device reads everyone, in order.
    chat.share_key(&mut a2, &mut a1);
    chat.share_key(&mut a2, &mut b1);
    let from_a2: Vec<String> = ["x", "y"]
        .iter()
        .map(|m| a2.encrypt_message(&chat.id, m.as_bytes()))
        .collect();
    for reader in [&mut a1, &mut b1] {
        assert_eq!(
            chat.read(reader, ("alice", "a2"), &from_a2[0]).unwrap(),
            b"x"
        );
        assert_eq!(
            chat.read(reader, ("alice", "a2"), &from_a2[1]).unwrap(),
            b"y"
        );
    }

    // Olm between b1 and a1 runs both ways on the sessions set up for the room keys.
    assert_eq!(
        send_olm(&mut b1, &mut a1, b"to-device").unwrap(),
        b"to-device"
    );
    assert_eq!(
        send_olm(&mut a1, &mut b1, b"and back").unwrap(),
        b"and back"
    );
}

#[test]
fn tampered_messages_are_rejected_and_the_sessions_keep_working() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let chat = Chat::new("chat");

    // Olm pre-key message with a flipped bit in its MAC, then in its ciphertext.
    let otk = claim_one_time_key(&mut bob);
    let olm = alice
        .encrypt_to_device("bob", "b1", &bob.identity_key(), Some(&otk), b"olm text")
        .unwrap();
    for from_end in [0, 12] {
        assert_eq!(
            bob.decrypt_from_device(
                "alice",
                "a1",
                &alice.identity_key(),
                &tamper(&olm, from_end)
            ),
            Err(CryptoError::Tampered)
        );
    }
    // The genuine message still decrypts: the one-time key was not used up by the forgeries.
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &olm)
            .unwrap(),
        b"olm text"
    );
    // Tampered normal message on the established session.
    let reply = bob
        .encrypt_to_device("alice", "a1", &alice.identity_key(), None, b"reply")
        .unwrap();
    assert_eq!(
        alice.decrypt_from_device("bob", "b1", &bob.identity_key(), &tamper(&reply, 3)),
        Err(CryptoError::Tampered)
    );
    assert_eq!(
        alice
            .decrypt_from_device("bob", "b1", &bob.identity_key(), &reply)
            .unwrap(),
        b"reply"
    );

    // Megolm: a flipped bit in the signature, in the MAC, in the ciphertext.
    chat.share_key(&mut alice, &mut bob);
    let message = alice.encrypt_message(&chat.id, b"group text");
    for from_end in [0, 64, 80] {
        assert_eq!(
            chat.read(&mut bob, ("alice", "a1"), &tamper(&message, from_end)),
            Err(CryptoError::Tampered)
        );
    }
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &message).unwrap(),
        b"group text"
    );
    let next = alice.encrypt_message(&chat.id, b"next");
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &next).unwrap(),
        b"next"
    );
}

#[test]
fn a_different_message_at_a_used_index_is_a_replay_but_the_same_message_again_is_fine() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let chat = Chat::new("chat");
    chat.share_key(&mut alice, &mut bob);

    // Alice's device is restored from an old copy of its state (or is malicious): it signs a
    // second, different message with the same ratchet index.
    let snapshot = alice.outbound_mut(&chat.id).unwrap().pickle();
    let original = alice.encrypt_message(&chat.id, b"pay 10 to carol");
    *alice.outbound_mut(&chat.id).unwrap() = vodozemac::megolm::GroupSession::from_pickle(snapshot);
    let forged = alice.encrypt_message(&chat.id, b"pay 1000 to mallory");
    assert_ne!(original, forged);

    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &original).unwrap(),
        b"pay 10 to carol"
    );
    let session_id = alice.outbound_session_info(&chat.id).unwrap().0;
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &forged),
        Err(CryptoError::Replay {
            session_id,
            index: 0
        })
    );
    // A re-sync that reads the same stored message again is allowed.
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &original).unwrap(),
        b"pay 10 to carol"
    );
    // And the session goes on.
    let next = alice.encrypt_message(&chat.id, b"next");
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &next).unwrap(),
        b"next"
    );
}

#[test]
fn the_same_ciphertext_as_another_message_is_a_replay_even_after_a_restart() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let chat = Chat::new("chat");
    chat.share_key(&mut alice, &mut bob);
    let yes = alice.encrypt_message(&chat.id, b"yes");
    let m1 = "chat.1";
    assert_eq!(
        bob.decrypt_message_as(&chat.id, "alice", "a1", Some(m1), &yes)
            .unwrap(),
        b"yes"
    );
    // Read again as the same message (a re-sync): fine.
    assert_eq!(
        bob.decrypt_message_as(&chat.id, "alice", "a1", Some(m1), &yes)
            .unwrap(),
        b"yes"
    );
    // The server (or a member who copied it) sends the same ciphertext again as message 2.
    let session_id = alice.outbound_session_info(&chat.id).unwrap().0;
    let replay = Err(CryptoError::Replay {
        session_id: session_id.clone(),
        index: 0,
    });
    assert_eq!(
        bob.decrypt_message_as(&chat.id, "alice", "a1", Some("chat.2"), &yes),
        replay
    );
    // Still refused once Bob's state was saved and loaded again.
    let mut bob = DeviceCrypto::from_snapshot(bob.to_snapshot());
    assert_eq!(
        bob.decrypt_message_as(&chat.id, "alice", "a1", Some("chat.3"), &yes),
        replay
    );
    assert_eq!(
        bob.decrypt_message_as(&chat.id, "alice", "a1", Some(m1), &yes)
            .unwrap(),
        b"yes"
    );
    let next = alice.encrypt_message(&chat.id, b"next");
    assert_eq!(
        bob.decrypt_message_as(&chat.id, "alice", "a1", Some("chat.4"), &next)
            .unwrap(),
        b"next"
    );
}

#[test]
fn a_replayed_olm_message_is_rejected() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let first = olm_payload(&mut alice, &mut bob, b"once");
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &first)
            .unwrap(),
        b"once"
    );
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &first),
        Err(CryptoError::OlmReplay)
    );
    send_olm(&mut bob, &mut alice, b"ack").unwrap();
    let normal = olm_payload(&mut alice, &mut bob, b"normal once");
    assert_eq!(olm_type(&normal), 1);
    bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &normal)
        .unwrap();
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &alice.identity_key(), &normal),
        Err(CryptoError::OlmReplay)
    );
    assert_eq!(
        send_olm(&mut alice, &mut bob, b"still fine").unwrap(),
        b"still fine"
    );
}

#[test]
fn an_unknown_megolm_session_names_the_session_to_ask_for_and_decrypts_once_the_key_arrives() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let chat = Chat::new("chat");
    let message = alice.encrypt_message(&chat.id, b"early");
    let session_id = alice.outbound_session_info(&chat.id).unwrap().0;

    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &message),
        Err(CryptoError::UnknownSession {
            chat_session_id: chat.id.clone(),
            session_id: session_id.clone(),
            sender_user: "alice".into(),
            sender_device: "a1".into(),
        })
    );
    // Alice re-shares; the key is at index 1 now, so the early message stays unreadable but
    // the session is known.
    chat.share_key(&mut alice, &mut bob);
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &message),
        Err(CryptoError::UnknownMessageIndex {
            session_id,
            first_known_index: 1,
            index: 0
        })
    );
    let later = alice.encrypt_message(&chat.id, b"later");
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &later).unwrap(),
        b"later"
    );
}

#[test]
fn malformed_envelopes_are_rejected_and_nothing_breaks() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let chat = Chat::new("chat");
    chat.share_key(&mut alice, &mut bob);
    let megolm = alice.encrypt_message(&chat.id, b"ok");
    let olm = olm_payload(&mut alice, &mut bob, b"ok");
    let ak = alice.identity_key();

    let bad_megolm = [
        "".to_owned(),
        "hello".to_owned(),
        "{}".to_owned(),
        with_field(&megolm, "t", "olm"),
        megolm.replace(r#""v":1"#, r#""v":2"#),
        with_field(&megolm, "body", "%%%"),
        with_field(&megolm, "body", "AAAA"),
        olm.clone(),
    ];
    for payload in &bad_megolm {
        assert!(
            matches!(
                chat.read(&mut bob, ("alice", "a1"), payload),
                Err(CryptoError::Malformed(_))
            ),
            "{payload}"
        );
    }
    let bad_olm = [
        "[1,2]".to_owned(),
        megolm.clone(),
        with_field(&olm, "body", "!!"),
        with_field(&olm, "body", "AAAA"),
        olm.replace(r#""type":0"#, r#""type":7"#),
    ];
    for payload in &bad_olm {
        assert!(
            matches!(
                bob.decrypt_from_device("alice", "a1", &ak, payload),
                Err(CryptoError::Malformed(_))
            ),
            "{payload}"
        );
    }
    assert!(matches!(
        envelope_kind("nope"),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        bob.decrypt_from_device("alice", "a1", "not a key", &olm),
        Err(CryptoError::InvalidKey(_))
    ));

    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &megolm).unwrap(),
        b"ok"
    );
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &ak, &olm).unwrap(),
        b"ok"
    );
}

#[test]
fn messages_with_a_wrong_sender_or_sender_key_are_rejected() {
    let mut a1 = device("alice", "a1");
    let mut a2 = device("alice", "a2");
    let mut bob = device("bob", "b1");
    let mallory = device("mallory", "m1");
    let chat = Chat::new("chat");
    let (a1_key, a2_key) = (a1.identity_key(), a2.identity_key());

    // Olm: the envelope's key is not the one the server lists for the sender.
    let olm = olm_payload(&mut a1, &mut bob, b"from a1");
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &mallory.identity_key(), &olm),
        Err(CryptoError::WrongSenderKey {
            expected: mallory.identity_key(),
            got: a1_key.clone()
        })
    );
    // The server relabels a1's message as coming from a2 (with a1's key, as a2 is not yet
    // pinned): the sealed sender inside says otherwise.
    assert!(matches!(
        bob.decrypt_from_device("alice", "a2", &a1_key, &olm),
        Err(CryptoError::WrongSender(_))
    ));
    assert_eq!(
        bob.trust().pinned("alice", "a2"),
        None,
        "nothing pinned on failure"
    );
    assert_eq!(bob.trust().pinned("alice", "a1"), None);
    // The relabelled message was consumed; the session it started serves the next one.
    assert_eq!(
        bob.decrypt_from_device("alice", "a1", &a1_key, &olm),
        Err(CryptoError::OlmReplay)
    );
    assert_eq!(send_olm(&mut a1, &mut bob, b"again").unwrap(), b"again");

    // Megolm: a1's session is bound to a1 and a1's key.
    chat.share_key(&mut a1, &mut bob);
    chat.share_key(&mut a2, &mut bob);
    let message = a1.encrypt_message(&chat.id, b"group");
    assert!(matches!(
        chat.read(&mut bob, ("alice", "a2"), &message),
        Err(CryptoError::WrongSender(_))
    ));
    assert!(matches!(
        chat.read(&mut bob, ("mallory", "m1"), &message),
        Err(CryptoError::WrongSender(_))
    ));
    assert_eq!(
        chat.read(
            &mut bob,
            ("alice", "a1"),
            &with_field(&message, "sk", &a2_key)
        ),
        Err(CryptoError::WrongSenderKey {
            expected: a1_key.clone(),
            got: a2_key.clone()
        })
    );
    // a2 cannot re-share a1's session as its own.
    let stolen = a1.room_key(&chat.id);
    let sid = a1.outbound_session_info(&chat.id).unwrap().0;
    assert!(matches!(
        bob.import_room_key("alice", "a2", &chat.id, stolen.as_bytes()),
        Err(CryptoError::WrongSender(_))
    ));
    assert_eq!(
        bob.import_room_key("alice", "a1", &chat.id, stolen.as_bytes()),
        Ok(sid)
    );
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &message).unwrap(),
        b"group"
    );
}

#[test]
fn room_keys_are_bound_to_their_chat_and_to_devices_that_spoke_olm() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let chat = Chat::new("chat-1");
    let room_key = alice.room_key(&chat.id);

    // Bob never got an Olm message from Alice: a room key "from her" is refused.
    assert_eq!(
        bob.import_room_key("alice", "a1", &chat.id, room_key.as_bytes()),
        Err(CryptoError::UntrustedDevice {
            user: "alice".into(),
            device: "a1".into()
        })
    );
    send_olm(&mut alice, &mut bob, b"hi").unwrap();
    // A key for chat-1 offered as a key for chat-2.
    assert!(matches!(
        bob.import_room_key("alice", "a1", "chat-2", room_key.as_bytes()),
        Err(CryptoError::WrongChat { .. })
    ));
    // A key whose signature does not verify.
    let mut forged: serde_json::Value = serde_json::from_str(&room_key).unwrap();
    let mut key = vodozemac::base64_decode(forged["key"].as_str().unwrap()).unwrap();
    key[10] ^= 1;
    forged["key"] = vodozemac::base64_encode(&key).into();
    assert!(matches!(
        bob.import_room_key("alice", "a1", &chat.id, forged.to_string().as_bytes()),
        Err(CryptoError::Malformed(_))
    ));
    bob.import_room_key("alice", "a1", &chat.id, room_key.as_bytes())
        .unwrap();

    // A chat-1 message replayed by the server into chat-2.
    let message = alice.encrypt_message(&chat.id, b"for chat-1");
    assert!(matches!(
        bob.decrypt_message("chat-2", "alice", "a1", &message),
        Err(CryptoError::WrongChat { .. })
    ));
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &message).unwrap(),
        b"for chat-1"
    );

    // A to-device message that is not a room key is handed to the application.
    let payload = olm_payload(&mut alice, &mut bob, br#"{"t":"call","chat":"x"}"#);
    assert_eq!(
        bob.receive_to_device("alice", "a1", &alice.identity_key(), &payload),
        Ok(ToDeviceMessage::Other(
            br#"{"t":"call","chat":"x"}"#.to_vec()
        ))
    );
}

#[test]
fn a_late_joining_device_cannot_read_earlier_messages_but_reads_later_ones() {
    let mut a1 = device("alice", "a1");
    let mut b1 = device("bob", "b1");
    let chat = Chat::new("group");
    chat.share_key(&mut a1, &mut b1);
    let before: Vec<String> = (0..3)
        .map(|i| a1.encrypt_message(&chat.id, format!("before {i}").as_bytes()))
        .collect();

    // Bob links a new device (web); it gets Alice's key as it is now.
    let mut b2 = device("bob", "b2");
    chat.share_key(&mut a1, &mut b2);
    let session_id = a1.outbound_session_info(&chat.id).unwrap().0;
    for (i, payload) in before.iter().enumerate() {
        assert_eq!(
            chat.read(&mut b2, ("alice", "a1"), payload),
            Err(CryptoError::UnknownMessageIndex {
                session_id: session_id.clone(),
                first_known_index: 3,
                index: i as u32,
            })
        );
        // The device that was there reads them.
        assert_eq!(
            chat.read(&mut b1, ("alice", "a1"), payload).unwrap(),
            format!("before {i}").as_bytes()
        );
    }
    let after = a1.encrypt_message(&chat.id, b"after");
    assert_eq!(
        chat.read(&mut b2, ("alice", "a1"), &after).unwrap(),
        b"after"
    );
    assert_eq!(
        chat.read(&mut b1, ("alice", "a1"), &after).unwrap(),
        b"after"
    );
}

#[test]
fn after_a_removal_and_rotation_the_removed_device_cannot_read_new_messages() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let mut carol = device("carol", "c1");
    let chat = Chat::new("group");
    chat.share_key(&mut alice, &mut bob);
    chat.share_key(&mut alice, &mut carol);
    let before = alice.encrypt_message(&chat.id, b"all three");
    assert_eq!(
        chat.read(&mut carol, ("alice", "a1"), &before).unwrap(),
        b"all three"
    );
    let old_session = alice.outbound_session_info(&chat.id).unwrap().0;

    // Carol is removed: Alice rotates and shares the new key with Bob only.
    assert!(alice.rotate(&chat.id));
    assert!(alice.outbound_session_info(&chat.id).is_none());
    chat.share_key(&mut alice, &mut bob);
    let new_session = alice.outbound_session_info(&chat.id).unwrap().0;
    assert_ne!(new_session, old_session);
    let after = alice.encrypt_message(&chat.id, b"without carol");

    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &after).unwrap(),
        b"without carol"
    );
    assert_eq!(
        chat.read(&mut carol, ("alice", "a1"), &after),
        Err(CryptoError::UnknownSession {
            chat_session_id: chat.id.clone(),
            session_id: new_session,
            sender_user: "alice".into(),
            sender_device: "a1".into(),
        })
    );
    // Even holding the old key, Carol cannot derive the new one; history stays readable.
    assert_eq!(
        chat.read(&mut carol, ("alice", "a1"), &before).unwrap(),
        b"all three"
    );
    assert_eq!(
        chat.read(&mut alice, ("alice", "a1"), &before).unwrap(),
        b"all three"
    );
    assert!(!alice.rotate("no-such-chat"));
}

#[test]
fn a_changed_identity_key_is_refused_both_ways_until_accepted() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    send_olm(&mut alice, &mut bob, b"hi").unwrap();
    send_olm(&mut bob, &mut alice, b"hi").unwrap();
    let old_key = bob.identity_key();

    // Bob reinstalls: same device id, new keys (or the server substitutes a key).
    let mut new_bob = device("bob", "b1");
    let new_key = new_bob.identity_key();
    let otk = claim_one_time_key(&mut new_bob);
    let expected = CryptoError::IdentityChanged {
        user: "bob".into(),
        device: "b1".into(),
        old: old_key.clone(),
        new: new_key.clone(),
    };
    assert_eq!(
        alice.encrypt_to_device("bob", "b1", &new_key, Some(&otk), b"x"),
        Err(expected.clone())
    );
    let from_new = olm_payload(&mut new_bob, &mut alice, b"it's me, new phone");
    assert_eq!(
        alice.decrypt_from_device("bob", "b1", &new_key, &from_new),
        Err(expected)
    );
    // The old device's sessions are untouched meanwhile.
    assert_eq!(
        send_olm(&mut bob, &mut alice, b"old bob").unwrap(),
        b"old bob"
    );

    // Alice compares safety numbers with Bob and accepts.
    assert_eq!(
        alice.accept_new_identity("bob", "b1", &new_key),
        Ok(Some(old_key.clone()))
    );
    assert_eq!(
        alice
            .decrypt_from_device("bob", "b1", &new_key, &from_new)
            .unwrap(),
        b"it's me, new phone"
    );
    assert_eq!(
        send_olm(&mut alice, &mut new_bob, b"welcome").unwrap(),
        b"welcome"
    );
    // Now the old key is the stranger.
    assert!(matches!(
        send_olm(&mut bob, &mut alice, b"old again"),
        Err(CryptoError::IdentityChanged { .. })
    ));
}

#[test]
fn safety_numbers_agree_between_devices_and_change_with_a_new_key() {
    let a1 = device("alice", "a1");
    let a2 = device("alice", "a2");
    let b1 = device("bob", "b1");
    let alice_keys = [a1.identity_key(), a2.identity_key()];
    let alice_side = safety_number("alice", &alice_keys, "bob", &[b1.identity_key()]).unwrap();
    let bob_side = safety_number("bob", &[b1.identity_key()], "alice", &alice_keys).unwrap();
    assert_eq!(alice_side, bob_side);
    assert_eq!(alice_side.replace(' ', "").len(), 60);

    let b1_reinstalled = device("bob", "b1");
    let changed = safety_number(
        "alice",
        &alice_keys,
        "bob",
        &[b1_reinstalled.identity_key()],
    )
    .unwrap();
    assert_ne!(changed, alice_side);
    assert_ne!(
        fingerprint(&b1.identity_key()).unwrap(),
        fingerprint(&b1_reinstalled.identity_key()).unwrap()
    );
}

#[test]
fn debug_output_shows_no_keys() {
    let mut alice = device("alice", "a1");
    alice.room_key("chat");
    let debug = format!("{alice:?}");
    assert!(debug.contains("alice") && debug.contains("a1"));
    assert!(!debug.contains(&alice.identity_key()));
    assert!(!debug.contains(&alice.signing_key()));
}

#[test]
fn the_state_can_move_between_threads() {
    // The async client keeps it behind a mutex across tasks.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DeviceCrypto>();
    assert_send_sync::<CryptoStore>();
}

#[test]
fn room_keys_exported_for_a_backup_let_a_new_device_read_old_messages_and_nothing_else() {
    let mut alice = device("alice", "a1");
    let mut bob = device("bob", "b1");
    let chat = Chat::new("chat-1");
    chat.share_key(&mut alice, &mut bob);
    let first = alice.encrypt_message("chat-1", b"before the backup");
    assert_eq!(
        chat.read(&mut bob, ("alice", "a1"), &first).unwrap(),
        b"before the backup"
    );
    let mine = bob.encrypt_message("chat-1", b"my own message");

    let keys = bob.export_room_keys();
    assert_eq!(keys.len(), 2, "alice's session and bob's own");
    assert!(
        !format!("{keys:?}").contains(keys[0].key.as_str()),
        "Debug hides keys"
    );

    // Bob's new device: a new identity, the old sessions imported.
    let mut restored = device("bob", "b2");
    assert_ne!(restored.identity_key(), bob.identity_key());
    assert_eq!(restored.import_room_keys(&keys), 2);
    assert_eq!(
        restored.import_room_keys(&keys),
        0,
        "importing again adds nothing"
    );
    assert_eq!(
        chat.read(&mut restored, ("alice", "a1"), &first).unwrap(),
        b"before the backup"
    );
    assert_eq!(
        chat.read(&mut restored, ("bob", "b1"), &mine).unwrap(),
        b"my own message"
    );
    // Still bound to the sender: the same ciphertext claimed by another device is refused.
    assert!(chat.read(&mut restored, ("alice", "a2"), &first).is_err());
    // A key with a tampered session id is skipped.
    let mut bad = keys[0].clone();
    bad.session_id = "x".into();
    assert_eq!(device("bob", "b3").import_room_keys(&[bad]), 0);
}
