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

mod group_sessions;
mod pairwise;
mod room_keys;

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
