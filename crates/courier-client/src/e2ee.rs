//! End-to-end encryption wired into the networked client: the crypto core of [`crate::crypto`]
//! driven through the protocol's key directory (`uploadKeys`, `claimKeys`, `listDevices`) and
//! device queues (`sendToDevice`, `readDeviceMessages`, `ackDeviceMessages`).
//!
//! A [`crate::Client`] configured with [`crate::client::Encryption`] owns one [`E2ee`]:
//!
//! - **On connect** ([`E2ee::publish_keys`]): the device's identity and signing keys are
//!   uploaded when the server does not list them, and one-time keys are topped up to
//!   [`ONE_TIME_KEYS_TARGET`] when fewer than [`ONE_TIME_KEYS_LOW`] are left (with a new
//!   fallback key each time). Then the device queue is read ([`E2ee::receive_device_message`]).
//! - **Sending** ([`E2ee::encrypt_for`]): every device of every member (the caller's own other
//!   devices included) that does not hold the chat's current Megolm key gets it over Olm
//!   (`claimKeys` when there is no Olm session yet, each one-time key's signature checked
//!   against the device's signing key). If a device that held the key is gone (a removed device
//!   or member), the session is rotated first, so it cannot read what follows. Identity keys are
//!   checked against the pins: a changed one is an error, never accepted silently.
//! - **Receiving**: room keys from the device queue are imported; chat messages are decrypted
//!   ([`E2ee::decrypt`]); a message whose key has not arrived is held and released when it does.
//!
//! The crypto state is saved (encrypted, see [`crate::crypto::store`]) after every change.

use crate::ClientError;
use crate::crypto::{
    CryptoError, DeviceCrypto, EnvelopeKind, ToDeviceMessage, envelope_kind, fingerprint,
    safety_number, verify_one_time_key,
};
#[cfg(feature = "native")]
use crate::crypto::{CryptoStore, StoreError};
use crate::protocol::{
    self, DeviceMessage, DeviceMessagesPage, KeyBundle, Message, MessageKind,
    OutgoingDeviceMessage, Request, SendToDeviceResult, UserDevice,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
#[cfg(feature = "native")]
use std::path::Path;
use std::sync::Mutex;

/// How many one-time keys a device keeps on the server.
pub const ONE_TIME_KEYS_TARGET: u32 = 50;
/// Below this many, the device uploads more.
pub const ONE_TIME_KEYS_LOW: u32 = 20;
/// Most messages in one `sendToDevice` call (the protocol's limit).
const SEND_TO_DEVICE_MAX: usize = 100;
/// Most bytes of payload in one `sendToDevice` call, well under the 128 KB message limit (for
/// clients that fragment frames; see [`E2ee::with_request_budget`] for those that cannot).
const SEND_TO_DEVICE_BYTES: usize = 96 * 1024;

/// Something that answers requests: the `Client` (with retries), one connection, or
/// a fake in tests.
#[cfg(not(target_family = "wasm"))]
pub trait Caller: Sync {
    /// Sends a request and returns its `result`.
    fn call(&self, req: Request) -> impl Future<Output = Result<Value, ClientError>> + Send;
}

/// Something that answers requests: in the browser, the web client's WebSocket (a JavaScript
/// promise, which is neither `Send` nor `Sync`; wasm32 runs on one thread).
#[cfg(target_family = "wasm")]
pub trait Caller {
    /// Sends a request and returns its `result`.
    fn call(&self, req: Request) -> impl Future<Output = Result<Value, ClientError>>;
}

/// Where an [`E2ee`] keeps the device's state after every change: the encrypted file of a
/// `CryptoStore` (native), or the web client's IndexedDB (through sealed bytes it takes).
pub trait StateSink: Send {
    /// Saves the whole state.
    fn save(&self, device: &DeviceCrypto) -> Result<(), String>;
}

#[cfg(feature = "native")]
impl StateSink for CryptoStore {
    fn save(&self, device: &DeviceCrypto) -> Result<(), String> {
        CryptoStore::save(self, device).map_err(|e| e.to_string())
    }
}

/// What [`E2ee::decrypt`] made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decrypted {
    /// The text.
    Text(String),
    /// Not an encrypted kind (`system`, `handshake`, ...): left as it is.
    NotEncrypted,
    /// Its room key has not arrived: held, released by the key.
    Held,
    /// It cannot be read, and why.
    Failed(String),
}

/// A contact's safety number and device fingerprints, to compare out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyInfo {
    /// The 60-digit safety number (same on both sides).
    pub safety_number: String,
    /// This user's devices: (device id, fingerprint).
    pub mine: Vec<(String, String)>,
    /// The contact's devices: (device id, fingerprint, primary).
    pub theirs: Vec<(String, String, bool)>,
}

struct State {
    device: DeviceCrypto,
    store: Box<dyn StateSink>,
    /// Messages waiting for their room key, by Megolm session id.
    held: HashMap<String, Vec<Message>>,
    /// Device message ids already handled (a live event and a queue read may both bring one).
    handled: HashSet<String>,
    /// The last `listDevices` answer per user.
    directory: HashMap<String, Vec<UserDevice>>,
}

impl State {
    fn save(&self) -> Result<(), ClientError> {
        self.store.save(&self.device).map_err(ClientError::Store)
    }
}

/// One device's end-to-end encryption, shared by the client's tasks.
pub struct E2ee {
    state: Mutex<State>,
    /// Serialises key sharing and encryption, so two sends do not share keys twice or race a
    /// rotation.
    sending: tokio::sync::Mutex<()>,
    /// Most payload bytes per `sendToDevice` call.
    request_budget: usize,
}

impl std::fmt::Debug for E2ee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2ee").finish_non_exhaustive()
    }
}

fn crypto_err(e: CryptoError) -> ClientError {
    ClientError::Crypto(e)
}

fn protocol_error(what: &str) -> ClientError {
    ClientError::Unexpected {
        status: 0,
        body: what.to_owned(),
    }
}

/// `listDevices`.
pub async fn list_devices(
    c: &impl Caller,
    users: &[String],
) -> Result<Vec<UserDevice>, ClientError> {
    let mut out = Vec::new();
    // The server lists so many users a call that the reply fits a frame.
    for chunk in users.chunks(courier_core::usecases::keys::MAX_LIST_USERS) {
        let r = c.call(protocol::list_devices(chunk)).await?;
        out.extend(protocol::parse::<Vec<UserDevice>>(r["devices"].clone())?);
    }
    Ok(out)
}

/// `claimKeys`.
pub async fn claim_keys(
    c: &impl Caller,
    user: &str,
    devices: Option<&[String]>,
) -> Result<Vec<KeyBundle>, ClientError> {
    let r = c.call(protocol::claim_keys(user, devices)).await?;
    protocol::parse(r["devices"].clone())
}

/// `sendToDevice`.
pub async fn send_to_device(
    c: &impl Caller,
    messages: &[OutgoingDeviceMessage],
) -> Result<SendToDeviceResult, ClientError> {
    protocol::parse(c.call(protocol::send_to_device(messages)).await?)
}

/// `readDeviceMessages`.
pub async fn read_device_messages(
    c: &impl Caller,
    limit: Option<u32>,
) -> Result<DeviceMessagesPage, ClientError> {
    protocol::parse(c.call(protocol::read_device_messages(limit)).await?)
}

/// `ackDeviceMessages`: how many were removed.
pub async fn ack_device_messages(c: &impl Caller, ids: &[String]) -> Result<u64, ClientError> {
    let mut acked = 0;
    for chunk in ids.chunks(100) {
        let r = c.call(protocol::ack_device_messages(chunk)).await?;
        acked += r["acked"].as_u64().unwrap_or(0);
    }
    Ok(acked)
}

/// Splits to-device messages into `sendToDevice` calls: at most 100 each, and few enough
/// bytes to stay under the 128 KB message limit.
fn batches(
    messages: Vec<OutgoingDeviceMessage>,
    max_bytes: usize,
) -> Vec<Vec<OutgoingDeviceMessage>> {
    let mut out: Vec<Vec<OutgoingDeviceMessage>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let size = m.payload.len() + m.user_id.len() + m.device_id.len() + 48;
        match out.last_mut() {
            Some(last) if last.len() < SEND_TO_DEVICE_MAX && bytes + size <= max_bytes => {
                bytes += size;
                last.push(m);
            }
            _ => {
                bytes = size;
                out.push(vec![m]);
            }
        }
    }
    out
}

impl E2ee {
    /// Loads this device's crypto state from `dir`, or creates it (new identity keys).
    #[cfg(feature = "native")]
    pub fn open(dir: &Path, user_id: &str, device_id: &str) -> Result<Self, StoreError> {
        let (store, device) = CryptoStore::load_or_create(dir, user_id, device_id)?;
        Ok(Self::with(Box::new(store), device))
    }

    /// A device's crypto state kept by `store` (saved after every change).
    pub fn with(store: Box<dyn StateSink>, device: DeviceCrypto) -> Self {
        Self {
            state: Mutex::new(State {
                device,
                store,
                held: HashMap::new(),
                handled: HashSet::new(),
                directory: HashMap::new(),
            }),
            sending: tokio::sync::Mutex::new(()),
            request_budget: SEND_TO_DEVICE_BYTES,
        }
    }

    /// Keeps each `sendToDevice` call's payloads under `bytes`: a browser cannot fragment a
    /// WebSocket frame, and API Gateway closes a connection on a frame over 32 KB.
    pub fn with_request_budget(mut self, bytes: usize) -> Self {
        self.request_budget = bytes;
        self
    }

    fn me(&self) -> (String, String) {
        let st = self.state.lock().unwrap();
        (
            st.device.user_id().to_owned(),
            st.device.device_id().to_owned(),
        )
    }

    /// This device's identity key.
    pub fn identity_key(&self) -> String {
        self.state.lock().unwrap().device.identity_key()
    }

    /// Uploads the identity and signing keys if the server does not list them for this device,
    /// and tops up one-time keys (with a new fallback key) when fewer than
    /// [`ONE_TIME_KEYS_LOW`] are left. Returns how many one-time keys the server holds.
    pub async fn publish_keys(&self, c: &impl Caller) -> Result<u32, ClientError> {
        let (me, my_device) = self.me();
        let listed = list_devices(c, std::slice::from_ref(&me)).await?;
        let mine = listed
            .iter()
            .find(|d| d.user_id == me && d.device_id == my_device);
        let (identity, signing) = {
            let st = self.state.lock().unwrap();
            (st.device.identity_key(), st.device.signing_key())
        };
        let published = mine.is_some_and(|d| {
            d.identity_key.as_deref() == Some(identity.as_str())
                && d.signing_key.as_deref() == Some(signing.as_str())
        });
        let count = if published {
            mine.and_then(|d| d.one_time_key_count).unwrap_or(0)
        } else {
            0
        };
        if published && count >= ONE_TIME_KEYS_LOW {
            return Ok(count);
        }
        let (keys, fallback) = {
            let mut st = self.state.lock().unwrap();
            let keys = st
                .device
                .generate_one_time_keys((ONE_TIME_KEYS_TARGET - count) as usize);
            let fallback = st.device.generate_fallback_key();
            st.save()?;
            (keys, fallback)
        };
        let r = c
            .call(protocol::upload_keys(
                &identity,
                &signing,
                &keys,
                Some(&fallback),
            ))
            .await?;
        Ok(r["oneTimeKeyCount"].as_u64().unwrap_or(0) as u32)
    }

    /// Checks a listed device against the pins: its own pinned key, and (for a primary
    /// device) the account's pinned primary device. Pins the primary on first sight.
    fn check_identity(st: &mut State, d: &UserDevice) -> Result<(), CryptoError> {
        let Some(key) = d.identity_key.as_deref() else {
            return Ok(());
        };
        st.device.trust().check(&d.user_id, &d.device_id, key)?;
        if d.primary && d.user_id != st.device.user_id() {
            if st
                .device
                .trust()
                .check_primary(&d.user_id, &d.device_id, key)?
            {
                return Ok(());
            }
            st.device
                .trust_mut()
                .observe_primary(&d.user_id, &d.device_id, key)?;
        }
        Ok(())
    }

    /// Encrypts `plaintext` for a chat whose members are `members` (this user included or
    /// not), first sharing the chat's current room key with every member device that lacks it
    /// and rotating it if a device that had it is gone. Returns the `sendMessage` payload.
    ///
    /// A changed identity key of any member device is [`ClientError::Crypto`] with
    /// [`CryptoError::IdentityChanged`]: nothing is sent until the user accepts it.
    pub async fn encrypt_for(
        &self,
        c: &impl Caller,
        chat_session_id: &str,
        members: &[String],
        plaintext: &str,
    ) -> Result<String, ClientError> {
        let _one_at_a_time = self.sending.lock().await;
        let (me, my_device) = self.me();
        let mut users: Vec<String> = members.to_vec();
        users.push(me.clone());
        users.sort();
        users.dedup();
        let listed = list_devices(c, &users).await?;

        // Who should hold the key now, checked against the pins.
        let targets: BTreeMap<(String, String), UserDevice> = {
            let mut st = self.state.lock().unwrap();
            let mut by_user: HashMap<String, Vec<UserDevice>> = HashMap::new();
            for d in &listed {
                by_user
                    .entry(d.user_id.clone())
                    .or_default()
                    .push(d.clone());
            }
            for u in &users {
                st.directory
                    .insert(u.clone(), by_user.remove(u).unwrap_or_default());
            }
            let mut targets = BTreeMap::new();
            for d in listed.iter().filter(|d| users.contains(&d.user_id)) {
                Self::check_identity(&mut st, d).map_err(crypto_err)?;
                let is_me = d.user_id == me && d.device_id == my_device;
                if !is_me && d.identity_key.is_some() {
                    targets.insert((d.user_id.clone(), d.device_id.clone()), d.clone());
                }
            }
            // Anyone who had the key and is gone must not read what follows.
            let shared = st.device.shared_with(chat_session_id);
            if shared.iter().any(|k| !targets.contains_key(k)) {
                st.device.rotate(chat_session_id);
                tracing::debug!(chat_session_id, "rotated the room key: a device left");
            }
            st.save()?;
            targets
        };

        let (room_key, need) = {
            let mut st = self.state.lock().unwrap();
            let room_key = zeroize::Zeroizing::new(st.device.room_key(chat_session_id));
            let shared = st.device.shared_with(chat_session_id);
            let need: Vec<UserDevice> = targets
                .iter()
                .filter(|(k, _)| !shared.contains(k))
                .map(|(_, d)| d.clone())
                .collect();
            st.save()?;
            (room_key, need)
        };

        if !need.is_empty() {
            self.share_room_key(c, chat_session_id, &room_key, need)
                .await?;
        }
        let mut st = self.state.lock().unwrap();
        let payload = st
            .device
            .encrypt_message(chat_session_id, plaintext.as_bytes());
        st.save()?;
        Ok(payload)
    }

    /// Encrypts a status post of this user once for its whole audience (user ids, this user
    /// left out or not): the status room (`status:<userId>`) is a chat like any other, so its
    /// key reaches the audience's and this user's other devices over Olm, and is rotated when
    /// a device that held it is no longer in the audience.
    pub async fn encrypt_status(
        &self,
        c: &impl Caller,
        audience: &[String],
        plaintext: &str,
    ) -> Result<String, ClientError> {
        let room = status_room(&self.me().0);
        self.encrypt_for(c, &room, audience, plaintext).await
    }

    /// Decrypts a status post with the key its poster's device shared;
    /// [`CryptoError::UnknownSession`] while that key has not arrived.
    pub fn decrypt_status(&self, s: &protocol::StatusPost) -> Result<String, CryptoError> {
        if envelope_kind(&s.payload) != Ok(EnvelopeKind::Megolm) {
            return Err(CryptoError::Malformed("not end-to-end encrypted".into()));
        }
        let mut st = self.state.lock().unwrap();
        let bytes = st.device.decrypt_message_as(
            &status_room(&s.user_id),
            &s.user_id,
            &s.device_id,
            Some(&s.status_id),
            &s.payload,
        )?;
        if let Err(e) = st.save() {
            tracing::warn!("saving the crypto state: {e}");
        }
        String::from_utf8(bytes).map_err(|_| CryptoError::Malformed("not UTF-8 text".into()))
    }

    /// Sends the room key to `devices` over Olm, claiming one-time keys where there is no
    /// Olm session yet, and records who got it.
    async fn share_room_key(
        &self,
        c: &impl Caller,
        chat_session_id: &str,
        room_key: &str,
        devices: Vec<UserDevice>,
    ) -> Result<(), ClientError> {
        // One-time keys for the devices without an Olm session, one claim per user.
        let mut without: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let st = self.state.lock().unwrap();
            for d in &devices {
                let key = d.identity_key.as_deref().unwrap_or_default();
                if !st.device.has_olm_session(key) {
                    without
                        .entry(d.user_id.clone())
                        .or_default()
                        .push(d.device_id.clone());
                }
            }
        }
        let mut claimed: HashMap<(String, String), String> = HashMap::new();
        for (user, ids) in &without {
            for b in claim_keys(c, user, Some(ids)).await? {
                let listed = devices
                    .iter()
                    .find(|d| d.user_id == b.user_id && d.device_id == b.device_id);
                let Some(listed) = listed else { continue };
                // The bundle must be the listed device's, and its key signed by it.
                if listed.identity_key.as_deref() != Some(b.identity_key.as_str())
                    || listed.signing_key.as_deref() != Some(b.signing_key.as_str())
                {
                    tracing::warn!(
                        user = b.user_id,
                        device = b.device_id,
                        "claimed keys differ from the listed ones; not sharing"
                    );
                    continue;
                }
                let Some(otk) = b.one_time_key else {
                    tracing::debug!(
                        user = b.user_id,
                        device = b.device_id,
                        "no one-time key left"
                    );
                    continue;
                };
                verify_one_time_key(&b.signing_key, &otk.key, &otk.signature)
                    .map_err(crypto_err)?;
                claimed.insert((b.user_id, b.device_id), otk.key);
            }
        }

        let mut outgoing = Vec::new();
        {
            let mut st = self.state.lock().unwrap();
            for d in &devices {
                let key = d.identity_key.as_deref().unwrap_or_default();
                let otk = claimed.get(&(d.user_id.clone(), d.device_id.clone()));
                if otk.is_none() && !st.device.has_olm_session(key) {
                    continue;
                }
                let payload = st
                    .device
                    .encrypt_to_device(
                        &d.user_id,
                        &d.device_id,
                        key,
                        otk.map(String::as_str),
                        room_key.as_bytes(),
                    )
                    .map_err(crypto_err)?;
                outgoing.push(OutgoingDeviceMessage {
                    user_id: d.user_id.clone(),
                    device_id: d.device_id.clone(),
                    payload,
                });
            }
            st.save()?;
        }
        for batch in batches(outgoing, self.request_budget) {
            let result = send_to_device(c, &batch).await?;
            let mut st = self.state.lock().unwrap();
            let unknown: BTreeSet<(String, String)> = result
                .unknown_devices
                .iter()
                .map(|d| (d.user_id.clone(), d.device_id.clone()))
                .collect();
            for m in &batch {
                if !unknown.contains(&(m.user_id.clone(), m.device_id.clone())) {
                    st.device
                        .mark_shared(chat_session_id, &m.user_id, &m.device_id);
                }
            }
            st.save()?;
        }
        Ok(())
    }

    /// Decrypts a chat message. A message whose room key has not arrived is held (see
    /// [`E2ee::take_released`] and [`E2ee::held`]).
    pub fn decrypt(&self, m: &Message) -> Decrypted {
        if !matches!(m.kind, MessageKind::Text | MessageKind::Media) {
            return Decrypted::NotEncrypted;
        }
        if envelope_kind(&m.payload) != Ok(EnvelopeKind::Megolm) {
            return Decrypted::Failed("not end-to-end encrypted".into());
        }
        let mut st = self.state.lock().unwrap();
        let result = st.device.decrypt_message_as(
            &m.session_id,
            &m.sender,
            &m.sender_device,
            Some(&m.msg_id),
            &m.payload,
        );
        match result {
            Ok(bytes) => {
                if let Err(e) = st.save() {
                    tracing::warn!("saving the crypto state: {e}");
                }
                match String::from_utf8(bytes) {
                    Ok(text) => Decrypted::Text(text),
                    Err(_) => Decrypted::Failed("not UTF-8 text".into()),
                }
            }
            Err(CryptoError::UnknownSession { session_id, .. }) => {
                let held = st.held.entry(session_id).or_default();
                if !held.iter().any(|h| h.msg_id == m.msg_id) {
                    held.push(m.clone());
                }
                Decrypted::Held
            }
            Err(e) => Decrypted::Failed(e.to_string()),
        }
    }

    /// Messages held for a room key.
    pub fn held(&self) -> Vec<Message> {
        let st = self.state.lock().unwrap();
        let mut all: Vec<Message> = st.held.values().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.session_id, a.seq).cmp(&(&b.session_id, b.seq)));
        all
    }

    /// Handles a device message: decrypts it (an Olm message from the device the server
    /// names), imports a room key, and returns the held messages it released, decrypted (or
    /// the failure for each). `Ok(None)` for a message already handled. An identity that
    /// changed is [`CryptoError::IdentityChanged`]: the message is left unacknowledged, to
    /// be read again once the user accepts the new identity.
    pub async fn receive_device_message(
        &self,
        c: &impl Caller,
        dm: &DeviceMessage,
    ) -> Result<Option<Vec<(Message, Decrypted)>>, ClientError> {
        if self.state.lock().unwrap().handled.contains(&dm.id) {
            return Ok(None);
        }
        // The key the message says it comes from: a cached listing with another key is stale
        // (the device may have uploaded new keys), so it is read again.
        let claimed_key = serde_json::from_str::<Value>(&dm.payload)
            .ok()
            .and_then(|v| v["sk"].as_str().map(str::to_owned));
        let sender = self
            .sender_device(c, &dm.sender, &dm.sender_device, claimed_key.as_deref())
            .await?;
        let Some(sender) = sender else {
            // A device the server no longer lists (removed): nothing to trust it with.
            tracing::debug!(
                sender = dm.sender,
                device = dm.sender_device,
                "device message from an unlisted device; dropped"
            );
            self.state.lock().unwrap().handled.insert(dm.id.clone());
            return Ok(Some(vec![]));
        };
        let key = sender.identity_key.clone().unwrap_or_default();
        let mut st = self.state.lock().unwrap();
        Self::check_identity(&mut st, &sender).map_err(crypto_err)?;
        let received =
            st.device
                .receive_to_device(&dm.sender, &dm.sender_device, &key, &dm.payload);
        st.handled.insert(dm.id.clone());
        let released = match received {
            Ok(ToDeviceMessage::RoomKey { session_id, .. }) => {
                st.held.remove(&session_id).unwrap_or_default()
            }
            Ok(ToDeviceMessage::Other(_)) => Vec::new(),
            Err(e @ CryptoError::IdentityChanged { .. }) => {
                st.handled.remove(&dm.id);
                return Err(crypto_err(e));
            }
            Err(e) => {
                tracing::debug!(
                    sender = dm.sender,
                    device = dm.sender_device,
                    "device message refused: {e}"
                );
                Vec::new()
            }
        };
        st.save()?;
        drop(st);
        Ok(Some(
            released
                .into_iter()
                .map(|m| {
                    let d = self.decrypt(&m);
                    (m, d)
                })
                .collect(),
        ))
    }

    /// The listed device of a sender, from the cache or (on a miss) from `listDevices`.
    async fn sender_device(
        &self,
        c: &impl Caller,
        user: &str,
        device: &str,
        claimed_key: Option<&str>,
    ) -> Result<Option<UserDevice>, ClientError> {
        let cached = {
            let st = self.state.lock().unwrap();
            st.directory
                .get(user)
                .and_then(|ds| ds.iter().find(|d| d.device_id == device).cloned())
        };
        if let Some(d) = cached.filter(|d| {
            d.identity_key.is_some()
                && (claimed_key.is_none() || d.identity_key.as_deref() == claimed_key)
        }) {
            return Ok(Some(d));
        }
        let listed = list_devices(c, &[user.to_owned()]).await?;
        let found = listed
            .iter()
            .find(|d| d.user_id == user && d.device_id == device)
            .cloned();
        let mut st = self.state.lock().unwrap();
        st.directory.insert(
            user.to_owned(),
            listed.into_iter().filter(|d| d.user_id == user).collect(),
        );
        Ok(found.filter(|d| d.identity_key.is_some()))
    }

    /// The safety number with `user` and both sides' device fingerprints (from
    /// `listDevices`). Does not change any pin.
    pub async fn safety(&self, c: &impl Caller, user: &str) -> Result<SafetyInfo, ClientError> {
        let (me, _) = self.me();
        let listed = list_devices(c, &[me.clone(), user.to_owned()]).await?;
        let keys = |u: &str| -> Vec<&UserDevice> {
            listed
                .iter()
                .filter(|d| d.user_id == u && d.identity_key.is_some())
                .collect()
        };
        let (mine, theirs) = (keys(&me), keys(user));
        if theirs.is_empty() {
            return Err(protocol_error(&format!(
                "{user} has no device with end-to-end encryption keys"
            )));
        }
        let key = |d: &&UserDevice| d.identity_key.clone().unwrap_or_default();
        let my_keys: Vec<String> = if mine.is_empty() {
            vec![self.identity_key()]
        } else {
            mine.iter().map(key).collect()
        };
        let their_keys: Vec<String> = theirs.iter().map(key).collect();
        let number = safety_number(&me, &my_keys, user, &their_keys).map_err(crypto_err)?;
        let fp = |d: &&UserDevice| fingerprint(&key(d)).unwrap_or_default();
        Ok(SafetyInfo {
            safety_number: number,
            mine: mine.iter().map(|d| (d.device_id.clone(), fp(d))).collect(),
            theirs: theirs
                .iter()
                .map(|d| (d.device_id.clone(), fp(d), d.primary))
                .collect(),
        })
    }

    /// Whether every listed device of `user` matches the pins (false: an identity changed).
    pub async fn is_trusted(&self, c: &impl Caller, user: &str) -> Result<bool, ClientError> {
        let listed = list_devices(c, &[user.to_owned()]).await?;
        let st = self.state.lock().unwrap();
        Ok(listed.iter().filter(|d| d.user_id == user).all(|d| {
            let Some(key) = d.identity_key.as_deref() else {
                return true;
            };
            st.device.trust().check(user, &d.device_id, key).is_ok()
                && (!d.primary
                    || st
                        .device
                        .trust()
                        .check_primary(user, &d.device_id, key)
                        .is_ok())
        }))
    }

    /// Accepts the identity keys `user`'s devices have now (after a change was reported and
    /// the user chose to trust it, ideally after comparing safety numbers). Returns how many
    /// devices' keys were (re)pinned.
    pub async fn accept_identity(&self, c: &impl Caller, user: &str) -> Result<usize, ClientError> {
        let listed = list_devices(c, &[user.to_owned()]).await?;
        let mut st = self.state.lock().unwrap();
        let mut n = 0;
        for d in listed.iter().filter(|d| d.user_id == user) {
            let Some(key) = d.identity_key.as_deref() else {
                continue;
            };
            st.device
                .accept_new_identity(user, &d.device_id, key)
                .map_err(crypto_err)?;
            if d.primary {
                st.device
                    .trust_mut()
                    .accept_new_primary(user, &d.device_id, key)
                    .map_err(crypto_err)?;
            }
            n += 1;
        }
        st.directory.insert(user.to_owned(), listed);
        st.save()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;

/// The Megolm "room" of a user's status posts.
pub fn status_room(user_id: &str) -> String {
    format!("status:{user_id}")
}
