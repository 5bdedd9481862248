//! One device's Olm account, its Olm and Megolm sessions, and its trust pins.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vodozemac::megolm::{
    self, ExportedSessionKey, GroupSession, GroupSessionPickle, InboundGroupSession,
    InboundGroupSessionPickle, MegolmMessage, SessionKey,
};
use vodozemac::olm::{
    self, Account, AccountPickle, OlmMessage, Session, SessionCreationError, SessionPickle,
};
use vodozemac::{
    Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature, KeyId, base64_decode, base64_encode,
};
use zeroize::Zeroizing;

use super::CryptoError;
use super::envelope::{
    self, MegolmEnvelope, OlmEnvelope, OlmPlaintext, RoomKeyContent, VERSION, to_json,
};
use super::trust::{TrustStore, canonical_key};

/// What a one-time key signature covers: this prefix, then the key's 32 raw bytes.
const OTK_SIGNATURE_CONTEXT: &[u8] = b"courier-one-time-key-v1:";

/// A one-time (or fallback) Curve25519 key to upload with `uploadKeys`, signed by the device's
/// Ed25519 signing key: the protocol's `SignedKey`, `{"keyId", "key", "signature"}`.
pub use courier_core::ports::SignedKey as OneTimeKey;

/// Checks a claimed one-time key's signature against the owner's Ed25519 signing key, so a
/// client can refuse keys the server made up.
pub fn verify_one_time_key(
    signing_key: &str,
    one_time_key: &str,
    signature: &str,
) -> Result<(), CryptoError> {
    let signing_key = Ed25519PublicKey::from_base64(signing_key)
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
    let key = parse_curve(one_time_key)?;
    let signature =
        Ed25519Signature::from_base64(signature).map_err(|_| CryptoError::BadSignature)?;
    signing_key
        .verify(&otk_signed_bytes(&key), &signature)
        .map_err(|_| CryptoError::BadSignature)
}

fn otk_signed_bytes(key: &Curve25519PublicKey) -> Vec<u8> {
    [OTK_SIGNATURE_CONTEXT, key.as_bytes()].concat()
}

/// A decrypted to-device message, as [`DeviceCrypto::receive_to_device`] hands it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToDeviceMessage {
    /// A room key, already imported: messages of that Megolm session now decrypt.
    RoomKey {
        /// The chat it is for.
        chat_session_id: String,
        /// The Megolm session it starts.
        session_id: String,
    },
    /// Anything else, for the application.
    Other(Vec<u8>),
}

/// An inbound Megolm session and what it is bound to.
struct InboundEntry {
    chat_session_id: String,
    sender_user: String,
    sender_device: String,
    /// The sender's Curve25519 identity key, pinned when its room key arrived over Olm.
    sender_key: String,
    session: InboundGroupSession,
    /// Message index → SHA-256 (hex) of the Megolm message that used it, for replay detection.
    seen: BTreeMap<u32, String>,
}

/// The end-to-end encryption state of one device: its Olm account (identity, signing and
/// one-time keys), its pairwise Olm sessions, its Megolm sessions per chat, and the identity
/// keys it pinned. See the [module documentation](super) for the design.
///
/// Not thread-safe by itself (`&mut self` everywhere): keep it behind a mutex, and save it
/// with [`CryptoStore`](super::CryptoStore) after every call that changes it.
pub struct DeviceCrypto {
    user_id: String,
    device_id: String,
    account: Account,
    /// Peer Curve25519 key (canonical base64) → sessions, the most recently used last.
    olm: HashMap<String, Vec<Session>>,
    /// Chat session id → the outbound Megolm session this device encrypts with.
    outbound: HashMap<String, GroupSession>,
    /// Chat session id → the (user, device) pairs given the current outbound session's key.
    shared: HashMap<String, BTreeSet<(String, String)>>,
    /// Megolm session id → inbound session (including this device's own).
    inbound: HashMap<String, InboundEntry>,
    trust: TrustStore,
}

impl fmt::Debug for DeviceCrypto {
    // Never prints a key: only who this is and how much state it holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCrypto")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("olm_peers", &self.olm.len())
            .field("outbound_sessions", &self.outbound.len())
            .field("inbound_sessions", &self.inbound.len())
            .finish_non_exhaustive()
    }
}

fn parse_curve(key: &str) -> Result<Curve25519PublicKey, CryptoError> {
    Curve25519PublicKey::from_base64(key).map_err(|e| CryptoError::InvalidKey(e.to_string()))
}

fn olm_decryption_error(e: olm::DecryptionError) -> CryptoError {
    match e {
        olm::DecryptionError::InvalidMAC(_)
        | olm::DecryptionError::InvalidMACLength(..)
        | olm::DecryptionError::InvalidPadding(_) => CryptoError::Tampered,
        olm::DecryptionError::MissingMessageKey(_) => CryptoError::OlmReplay,
        other => CryptoError::OlmSession(other.to_string()),
    }
}

fn megolm_decryption_error(session_id: &str, e: megolm::DecryptionError) -> CryptoError {
    match e {
        megolm::DecryptionError::UnknownMessageIndex(first_known_index, index) => {
            CryptoError::UnknownMessageIndex {
                session_id: session_id.to_owned(),
                first_known_index,
                index,
            }
        }
        megolm::DecryptionError::Signature(_)
        | megolm::DecryptionError::InvalidMAC(_)
        | megolm::DecryptionError::InvalidMACLength(..)
        | megolm::DecryptionError::InvalidPadding(_) => CryptoError::Tampered,
    }
}

fn malformed(what: &str) -> impl Fn(vodozemac::DecodeError) -> CryptoError + '_ {
    move |e| CryptoError::Malformed(format!("{what}: {e}"))
}

impl DeviceCrypto {
    /// A new device with fresh identity and signing keys.
    pub fn new(user_id: &str, device_id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            account: Account::new(),
            olm: HashMap::new(),
            outbound: HashMap::new(),
            shared: HashMap::new(),
            inbound: HashMap::new(),
            trust: TrustStore::new(),
        }
    }

    /// The user this device belongs to.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The Curve25519 identity key (unpadded base64): `uploadKeys`' `identityKey`, what peers
    /// pin, and what safety numbers are made of.
    pub fn identity_key(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// The Ed25519 signing key (unpadded base64): `uploadKeys`' `signingKey`, which verifies
    /// this device's one-time key signatures.
    pub fn signing_key(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    /// How many one-time keys the server should hold for this device at most.
    pub fn max_one_time_keys(&self) -> usize {
        self.account.max_number_of_one_time_keys()
    }

    /// Generates `count` one-time keys to upload, signed, and marks them published (a key not
    /// uploaded after all is harmless: it is just never claimed). The account keeps at most
    /// 100 private one-time keys; generating more drops the oldest.
    pub fn generate_one_time_keys(&mut self, count: usize) -> Vec<OneTimeKey> {
        self.account.generate_one_time_keys(count);
        let keys = self.account.one_time_keys();
        let mut keys: Vec<(KeyId, Curve25519PublicKey)> = keys.into_iter().collect();
        keys.sort_by_key(|(id, _)| *id);
        let keys = keys
            .into_iter()
            .map(|(id, key)| self.signed_key(id, key))
            .collect();
        self.account.mark_keys_as_published();
        keys
    }

    /// Generates a new fallback key to upload: peers use it when this device's one-time keys
    /// run out. It replaces the previous one, whose private part is kept until the next
    /// replacement so sessions started with it in the meantime still work.
    pub fn generate_fallback_key(&mut self) -> OneTimeKey {
        self.account.generate_fallback_key();
        let (id, key) = self
            .account
            .fallback_key()
            .into_iter()
            .next()
            .expect("a fallback key was just generated");
        let key = self.signed_key(id, key);
        self.account.mark_keys_as_published();
        key
    }

    fn signed_key(&self, id: KeyId, key: Curve25519PublicKey) -> OneTimeKey {
        OneTimeKey {
            key_id: id.to_base64(),
            key: key.to_base64(),
            signature: self.account.sign(otk_signed_bytes(&key)).to_base64(),
        }
    }

    /// The identity keys this device pinned.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The identity keys this device pinned, to pin or accept keys (e.g. a user's primary
    /// device) outside an Olm exchange.
    pub fn trust_mut(&mut self) -> &mut TrustStore {
        &mut self.trust
    }

    /// The devices (user, device) that were given the key of the chat's current outbound
    /// Megolm session (empty when there is none).
    pub fn shared_with(&self, chat_session_id: &str) -> BTreeSet<(String, String)> {
        if !self.outbound.contains_key(chat_session_id) {
            return BTreeSet::new();
        }
        self.shared
            .get(chat_session_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Records that a device was given the chat's current room key; forgotten on
    /// [`rotate`](Self::rotate).
    pub fn mark_shared(&mut self, chat_session_id: &str, user: &str, device: &str) {
        self.shared
            .entry(chat_session_id.to_owned())
            .or_default()
            .insert((user.to_owned(), device.to_owned()));
    }

    /// Trusts a device's new identity key after [`CryptoError::IdentityChanged`], once the user
    /// accepted it. Returns the key it replaces.
    pub fn accept_new_identity(
        &mut self,
        user: &str,
        device: &str,
        identity_key: &str,
    ) -> Result<Option<String>, CryptoError> {
        self.trust.accept_new_identity(user, device, identity_key)
    }

    /// Whether an Olm session with this identity key exists, i.e. whether
    /// [`encrypt_to_device`](Self::encrypt_to_device) needs a claimed one-time key.
    pub fn has_olm_session(&self, peer_identity_key: &str) -> bool {
        canonical_key(peer_identity_key)
            .ok()
            .and_then(|k| self.olm.get(&k))
            .is_some_and(|s| !s.is_empty())
    }

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

    /// The outbound Megolm session of a chat, created (with this device's own inbound copy,
    /// so it can read its own messages back) if there is none.
    fn outbound_session(&mut self, chat_session_id: &str) -> &mut GroupSession {
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

    /// Every inbound Megolm session (this device's own included), exported at its first known
    /// index with what it is bound to, for a user backup: a restored device can read what
    /// these sessions encrypted. Secret: only ever put inside an encrypted backup.
    pub fn export_room_keys(&self) -> Vec<ExportedRoomKey> {
        let mut keys: Vec<ExportedRoomKey> = self
            .inbound
            .values()
            .map(|e| ExportedRoomKey {
                chat_session_id: e.chat_session_id.clone(),
                sender_user: e.sender_user.clone(),
                sender_device: e.sender_device.clone(),
                sender_key: e.sender_key.clone(),
                session_id: e.session.session_id(),
                key: Zeroizing::new(e.session.export_at_first_known_index().to_base64()),
            })
            .collect();
        keys.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        keys
    }

    /// Imports room keys from a backup. Each session stays bound to its chat, sender and the
    /// sender's identity key; the sender's key is pinned if this device has no pin for it yet.
    /// A key whose session id does not match, or whose sender this device pinned with another
    /// identity key, is skipped. Returns how many sessions were added or extended.
    pub fn import_room_keys(&mut self, keys: &[ExportedRoomKey]) -> usize {
        let mut imported = 0;
        for k in keys {
            let Ok(exported) = ExportedSessionKey::from_base64(&k.key) else {
                continue;
            };
            let session =
                InboundGroupSession::import(&exported, megolm::SessionConfig::version_1());
            if session.session_id() != k.session_id {
                continue;
            }
            if self
                .trust
                .observe(&k.sender_user, &k.sender_device, &k.sender_key)
                .is_err()
            {
                continue;
            }
            let Ok(sender_key) = canonical_key(&k.sender_key) else {
                continue;
            };
            match self.inbound.entry(k.session_id.clone()) {
                Entry::Occupied(mut entry) => {
                    let existing = entry.get_mut();
                    let same = existing.chat_session_id == k.chat_session_id
                        && existing.sender_user == k.sender_user
                        && existing.sender_device == k.sender_device
                        && existing.sender_key == sender_key;
                    if same && session.first_known_index() < existing.session.first_known_index() {
                        existing.session = session;
                        imported += 1;
                    }
                }
                Entry::Vacant(entry) => {
                    entry.insert(InboundEntry {
                        chat_session_id: k.chat_session_id.clone(),
                        sender_user: k.sender_user.clone(),
                        sender_device: k.sender_device.clone(),
                        sender_key,
                        session,
                        seen: BTreeMap::new(),
                    });
                    imported += 1;
                }
            }
        }
        imported
    }

    pub(crate) fn to_snapshot(&self) -> Snapshot {
        let mut olm: Vec<OlmSnapshot> = self
            .olm
            .iter()
            .filter(|(_, sessions)| !sessions.is_empty())
            .map(|(peer_key, sessions)| OlmSnapshot {
                peer_key: peer_key.clone(),
                sessions: sessions.iter().map(Session::pickle).collect(),
            })
            .collect();
        olm.sort_by(|a, b| a.peer_key.cmp(&b.peer_key));
        Snapshot {
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            account: self.account.pickle(),
            olm,
            outbound: self
                .outbound
                .iter()
                .map(|(chat, session)| OutboundSnapshot {
                    chat_session_id: chat.clone(),
                    session: session.pickle(),
                    shared_with: self.shared.get(chat).cloned().unwrap_or_default(),
                })
                .collect(),
            inbound: self
                .inbound
                .values()
                .map(|entry| InboundSnapshot {
                    chat_session_id: entry.chat_session_id.clone(),
                    sender_user: entry.sender_user.clone(),
                    sender_device: entry.sender_device.clone(),
                    sender_key: entry.sender_key.clone(),
                    session: entry.session.pickle(),
                    seen: entry.seen.clone(),
                })
                .collect(),
            trust: self.trust.clone(),
        }
    }

    pub(crate) fn from_snapshot(snapshot: Snapshot) -> Self {
        Self {
            user_id: snapshot.user_id,
            device_id: snapshot.device_id,
            account: Account::from_pickle(snapshot.account),
            olm: snapshot
                .olm
                .into_iter()
                .map(|o| {
                    let sessions = o.sessions.into_iter().map(Session::from_pickle).collect();
                    (o.peer_key, sessions)
                })
                .collect(),
            shared: snapshot
                .outbound
                .iter()
                .map(|o| (o.chat_session_id.clone(), o.shared_with.clone()))
                .collect(),
            outbound: snapshot
                .outbound
                .into_iter()
                .map(|o| (o.chat_session_id, GroupSession::from_pickle(o.session)))
                .collect(),
            inbound: snapshot
                .inbound
                .into_iter()
                .map(|i| {
                    let session = InboundGroupSession::from_pickle(i.session);
                    let entry = InboundEntry {
                        chat_session_id: i.chat_session_id,
                        sender_user: i.sender_user,
                        sender_device: i.sender_device,
                        sender_key: i.sender_key,
                        session,
                        seen: i.seen,
                    };
                    (entry.session.session_id(), entry)
                })
                .collect(),
            trust: snapshot.trust,
        }
    }

    #[cfg(test)]
    pub(crate) fn outbound_mut(&mut self, chat_session_id: &str) -> Option<&mut GroupSession> {
        self.outbound.get_mut(chat_session_id)
    }
}

/// Which Olm session decrypted a message.
enum Used {
    Existing(usize),
    New(Box<Session>),
}

/// Everything a [`DeviceCrypto`] holds, in vodozemac's (unencrypted) pickle form: only ever
/// written inside [`CryptoStore`](super::CryptoStore)'s encrypted file.
#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub user_id: String,
    pub device_id: String,
    account: AccountPickle,
    olm: Vec<OlmSnapshot>,
    outbound: Vec<OutboundSnapshot>,
    inbound: Vec<InboundSnapshot>,
    trust: TrustStore,
}

#[derive(Serialize, Deserialize)]
struct OlmSnapshot {
    peer_key: String,
    /// Least recently used first.
    sessions: Vec<SessionPickle>,
}

#[derive(Serialize, Deserialize)]
struct OutboundSnapshot {
    chat_session_id: String,
    session: GroupSessionPickle,
    /// Who was given this session's key.
    #[serde(default)]
    shared_with: BTreeSet<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct InboundSnapshot {
    chat_session_id: String,
    sender_user: String,
    sender_device: String,
    sender_key: String,
    session: InboundGroupSessionPickle,
    seen: BTreeMap<u32, String>,
}

/// An inbound Megolm session exported for a user backup (see
/// [`DeviceCrypto::export_room_keys`]). Its `key` is secret and zeroized on drop.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedRoomKey {
    /// The chat the session belongs to.
    pub chat_session_id: String,
    /// Who sent with it.
    pub sender_user: String,
    /// From which device.
    pub sender_device: String,
    /// That device's Curve25519 identity key.
    pub sender_key: String,
    /// The Megolm session id.
    pub session_id: String,
    /// The session exported at its first known index (base64).
    pub key: Zeroizing<String>,
}

impl fmt::Debug for ExportedRoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportedRoomKey")
            .field("chat_session_id", &self.chat_session_id)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}
