//! The JSON envelopes that travel in the server's opaque `payload` fields.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::CryptoError;

/// The only envelope version this module writes and reads.
pub(crate) const VERSION: u32 = 1;

/// What kind of ciphertext a payload holds, to route it without decrypting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// Pairwise Olm (a `sendToDevice` payload).
    Olm,
    /// Megolm group message (a `sendMessage` payload).
    Megolm,
}

/// Reads the kind of an envelope, so a client can tell encrypted payloads from others.
pub fn envelope_kind(payload: &str) -> Result<EnvelopeKind, CryptoError> {
    let header = header(payload)?;
    match header.t.as_str() {
        "olm" => Ok(EnvelopeKind::Olm),
        "megolm" => Ok(EnvelopeKind::Megolm),
        other => Err(CryptoError::Malformed(format!(
            "unknown envelope type {other:?}"
        ))),
    }
}

#[derive(Deserialize)]
struct Header {
    v: u32,
    t: String,
}

fn header(payload: &str) -> Result<Header, CryptoError> {
    let header: Header = serde_json::from_str(payload)
        .map_err(|e| CryptoError::Malformed(format!("not an envelope: {e}")))?;
    if header.v != VERSION {
        return Err(CryptoError::Malformed(format!(
            "unsupported envelope version {}",
            header.v
        )));
    }
    Ok(header)
}

/// Parses an envelope of the expected type `t`.
pub(crate) fn parse<T: DeserializeOwned>(payload: &str, t: &str) -> Result<T, CryptoError> {
    let header = header(payload)?;
    if header.t != t {
        return Err(CryptoError::Malformed(format!(
            "expected a {t:?} envelope, got {:?}",
            header.t
        )));
    }
    serde_json::from_str(payload)
        .map_err(|e| CryptoError::Malformed(format!("bad {t} envelope: {e}")))
}

/// `{"v":1,"t":"olm","type":0|1,"body":"<base64>","sk":"<sender curve25519>"}`
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OlmEnvelope {
    pub v: u32,
    pub t: String,
    /// 0: pre-key message (creates a session), 1: normal message.
    #[serde(rename = "type")]
    pub kind: u8,
    pub body: String,
    pub sk: String,
}

/// `{"v":1,"t":"megolm","sid":"<megolm session id>","sk":"<sender curve25519>","body":"<base64>"}`
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MegolmEnvelope {
    pub v: u32,
    pub t: String,
    pub sid: String,
    pub sk: String,
    pub body: String,
}

/// What an Olm ciphertext holds: the plaintext bound to who sent it to whom, so the server
/// cannot relabel a message as coming from, or meant for, another device.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OlmPlaintext {
    pub sender: String,
    pub sender_device: String,
    pub recipient: String,
    pub recipient_device: String,
    pub recipient_key: String,
    /// The caller's plaintext, base64.
    pub body: String,
}

/// The room key to-device message (itself sent inside an Olm envelope):
/// `{"v":1,"t":"room_key","chat":"<chat session id>","sid":"<megolm session id>","index":n,"key":"<base64 session key>"}`
#[derive(Serialize, Deserialize)]
pub(crate) struct RoomKeyContent {
    pub v: u32,
    pub t: String,
    pub chat: String,
    pub sid: String,
    /// The outbound session's message index when the key was exported (informational: the key
    /// itself starts there).
    pub index: u32,
    pub key: String,
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // These types hold only strings and integers: serializing them cannot fail.
    serde_json::to_string(value).expect("envelopes serialize")
}
