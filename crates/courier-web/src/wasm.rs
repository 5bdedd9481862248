//! The JavaScript API (wasm-bindgen). Asynchronous operations take a `caller`: a JavaScript
//! function `(frame: string) => Promise<string>` that sends one WebSocket request (the frame's
//! fields without `requestId`) and resolves with its `result` as JSON, or rejects with
//! `{"code","message"}` as JSON (a protocol error) or any other text (a transport failure).

use std::future::Future;
use std::rc::Rc;

use courier_client::ClientError;
use courier_client::crypto::{DeviceCrypto, sealed};
use courier_client::e2ee::{Caller, E2ee};
use courier_client::history_bundle::{self, HistoryOffer};
use courier_client::media::{self, MediaPayload};
use courier_client::protocol::{DeviceMessage, Request, StatusPost};
use js_sys::{Function, Promise, Uint8Array};
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::{
    EncryptedFile, SealedSlot, caller_error, decrypted_json, encrypt_file, error_json,
    parse_message, request_frame,
};

/// Payload bytes per `sendToDevice` call: the browser sends each request as one WebSocket frame
/// (it cannot fragment), and API Gateway closes a connection on a frame over 32 KB.
const REQUEST_BUDGET: usize = 24 * 1024;

/// The web client's local state (chats, messages) sealed beside the crypto state.
const LOCAL_MAGIC: &[u8; 4] = b"CWL1";
const LOCAL_AAD: &[u8] = b"courier-web-local-v1";

struct JsCaller(Function);

impl Caller for JsCaller {
    fn call(&self, req: Request) -> impl Future<Output = Result<Value, ClientError>> {
        let frame = JsValue::from_str(&request_frame(&req));
        let called = self.0.call1(&JsValue::NULL, &frame);
        async move {
            let promise: Promise = called
                .map_err(|e| caller_error(&js_text(&e)))?
                .dyn_into()
                .map_err(|_| {
                    ClientError::Transport("the caller did not return a promise".into())
                })?;
            let result = JsFuture::from(promise)
                .await
                .map_err(|e| caller_error(&js_text(&e)))?;
            let text = result.as_string().unwrap_or_default();
            serde_json::from_str(&text).map_err(|e| ClientError::Unexpected {
                status: 0,
                body: format!("the caller's result is not JSON: {e}"),
            })
        }
    }
}

/// Text of a thrown JavaScript value: a string as is, an `Error`'s message.
fn js_text(v: &JsValue) -> String {
    if let Some(s) = v.as_string() {
        return s;
    }
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    format!("{v:?}")
}

fn js_error(e: &ClientError) -> JsValue {
    JsValue::from_str(&error_json(e))
}

fn bad_input(what: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&json!({"code": "BAD_INPUT", "message": what.to_string()}).to_string())
}

/// One device's end-to-end encryption in the browser: its Olm account and sessions, Megolm
/// sessions, trust pins. The state is sealed after every change; [`WebDevice::take_state`]
/// hands the sealed bytes to the page for IndexedDB.
#[wasm_bindgen]
pub struct WebDevice {
    e2ee: Rc<E2ee>,
    slot: SealedSlot,
}

#[wasm_bindgen]
impl WebDevice {
    /// A new device (new identity keys) of `user_id`/`device_id`, with a new random state key;
    /// its first sealed state is ready to be taken.
    pub fn create(user_id: &str, device_id: &str) -> Result<WebDevice, JsValue> {
        if user_id.is_empty() || device_id.is_empty() {
            return Err(bad_input("a user id and a device id are needed"));
        }
        let key = sealed::generate_key();
        let slot = SealedSlot::new(key.as_slice()).map_err(bad_input)?;
        let device = DeviceCrypto::new(user_id, device_id);
        courier_client::e2ee::StateSink::save(&slot, &device).map_err(bad_input)?;
        Ok(Self {
            e2ee: Rc::new(
                E2ee::with(Box::new(slot.clone()), device).with_request_budget(REQUEST_BUDGET),
            ),
            slot,
        })
    }

    /// The device saved earlier: its state key and sealed state (from IndexedDB). A state of
    /// another user or device, a wrong key or damaged bytes are refused.
    pub fn open(
        user_id: &str,
        device_id: &str,
        key: &[u8],
        state: &[u8],
    ) -> Result<WebDevice, JsValue> {
        let device = sealed::open_state(key, state).map_err(bad_input)?;
        if device.user_id() != user_id || device.device_id() != device_id {
            return Err(bad_input(format!(
                "the stored crypto state belongs to {}/{}",
                device.user_id(),
                device.device_id()
            )));
        }
        let slot = SealedSlot::new(key).map_err(bad_input)?;
        Ok(Self {
            e2ee: Rc::new(
                E2ee::with(Box::new(slot.clone()), device).with_request_budget(REQUEST_BUDGET),
            ),
            slot,
        })
    }

    /// The state key (keep it in IndexedDB beside the state, as the CLI keeps `crypto.key`).
    #[wasm_bindgen(js_name = stateKey)]
    pub fn state_key(&self) -> Vec<u8> {
        self.slot.key()
    }

    /// The sealed state if it changed since the last call (write it to IndexedDB), else
    /// `undefined`.
    #[wasm_bindgen(js_name = takeState)]
    pub fn take_state(&self) -> Option<Vec<u8>> {
        self.slot.take()
    }

    /// Seals the page's own local state (its chats and messages, JSON) under the state key,
    /// so nothing of the conversation sits in IndexedDB in clear.
    #[wasm_bindgen(js_name = sealLocal)]
    pub fn seal_local(&self, plaintext: &[u8]) -> Result<Vec<u8>, JsValue> {
        sealed::seal(&self.slot.key(), LOCAL_MAGIC, LOCAL_AAD, plaintext).map_err(bad_input)
    }

    /// Opens what [`WebDevice::seal_local`] sealed.
    #[wasm_bindgen(js_name = openLocal)]
    pub fn open_local(&self, bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
        sealed::unseal(&self.slot.key(), LOCAL_MAGIC, LOCAL_AAD, bytes)
            .map(|p| p.to_vec())
            .map_err(bad_input)
    }

    /// This device's Curve25519 identity key.
    #[wasm_bindgen(js_name = identityKey)]
    pub fn identity_key(&self) -> String {
        self.e2ee.identity_key()
    }

    /// Uploads identity and one-time keys as needed (on every connect). Resolves with the
    /// number of one-time keys the server holds.
    #[wasm_bindgen(js_name = publishKeys)]
    pub fn publish_keys(&self, caller: Function) -> Promise {
        let e2ee = self.e2ee.clone();
        future_to_promise(async move {
            let n = e2ee
                .publish_keys(&JsCaller(caller))
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::from(n))
        })
    }

    /// Encrypts `plaintext` for a chat with `members` (user ids), sharing its room key with
    /// every member device that lacks it first. Resolves with the `sendMessage` payload.
    #[wasm_bindgen(js_name = encryptFor)]
    pub fn encrypt_for(
        &self,
        caller: Function,
        session_id: String,
        members: Vec<String>,
        plaintext: String,
    ) -> Promise {
        let e2ee = self.e2ee.clone();
        future_to_promise(async move {
            let payload = e2ee
                .encrypt_for(&JsCaller(caller), &session_id, &members, &plaintext)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::from_str(&payload))
        })
    }

    /// Encrypts a status post once for its audience (user ids). Resolves with the payload.
    #[wasm_bindgen(js_name = encryptStatus)]
    pub fn encrypt_status(
        &self,
        caller: Function,
        audience: Vec<String>,
        plaintext: String,
    ) -> Promise {
        let e2ee = self.e2ee.clone();
        future_to_promise(async move {
            let payload = e2ee
                .encrypt_status(&JsCaller(caller), &audience, &plaintext)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::from_str(&payload))
        })
    }

    /// Decrypts a chat message (its JSON as the server sent it): `{"kind": "text", "text"}`,
    /// `{"kind": "held"}` (its key has not arrived: released by `receiveDeviceMessage`),
    /// `{"kind": "notEncrypted"}` or `{"kind": "failed", "error"}`.
    pub fn decrypt(&self, message_json: &str) -> Result<String, JsValue> {
        let m = parse_message(message_json).map_err(bad_input)?;
        Ok(decrypted_json(&self.e2ee.decrypt(&m)).to_string())
    }

    /// Handles a device message (JSON): imports a room key, or takes a history bundle offer
    /// from this account's primary device. Resolves with `{"handled": bool, "released":
    /// [{"message", "result"}], "historyOffers": [{"senderDevice", "offer"}]}` (`handled`
    /// false: already seen; fetch an offer's parts and open them with `openHistoryBundle`).
    /// Rejects with `IDENTITY_CHANGED` when the sender's identity key changed (do not ack it).
    #[wasm_bindgen(js_name = receiveDeviceMessage)]
    pub fn receive_device_message(&self, caller: Function, device_message_json: String) -> Promise {
        let e2ee = self.e2ee.clone();
        future_to_promise(async move {
            let dm: DeviceMessage = serde_json::from_str(&device_message_json)
                .map_err(|e| bad_input(format!("not a device message: {e}")))?;
            let out = e2ee
                .receive_device_message(&JsCaller(caller), &dm)
                .await
                .map_err(|e| js_error(&e))?;
            // A history bundle from this account's primary device (the sender was checked).
            let offers: Vec<Value> = e2ee
                .take_history_offers()
                .into_iter()
                .map(|o| json!({"senderDevice": o.sender_device, "offer": o.offer}))
                .collect();
            let v = match out {
                None => json!({"handled": false, "released": [], "historyOffers": offers}),
                Some(list) => json!({
                    "handled": true,
                    "released": list.iter().map(|(m, d)| json!({
                        "message": m,
                        "result": decrypted_json(d),
                    })).collect::<Vec<_>>(),
                    "historyOffers": offers,
                }),
            };
            Ok(JsValue::from_str(&v.to_string()))
        })
    }

    /// Opens a history bundle (`offer` as `receiveDeviceMessage` gave it, and its parts'
    /// downloaded ciphertexts in order): checks each part's digest, decrypts, checks that the
    /// bundle is this account's. Returns its entries as JSON (courier-client's `HistoryEntry`,
    /// each `"synced": true`); throws `MEDIA` for anything that does not check out.
    #[wasm_bindgen(js_name = openHistoryBundle)]
    pub fn open_history_bundle(
        &self,
        offer_json: &str,
        parts: js_sys::Array,
    ) -> Result<String, JsValue> {
        let offer: HistoryOffer = serde_json::from_str(offer_json)
            .map_err(|e| bad_input(format!("not a history bundle offer: {e}")))?;
        let ciphertexts: Vec<Vec<u8>> =
            parts.iter().map(|p| Uint8Array::new(&p).to_vec()).collect();
        let entries = history_bundle::open(&offer, &self.e2ee.user_id(), &ciphertexts)
            .map_err(|e| js_error(&e))?;
        Ok(serde_json::to_string(&entries).expect("entries serialise"))
    }

    /// Decrypts a status post (JSON as `viewStatus` returns it): its text.
    #[wasm_bindgen(js_name = decryptStatus)]
    pub fn decrypt_status(&self, status_json: &str) -> Result<String, JsValue> {
        let s: StatusPost = serde_json::from_str(status_json)
            .map_err(|e| bad_input(format!("not a status: {e}")))?;
        self.e2ee
            .decrypt_status(&s)
            .map_err(|e| js_error(&ClientError::Crypto(e)))
    }

    /// The safety number with `user_id` and both sides' device fingerprints:
    /// `{"safetyNumber", "mine": [[deviceId, fingerprint]], "theirs": [[deviceId, fingerprint, primary]]}`.
    pub fn safety(&self, caller: Function, user_id: String) -> Promise {
        let e2ee = self.e2ee.clone();
        future_to_promise(async move {
            let s = e2ee
                .safety(&JsCaller(caller), &user_id)
                .await
                .map_err(|e| js_error(&e))?;
            let v = json!({"safetyNumber": s.safety_number, "mine": s.mine, "theirs": s.theirs});
            Ok(JsValue::from_str(&v.to_string()))
        })
    }
}

#[wasm_bindgen]
impl WebDevice {
    /// Whether every listed device of `user_id` matches the pinned identity keys (false: an
    /// identity changed: nothing is sent to it and its messages are not read until accepted).
    #[wasm_bindgen(js_name = isTrusted)]
    pub fn is_trusted(&self, caller: Function, user_id: String) -> Promise {
        let e2ee = self.e2ee.clone();
        future_to_promise(async move {
            let ok = e2ee
                .is_trusted(&JsCaller(caller), &user_id)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::from_bool(ok))
        })
    }

    /// Trusts the identity keys `user_id`'s devices have now (after the user compared safety
    /// numbers). Resolves with how many devices' keys were pinned.
    #[wasm_bindgen(js_name = acceptIdentity)]
    pub fn accept_identity(&self, caller: Function, user_id: String) -> Promise {
        let e2ee = self.e2ee.clone();
        future_to_promise(async move {
            let n = e2ee
                .accept_identity(&JsCaller(caller), &user_id)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::from(n as u32))
        })
    }
}

/// A file encrypted in the browser: upload `ciphertext`, then send `descriptor(mediaId)`.
#[wasm_bindgen]
pub struct WebEncryptedFile(EncryptedFile);

#[wasm_bindgen]
impl WebEncryptedFile {
    /// The bytes to upload (AES-256-GCM ciphertext).
    #[wasm_bindgen(getter)]
    pub fn ciphertext(&self) -> Uint8Array {
        Uint8Array::from(self.0.ciphertext.as_slice())
    }

    /// The `media` message's content (to be end-to-end encrypted like any text).
    pub fn descriptor(&self, media_id: &str) -> String {
        let mut d = self.0.descriptor.clone();
        d.media_id = media_id.to_owned();
        serde_json::to_string(&d).expect("a descriptor serialises")
    }
}

/// Encrypts a file for upload (at most 16 MiB less the 16-byte tag).
#[wasm_bindgen(js_name = encryptFile)]
pub fn encrypt_file_js(
    bytes: &[u8],
    content_type: &str,
    file_name: Option<String>,
    caption: Option<String>,
) -> Result<WebEncryptedFile, JsValue> {
    encrypt_file(bytes, content_type, file_name, caption)
        .map(WebEncryptedFile)
        .map_err(|e| js_error(&e))
}

/// The media descriptor in a decrypted `media` message's text (normalised JSON), or
/// `undefined` if it is not one.
#[wasm_bindgen(js_name = parseMediaDescriptor)]
pub fn parse_media_descriptor(text: &str) -> Option<String> {
    MediaPayload::parse(text).map(|p| serde_json::to_string(&p).expect("a descriptor serialises"))
}

/// A chat's messages folded for display (replies, reactions, edits, deletions): see
/// [`crate::render_thread`].
#[wasm_bindgen(js_name = renderThread)]
pub fn render_thread(messages_json: &str) -> Result<String, JsValue> {
    crate::render_thread(messages_json).map_err(|e| bad_input(&e))
}

/// The plaintext of a reply, reaction or edit (see [`crate::encode_content`]).
#[wasm_bindgen(js_name = encodeContent)]
pub fn encode_content(content_json: &str) -> Result<String, JsValue> {
    crate::encode_content(content_json).map_err(|e| bad_input(&e))
}

/// Checks a downloaded file's digest and decrypts it with its descriptor.
#[wasm_bindgen(js_name = decryptFile)]
pub fn decrypt_file(descriptor_json: &str, ciphertext: &[u8]) -> Result<Vec<u8>, JsValue> {
    let d =
        MediaPayload::parse(descriptor_json).ok_or_else(|| bad_input("not a media descriptor"))?;
    media::decrypt(&d, ciphertext).map_err(|e| js_error(&e))
}
