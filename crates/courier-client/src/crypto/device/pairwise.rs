//! Pairwise Olm: to-device messages (room keys travel this way), encrypted to one device of a
//! peer and decrypted from one, with the peer's identity pinned.

use super::*;

impl DeviceCrypto {
    /// Encrypts a to-device message (a `sendToDevice` payload) for one device.
    ///
    /// Reuses the Olm session with that identity key if there is one; otherwise creates one
    /// from `one_time_key` (claimed with `claimKeys`: a one-time key, or the fallback key),
    /// and fails with [`CryptoError::NoOlmSession`] without it. The peer's identity key is
    /// pinned on first use; a different key than the pinned one is
    /// [`CryptoError::IdentityChanged`].
    pub fn encrypt_to_device(
        &mut self,
        peer_user: &str,
        peer_device: &str,
        peer_identity_key: &str,
        one_time_key: Option<&str>,
        plaintext: &[u8],
    ) -> Result<String, CryptoError> {
        let peer_key = parse_curve(peer_identity_key)?;
        let peer = peer_key.to_base64();
        self.trust.observe(peer_user, peer_device, &peer)?;

        let sessions = self.olm.entry(peer.clone()).or_default();
        if sessions.is_empty() {
            let created = one_time_key
                .ok_or_else(|| CryptoError::NoOlmSession {
                    user: peer_user.to_owned(),
                    device: peer_device.to_owned(),
                })
                .and_then(|otk| {
                    let otk = parse_curve(otk)?;
                    self.account
                        .create_outbound_session(olm::SessionConfig::version_1(), peer_key, otk)
                        .map_err(|e| CryptoError::OlmSession(e.to_string()))
                });
            match created {
                Ok(session) => sessions.push(session),
                Err(e) => {
                    self.olm.remove(&peer);
                    return Err(e);
                }
            }
        }
        let session = sessions
            .last_mut()
            .expect("a session exists or was created");

        let inner = Zeroizing::new(to_json(&OlmPlaintext {
            sender: self.user_id.clone(),
            sender_device: self.device_id.clone(),
            recipient: peer_user.to_owned(),
            recipient_device: peer_device.to_owned(),
            recipient_key: peer,
            body: base64_encode(plaintext),
        }));
        let message = session
            .encrypt(inner.as_bytes())
            .map_err(|e| CryptoError::OlmSession(e.to_string()))?;
        let (kind, body) = message.to_parts();
        Ok(to_json(&OlmEnvelope {
            v: VERSION,
            t: "olm".into(),
            kind: kind as u8,
            body: base64_encode(body),
            sk: self.identity_key(),
        }))
    }

    /// Decrypts a to-device message (a `deviceMessage` event's payload) from one device.
    ///
    /// `sender_identity_key` is the key the server lists for that device. A pre-key message
    /// creates an inbound Olm session (using up the one-time key it names); a normal message
    /// is decrypted with an existing session. The message must name this device as its
    /// recipient and `sender_user`/`sender_device` as its sender. The sender's key is pinned
    /// once a message from it decrypts.
    pub fn decrypt_from_device(
        &mut self,
        sender_user: &str,
        sender_device: &str,
        sender_identity_key: &str,
        payload: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let envelope: OlmEnvelope = envelope::parse(payload, "olm")?;
        let sender_key = parse_curve(sender_identity_key)?;
        let sender = sender_key.to_base64();
        if canonical_key(&envelope.sk).ok().as_deref() != Some(sender.as_str()) {
            return Err(CryptoError::WrongSenderKey {
                expected: sender,
                got: envelope.sk,
            });
        }
        // Refuse a changed key before decrypting anything; pin only after success.
        self.trust.check(sender_user, sender_device, &sender)?;

        let bytes = base64_decode(&envelope.body)
            .map_err(|e| CryptoError::Malformed(format!("olm body: {e}")))?;
        let message = OlmMessage::from_parts(usize::from(envelope.kind), &bytes)
            .map_err(malformed("olm message"))?;

        let sessions = self.olm.get_mut(&sender);
        let (plaintext, used) = match &message {
            OlmMessage::PreKey(pre_key) => {
                let session_id = pre_key.session_id();
                let existing =
                    sessions.and_then(|s| s.iter_mut().position(|s| s.session_id() == session_id));
                match existing {
                    Some(index) => {
                        let session = &mut self.olm.get_mut(&sender).expect("found above")[index];
                        let plaintext = session.decrypt(&message).map_err(olm_decryption_error)?;
                        (plaintext, Used::Existing(index))
                    }
                    None => {
                        let created = self
                            .account
                            .create_inbound_session(
                                olm::SessionConfig::version_1(),
                                sender_key,
                                pre_key,
                            )
                            .map_err(|e| match e {
                                SessionCreationError::Decryption(e) => olm_decryption_error(e),
                                SessionCreationError::MismatchedIdentityKey(expected, got) => {
                                    CryptoError::WrongSenderKey {
                                        expected: expected.to_base64(),
                                        got: got.to_base64(),
                                    }
                                }
                                other => CryptoError::OlmSession(other.to_string()),
                            })?;
                        (created.plaintext, Used::New(Box::new(created.session)))
                    }
                }
            }
            OlmMessage::Normal(_) => {
                let Some(sessions) = sessions.filter(|s| !s.is_empty()) else {
                    return Err(CryptoError::NoOlmSession {
                        user: sender_user.to_owned(),
                        device: sender_device.to_owned(),
                    });
                };
                // Most recently used first. A failed attempt leaves a session unchanged.
                let mut error = CryptoError::Tampered;
                let mut found = None;
                for (index, session) in sessions.iter_mut().enumerate().rev() {
                    match session.decrypt(&message) {
                        Ok(plaintext) => {
                            found = Some((plaintext, Used::Existing(index)));
                            break;
                        }
                        Err(e) => {
                            if let CryptoError::OlmReplay = olm_decryption_error(e) {
                                error = CryptoError::OlmReplay;
                            }
                        }
                    }
                }
                found.ok_or(error)?
            }
        };
        let plaintext = Zeroizing::new(plaintext);
        // The message is consumed (its one-time key and message key are used up) whatever the
        // checks below say, so keep the session: it is one with the owner of `sender_key`.
        let sessions = self.olm.entry(sender.clone()).or_default();
        match used {
            Used::New(session) => sessions.push(*session),
            Used::Existing(index) => {
                let session = sessions.remove(index);
                sessions.push(session);
            }
        }

        let inner: OlmPlaintext = serde_json::from_slice(&plaintext)
            .map_err(|e| CryptoError::Malformed(format!("olm plaintext: {e}")))?;
        if inner.sender != sender_user || inner.sender_device != sender_device {
            return Err(CryptoError::WrongSender(format!(
                "delivered as from {sender_user}/{sender_device}, but sent by {}/{}",
                inner.sender, inner.sender_device
            )));
        }
        if inner.recipient != self.user_id
            || inner.recipient_device != self.device_id
            || inner.recipient_key != self.identity_key()
        {
            return Err(CryptoError::WrongRecipient);
        }
        let body = base64_decode(&inner.body)
            .map_err(|e| CryptoError::Malformed(format!("olm plaintext body: {e}")))?;

        self.trust.observe(sender_user, sender_device, &sender)?;
        Ok(body)
    }

    /// Decrypts a to-device message and, if it is a room key, imports it (bound to the device
    /// that sent it over Olm): the safe way to receive room keys.
    pub fn receive_to_device(
        &mut self,
        sender_user: &str,
        sender_device: &str,
        sender_identity_key: &str,
        payload: &str,
    ) -> Result<ToDeviceMessage, CryptoError> {
        let plaintext =
            self.decrypt_from_device(sender_user, sender_device, sender_identity_key, payload)?;

        #[derive(Deserialize)]
        struct Probe {
            t: String,
            chat: String,
        }
        match serde_json::from_slice::<Probe>(&plaintext) {
            Ok(probe) if probe.t == "room_key" => {
                let session_id =
                    self.import_room_key(sender_user, sender_device, &probe.chat, &plaintext)?;
                Ok(ToDeviceMessage::RoomKey {
                    chat_session_id: probe.chat,
                    session_id,
                })
            }
            _ => Ok(ToDeviceMessage::Other(plaintext)),
        }
    }
}
