//! Megolm: a chat's outbound session (shared as a room key with every member device), the
//! inbound sessions of others, and the messages they encrypt.

use super::*;

impl DeviceCrypto {
    /// The outbound Megolm session of a chat, created (with this device's own inbound copy,
    /// so it can read its own messages back) if there is none.
    pub(super) fn outbound_session(&mut self, chat_session_id: &str) -> &mut GroupSession {
        let own_key = self.identity_key();
        match self.outbound.entry(chat_session_id.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.shared.remove(chat_session_id);
                let session = GroupSession::new(megolm::SessionConfig::version_1());
                let inbound = InboundGroupSession::new(
                    &session.session_key(),
                    megolm::SessionConfig::version_1(),
                );
                self.inbound.insert(
                    session.session_id(),
                    InboundEntry {
                        chat_session_id: chat_session_id.to_owned(),
                        sender_user: self.user_id.clone(),
                        sender_device: self.device_id.clone(),
                        sender_key: own_key,
                        session: inbound,
                        seen: BTreeMap::new(),
                    },
                );
                entry.insert(session)
            }
        }
    }

    /// The room key of this device's current Megolm session for a chat (creating the session
    /// if needed), as the JSON to send to each member device with
    /// [`encrypt_to_device`](Self::encrypt_to_device). **Secret**: never send it in clear.
    ///
    /// The key starts at the session's current message index: a device given it now decrypts
    /// the messages sent from now on, not the earlier ones. Share it with every member device
    /// before the first [`encrypt_message`](Self::encrypt_message) of a new session, and with
    /// devices that join later.
    pub fn room_key(&mut self, chat_session_id: &str) -> String {
        let session = self.outbound_session(chat_session_id);
        let key = Zeroizing::new(session.session_key().to_base64());
        to_json(&RoomKeyContent {
            v: VERSION,
            t: "room_key".into(),
            chat: chat_session_id.to_owned(),
            sid: session.session_id(),
            index: session.message_index(),
            key: key.to_string(),
        })
    }

    /// The id of the current outbound Megolm session of a chat and its next message index.
    pub fn outbound_session_info(&self, chat_session_id: &str) -> Option<(String, u32)> {
        self.outbound
            .get(chat_session_id)
            .map(|s| (s.session_id(), s.message_index()))
    }

    /// Drops the chat's outbound Megolm session: the next message starts a new one, whose key
    /// must be shared again (only with the devices that should read on). Call it after a member
    /// or device is removed. Returns whether there was one.
    pub fn rotate(&mut self, chat_session_id: &str) -> bool {
        self.shared.remove(chat_session_id);
        self.outbound.remove(chat_session_id).is_some()
    }

    /// Imports a room key received over Olm from `sender_user`/`sender_device` (the plaintext
    /// [`decrypt_from_device`](Self::decrypt_from_device) returned for that very sender;
    /// [`receive_to_device`](Self::receive_to_device) does both). Returns the Megolm session id.
    ///
    /// The session is bound to the chat, the sender and the sender's pinned identity key:
    /// messages claiming another sender are refused. Importing a key for a session already
    /// held keeps the one that decrypts more (the lower first index).
    pub fn import_room_key(
        &mut self,
        sender_user: &str,
        sender_device: &str,
        chat_session_id: &str,
        room_key: &[u8],
    ) -> Result<String, CryptoError> {
        let content: RoomKeyContent = serde_json::from_slice(room_key)
            .map_err(|e| CryptoError::Malformed(format!("room key: {e}")))?;
        if content.v != VERSION || content.t != "room_key" {
            return Err(CryptoError::Malformed("not a room key".into()));
        }
        if content.chat != chat_session_id {
            return Err(CryptoError::WrongChat {
                session_id: content.sid,
                expected: chat_session_id.to_owned(),
                got: content.chat,
            });
        }
        // Checks the session key's own signature.
        let key = SessionKey::from_base64(&content.key)
            .map_err(|e| CryptoError::Malformed(format!("room key: {e}")))?;
        let session = InboundGroupSession::new(&key, megolm::SessionConfig::version_1());
        let session_id = session.session_id();
        if session_id != content.sid {
            return Err(CryptoError::Malformed(
                "room key: session id does not match the key".into(),
            ));
        }
        let sender_key = self
            .trust
            .pinned(sender_user, sender_device)
            .ok_or_else(|| CryptoError::UntrustedDevice {
                user: sender_user.to_owned(),
                device: sender_device.to_owned(),
            })?
            .to_owned();

        match self.inbound.entry(session_id.clone()) {
            Entry::Occupied(mut entry) => {
                let existing = entry.get_mut();
                if existing.sender_user != sender_user
                    || existing.sender_device != sender_device
                    || existing.sender_key != sender_key
                {
                    return Err(CryptoError::WrongSender(format!(
                        "megolm session {session_id} was shared by {}/{}, not {sender_user}/{sender_device}",
                        existing.sender_user, existing.sender_device
                    )));
                }
                if existing.chat_session_id != chat_session_id {
                    return Err(CryptoError::WrongChat {
                        session_id,
                        expected: existing.chat_session_id.clone(),
                        got: chat_session_id.to_owned(),
                    });
                }
                if session.first_known_index() < existing.session.first_known_index() {
                    existing.session = session;
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(InboundEntry {
                    chat_session_id: chat_session_id.to_owned(),
                    sender_user: sender_user.to_owned(),
                    sender_device: sender_device.to_owned(),
                    sender_key,
                    session,
                    seen: BTreeMap::new(),
                });
            }
        }
        Ok(session_id)
    }

    /// Encrypts a chat message (a `sendMessage` payload) with the chat's outbound Megolm
    /// session, creating one if needed (share its [`room_key`](Self::room_key) first).
    pub fn encrypt_message(&mut self, chat_session_id: &str, plaintext: &[u8]) -> String {
        let sk = self.identity_key();
        let session = self.outbound_session(chat_session_id);
        let message = session.encrypt(plaintext);
        to_json(&MegolmEnvelope {
            v: VERSION,
            t: "megolm".into(),
            sid: session.session_id(),
            sk,
            body: base64_encode(message.to_bytes()),
        })
    }

    /// Decrypts a chat message read from `chat_session_id`, sent (as the server says) by
    /// `sender_user`/`sender_device`.
    ///
    /// Refuses: an unknown Megolm session ([`CryptoError::UnknownSession`]: ask the sender for
    /// the key), a message older than the key this device was given, a session of another
    /// chat or sender, a tampered message, and a different message at an already used index
    /// ([`CryptoError::Replay`]). The same message decrypted again (a re-sync) is fine.
    /// [`DeviceCrypto::decrypt_message_as`] also refuses the same ciphertext under another
    /// message id.
    pub fn decrypt_message(
        &mut self,
        chat_session_id: &str,
        sender_user: &str,
        sender_device: &str,
        payload: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        self.decrypt_message_as(chat_session_id, sender_user, sender_device, None, payload)
    }

    /// [`DeviceCrypto::decrypt_message`] for a message the server stored as `msg_id`. The id is
    /// remembered with the Megolm index it used, so the same ciphertext coming back as another
    /// message (a replay by the server or a member who copied it) is refused with
    /// [`CryptoError::Replay`], while the same message read again (same id) decrypts again.
    pub fn decrypt_message_as(
        &mut self,
        chat_session_id: &str,
        sender_user: &str,
        sender_device: &str,
        msg_id: Option<&str>,
        payload: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let envelope: MegolmEnvelope = envelope::parse(payload, "megolm")?;
        let Some(entry) = self.inbound.get_mut(&envelope.sid) else {
            return Err(CryptoError::UnknownSession {
                chat_session_id: chat_session_id.to_owned(),
                session_id: envelope.sid,
                sender_user: sender_user.to_owned(),
                sender_device: sender_device.to_owned(),
            });
        };
        if entry.chat_session_id != chat_session_id {
            return Err(CryptoError::WrongChat {
                session_id: envelope.sid,
                expected: entry.chat_session_id.clone(),
                got: chat_session_id.to_owned(),
            });
        }
        if entry.sender_user != sender_user || entry.sender_device != sender_device {
            return Err(CryptoError::WrongSender(format!(
                "megolm session {} belongs to {}/{}, not {sender_user}/{sender_device}",
                envelope.sid, entry.sender_user, entry.sender_device
            )));
        }
        if canonical_key(&envelope.sk).ok().as_deref() != Some(entry.sender_key.as_str()) {
            return Err(CryptoError::WrongSenderKey {
                expected: entry.sender_key.clone(),
                got: envelope.sk,
            });
        }

        let bytes = base64_decode(&envelope.body)
            .map_err(|e| CryptoError::Malformed(format!("megolm body: {e}")))?;
        let message = MegolmMessage::from_bytes(&bytes).map_err(malformed("megolm message"))?;
        let decrypted = entry
            .session
            .decrypt(&message)
            .map_err(|e| megolm_decryption_error(&envelope.sid, e))?;

        // Only the sender's signing key can make a valid message, so a second valid message at
        // one index means the sender's ratchet was reused (restored state, or malice).
        // A seen entry is the digest, then (when known) a space and the message id.
        let digest = hex::encode(Sha256::digest(&bytes));
        let record = match msg_id {
            Some(id) => format!("{digest} {id}"),
            None => digest.clone(),
        };
        let replay = || CryptoError::Replay {
            session_id: envelope.sid.clone(),
            index: decrypted.message_index,
        };
        match entry.seen.get(&decrypted.message_index) {
            Some(seen) => {
                let (seen_digest, seen_id) = match seen.split_once(' ') {
                    Some((d, id)) => (d, Some(id)),
                    None => (seen.as_str(), None),
                };
                if seen_digest != digest {
                    return Err(replay());
                }
                match (seen_id, msg_id) {
                    (Some(a), Some(b)) if a != b => Err(replay()),
                    (None, Some(_)) => {
                        entry.seen.insert(decrypted.message_index, record);
                        Ok(decrypted.plaintext)
                    }
                    _ => Ok(decrypted.plaintext),
                }
            }
            None => {
                entry.seen.insert(decrypted.message_index, record);
                Ok(decrypted.plaintext)
            }
        }
    }
}
