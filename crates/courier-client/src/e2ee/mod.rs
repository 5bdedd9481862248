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
//!   A history bundle offer ([`crate::history_bundle`]) is kept for [`E2ee::take_history_offers`]
//!   if it came from this account's primary device, and dropped otherwise.
//!
//! The crypto state is saved (encrypted, see [`crate::crypto::store`]) after every change.

use crate::ClientError;
use crate::crypto::{
    CryptoError, DeviceCrypto, EnvelopeKind, ToDeviceMessage, envelope_kind, fingerprint,
    safety_number, verify_one_time_key,
};
#[cfg(feature = "native")]
use crate::crypto::{CryptoStore, StoreError};
use crate::history_bundle::{HistoryOffer, ReceivedOffer};
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

mod receiving;
mod sending;
mod trust;

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
    /// History bundles offered by this account's primary device, not yet taken.
    offers: Vec<ReceivedOffer>,
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
                offers: Vec::new(),
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

    /// This device's user id.
    pub fn user_id(&self) -> String {
        self.me().0
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
}

#[cfg(test)]
mod tests;

/// The Megolm "room" of a user's status posts.
pub fn status_room(user_id: &str) -> String {
    format!("status:{user_id}")
}
