//! Courier Web's end-to-end encryption: `courier-client`'s crypto (vodozemac Olm/Megolm,
//! envelopes, trust pins, the sealed state format), its key sharing ([`E2ee`]) and its media
//! encryption, compiled to WebAssembly for the browser client in `web/`. The browser does the
//! transport (WebSocket, fetch, uploads); every cryptographic step happens here, in the same
//! Rust code the CLI runs. Nothing of the crypto is written again in JavaScript.
//!
//! The JavaScript API (wasm-bindgen, wasm32 only) is [`wasm::WebDevice`] and the media
//! functions; JSON crosses the boundary as strings. The plain functions below it hold the
//! logic and are unit-tested natively.

use courier_client::ClientError;
use courier_client::crypto::sealed::{self, SealError};
use courier_client::crypto::{CryptoError, DeviceCrypto};
use courier_client::e2ee::{Decrypted, StateSink};
use courier_client::media::{self, MediaPayload, PAYLOAD_VERSION};
use courier_client::protocol::{Message, Request};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Keeps the latest sealed state for the page to write to IndexedDB: every change the crypto
/// makes is sealed (AES-256-GCM under the device's state key) at once, so a crash between
/// two writes loses at most the state of the last operation, as the CLI's file store would.
#[derive(Clone)]
pub struct SealedSlot {
    key: Arc<zeroize::Zeroizing<Vec<u8>>>,
    latest: Arc<Mutex<Option<Vec<u8>>>>,
}

impl SealedSlot {
    /// A slot sealing with `key` (32 bytes).
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        if key.len() != sealed::KEY_LEN {
            return Err(SealError::BadKey);
        }
        Ok(Self {
            key: Arc::new(zeroize::Zeroizing::new(key.to_vec())),
            latest: Arc::new(Mutex::new(None)),
        })
    }

    /// The state sealed since the last take, if it changed.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.latest.lock().unwrap().take()
    }

    /// The state key.
    pub fn key(&self) -> Vec<u8> {
        self.key.to_vec()
    }
}

impl StateSink for SealedSlot {
    fn save(&self, device: &DeviceCrypto) -> Result<(), String> {
        let bytes = sealed::seal_state(&self.key, device).map_err(|e| e.to_string())?;
        *self.latest.lock().unwrap() = Some(bytes);
        Ok(())
    }
}

/// A request as one WebSocket frame's fields (`action` and its parameters; the page adds the
/// `requestId`).
pub fn request_frame(req: &Request) -> String {
    let mut frame = match &req.params {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    frame.insert("action".into(), Value::String(req.action.to_owned()));
    Value::Object(frame).to_string()
}

/// What the page's transport failed with: `{"code", "message"}` (the server's protocol error)
/// as a string, or any other text (a transport failure).
pub fn caller_error(text: &str) -> ClientError {
    match serde_json::from_str::<courier_core::protocol::ErrorDetail>(text) {
        Ok(detail) => ClientError::Api(detail),
        Err(_) => ClientError::Transport(text.to_owned()),
    }
}

/// [`Decrypted`] as the page reads it.
pub fn decrypted_json(d: &Decrypted) -> Value {
    match d {
        Decrypted::Text(text) => json!({"kind": "text", "text": text}),
        Decrypted::NotEncrypted => json!({"kind": "notEncrypted"}),
        Decrypted::Held => json!({"kind": "held"}),
        Decrypted::Failed(reason) => json!({"kind": "failed", "error": reason}),
    }
}

/// A message from its JSON (as the server sent it).
pub fn parse_message(json: &str) -> Result<Message, String> {
    serde_json::from_str(json).map_err(|e| format!("not a message: {e}"))
}

/// An error for the page: the protocol code when there is one, and a message.
pub fn error_json(e: &ClientError) -> String {
    let code = match e {
        ClientError::Api(d) => d.code.as_str().to_owned(),
        ClientError::Crypto(CryptoError::IdentityChanged { .. }) => "IDENTITY_CHANGED".into(),
        ClientError::Crypto(_) => "CRYPTO".into(),
        ClientError::Transport(_) | ClientError::Timeout | ClientError::Closed => {
            "TRANSPORT".into()
        }
        _ => "CLIENT".into(),
    };
    json!({"code": code, "message": e.to_string()}).to_string()
}

/// A file encrypted for upload, and the descriptor the `media` message will carry.
pub struct EncryptedFile {
    /// What is uploaded.
    pub ciphertext: Vec<u8>,
    /// The descriptor without its media id (known after `createMediaUpload`).
    pub descriptor: MediaPayload,
}

/// Encrypts a file (AES-256-GCM, fresh key and nonce) with `courier_client::media`.
pub fn encrypt_file(
    bytes: &[u8],
    content_type: &str,
    file_name: Option<String>,
    caption: Option<String>,
) -> Result<EncryptedFile, ClientError> {
    if bytes.len() as u64 > media::MAX_FILE_BYTES {
        return Err(ClientError::Media(format!(
            "the file is {} bytes; at most {} can be sent",
            bytes.len(),
            media::MAX_FILE_BYTES
        )));
    }
    let enc = media::encrypt(bytes)?;
    Ok(EncryptedFile {
        descriptor: MediaPayload {
            v: PAYLOAD_VERSION,
            t: "media".into(),
            media_id: String::new(),
            key: enc.key,
            nonce: enc.nonce,
            sha256: enc.sha256,
            size: bytes.len() as u64,
            content_type: if content_type.is_empty() {
                "application/octet-stream".into()
            } else {
                content_type.to_owned()
            },
            file_name,
            caption,
        },
        ciphertext: enc.ciphertext,
    })
}

/// One message of a chat as the page hands it to [`render_thread`]: the server's fields, with
/// the plaintext the page decrypted (`text`, absent for media or what could not be decrypted).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadInput {
    msg_id: String,
    sender: String,
    sent_at: String,
    /// The message's `type`: `deleted` is a tombstone.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    /// Deleted for everyone (a `messageDeleted` event seen by the page).
    #[serde(default)]
    deleted: bool,
}

/// A chat's messages in session order, folded as every client shows them
/// ([`courier_client::content::Thread`]): replies quote, reactions and edits apply to their
/// messages, deleted ones lose their content. JSON in, JSON (`[Shown]`) out.
pub fn render_thread(messages_json: &str) -> Result<String, String> {
    use courier_client::content::{Content, Thread};
    let input: Vec<ThreadInput> = serde_json::from_str(messages_json).map_err(|e| e.to_string())?;
    let mut thread = Thread::new();
    for m in &input {
        if m.deleted || m.kind == "deleted" {
            thread.delete(&m.msg_id, &m.sender, &m.sent_at);
            continue;
        }
        match (&m.text, m.kind.as_str()) {
            (Some(text), "text") => {
                thread.apply(&m.msg_id, &m.sender, &m.sent_at, Content::decode(text));
            }
            _ => {
                thread.apply_other(&m.msg_id, &m.sender, &m.sent_at);
            }
        }
    }
    Ok(serde_json::to_string(thread.messages()).expect("shown messages serialise"))
}

/// The plaintext for a content (`{"t": "text" | "reply" | "reaction" | "edit", ...}`, see
/// [`courier_client::content::Content`]), to encrypt and send as a `text` message.
pub fn encode_content(content_json: &str) -> Result<String, String> {
    serde_json::from_str::<courier_client::content::Content>(content_json)
        .map(|c| c.encode())
        .map_err(|e| e.to_string())
}

#[cfg(target_family = "wasm")]
pub mod wasm;

#[cfg(test)]
mod thread_tests {
    use super::*;

    #[test]
    fn the_page_gets_replies_reactions_edits_and_deletions_folded() {
        let reply = encode_content(r#"{"t":"reply","to":"s.1","text":"yes"}"#).unwrap();
        let react = encode_content(r#"{"t":"reaction","to":"s.1","emoji":"👍"}"#).unwrap();
        let edit = encode_content(r#"{"t":"edit","to":"s.1","text":"lunch at 2?"}"#).unwrap();
        let at = "2026-12-07T12:00:00.000Z";
        let input = serde_json::json!([
            {"msgId": "s.1", "sender": "u_a", "sentAt": at, "type": "text", "text": "lunch at 1?"},
            {"msgId": "s.2", "sender": "u_b", "sentAt": at, "type": "text", "text": reply},
            {"msgId": "s.3", "sender": "u_b", "sentAt": at, "type": "text", "text": react},
            {"msgId": "s.4", "sender": "u_a", "sentAt": at, "type": "text", "text": edit},
            {"msgId": "s.5", "sender": "u_a", "sentAt": at, "type": "deleted"},
            {"msgId": "s.6", "sender": "u_a", "sentAt": at, "type": "text", "text": "gone", "deleted": true},
        ]);
        let out: Value = serde_json::from_str(&render_thread(&input.to_string()).unwrap()).unwrap();
        let out = out.as_array().unwrap();
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(out[0]["text"], "lunch at 2?");
        assert_eq!(out[0]["edited"], true);
        assert_eq!(out[0]["reactions"]["u_b"], "👍");
        assert_eq!(out[1]["replyTo"]["msgId"], "s.1");
        assert_eq!(out[1]["text"], "yes");
        for gone in &out[2..] {
            assert_eq!(gone["deleted"], true);
            assert!(gone["text"].is_null());
        }
        assert!(encode_content(r#"{"t":"poll"}"#).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_is_sealed_for_the_page_and_opens_again() {
        let key = sealed::generate_key();
        let slot = SealedSlot::new(key.as_slice()).unwrap();
        let device = DeviceCrypto::new("u1", "d1");
        let identity = device.identity_key();
        assert!(slot.take().is_none(), "nothing changed yet");
        StateSink::save(&slot, &device).unwrap();
        let bytes = slot.take().expect("sealed");
        assert!(slot.take().is_none(), "taken once");
        let back = sealed::open_state(key.as_slice(), &bytes).unwrap();
        assert_eq!(back.identity_key(), identity);
        assert!(SealedSlot::new(&[0u8; 5]).is_err());
    }

    #[test]
    fn files_round_trip_and_a_wrong_digest_is_refused() {
        let f = encrypt_file(b"picture bytes", "image/png", Some("a.png".into()), None).unwrap();
        assert_ne!(f.ciphertext, b"picture bytes");
        assert_eq!(f.descriptor.size, 13);
        assert_eq!(
            media::decrypt(&f.descriptor, &f.ciphertext).unwrap(),
            b"picture bytes"
        );
        let mut bad = f.ciphertext.clone();
        bad[0] ^= 1;
        assert!(media::decrypt(&f.descriptor, &bad).is_err());
    }

    #[test]
    fn requests_become_frames_and_errors_keep_their_code() {
        let frame = request_frame(&courier_client::protocol::list_sessions(None));
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["action"], "listSessions");
        let e = caller_error(r#"{"code":"FORBIDDEN","message":"not a member"}"#);
        assert_eq!(e.code(), Some(courier_core::ErrorCode::Forbidden));
        assert!(matches!(
            caller_error("socket closed"),
            ClientError::Transport(_)
        ));
        let j: Value = serde_json::from_str(&error_json(&e)).unwrap();
        assert_eq!(j["code"], "FORBIDDEN");
    }
}
