//! End-to-end encryption for Courier clients: a pure library (no network, no server changes)
//! that turns plaintext into the opaque `payload` strings the server stores and relays, and
//! back.
//!
//! # Design
//!
//! The cryptography is [vodozemac](https://docs.rs/vodozemac), the audited Rust implementation
//! of Matrix's Olm and Megolm; this module adds Courier's envelopes, bindings, trust and
//! storage around it. It is the Matrix model, which fits the protocol's multi-device fan-out:
//!
//! - Each device has one [`DeviceCrypto`]: an Olm account with a Curve25519 **identity key**
//!   and an Ed25519 **signing key** (`uploadKeys`' `identityKey` / `signingKey`), plus signed
//!   one-time keys and a fallback key for others to `claimKeys`.
//! - **Olm** (pairwise double ratchet, per pair of devices) carries small to-device messages
//!   (`sendToDevice`): above all the room keys. [`DeviceCrypto::encrypt_to_device`] starts a
//!   session from a claimed one-time key the first time and reuses it after; the receiver's
//!   first [`DeviceCrypto::decrypt_from_device`] of a pre-key message creates its side. Inside
//!   the ciphertext the plaintext is wrapped with the sender's and recipient's user and device
//!   ids and the recipient's identity key, so the server cannot relabel who sent a message to
//!   whom.
//! - **Megolm** (a sender ratchet, one outbound session per device and chat) carries chat
//!   messages (`sendMessage`): one ciphertext for all member devices. Its key is sent to each
//!   member device over Olm ([`DeviceCrypto::room_key`], [`DeviceCrypto::receive_to_device`]).
//!   A key is exported at the session's *current* index, so a device added later cannot read
//!   what was sent before it got the key. After a member or device is removed,
//!   [`DeviceCrypto::rotate`] starts a new session whose key goes only to the remaining
//!   devices. An inbound session is bound to its chat, its sender (user, device) and the
//!   sender's pinned identity key: a message naming another chat or sender is refused.
//! - **Replay**: Olm message keys are single-use ([`CryptoError::OlmReplay`]). For Megolm each
//!   inbound session records, per message index, the SHA-256 of the message that used it: the
//!   same message again (a re-sync of history) decrypts again; a *different* message at a used
//!   index is [`CryptoError::Replay`]. (Only the session owner can sign a Megolm message, so
//!   this catches a sender whose ratchet state was restored or reused, or a malicious one.)
//! - **Trust** ([`TrustStore`]): the identity key first seen for each (user, device) is pinned;
//!   a different key is [`CryptoError::IdentityChanged`] in both directions, never silently
//!   accepted, until [`DeviceCrypto::accept_new_identity`]. Users verify each other by comparing
//!   a [`safety_number`] (Signal's numeric fingerprint over all of both users' device keys) or
//!   a device's [`fingerprint`].
//! - **Storage** (`CryptoStore`, with the `native` feature): the whole state in one
//!   AES-256-GCM encrypted file, mode 0600, written atomically; the key in a separate 0600 file.
//!   See the `store` docs. The sealed format itself is [`sealed`], which the web client uses to
//!   keep the same state in IndexedDB.
//!
//! Every error is a typed [`CryptoError`], and a failed call leaves the object usable.
//!
//! # Envelopes (what the server sees)
//!
//! All binary values are unpadded standard base64; keys are as vodozemac prints them.
//!
//! A `sendToDevice` payload (Olm):
//!
//! ```json
//! {"v":1,"t":"olm","type":0,"body":"<base64 Olm message>","sk":"<sender Curve25519 identity key>"}
//! ```
//!
//! `type` 0 is a pre-key message (it creates the session; it also reveals which of the
//! recipient's one-time keys was used), 1 a normal message. The plaintext inside is
//! `{"sender","sender_device","recipient","recipient_device","recipient_key","body":"<base64>"}`.
//!
//! A room key, the plaintext of an Olm message:
//!
//! ```json
//! {"v":1,"t":"room_key","chat":"<chat session id>","sid":"<megolm session id>","index":0,"key":"<base64 session key>"}
//! ```
//!
//! A `sendMessage` payload (Megolm):
//!
//! ```json
//! {"v":1,"t":"megolm","sid":"<megolm session id>","sk":"<sender Curve25519 identity key>","body":"<base64 Megolm message>"}
//! ```
//!
//! So the server sees: which device sent to which (it routes them anyway), the devices'
//! public identity keys, which Megolm session and message index (inside `body`) a message
//! uses, when sessions rotate, and ciphertext lengths (Megolm pads to the AES block, 16 bytes;
//! overhead is about 90 bytes plus base64's third). It sees no plaintext, no room key and no
//! chat message content.
//!
//! # Not covered
//!
//! Cross-signing (one user key vouching for all of a user's devices), key backup, forwarding
//! room keys between a user's own devices for history (a new companion gets the primary's
//! decrypted history instead, in an encrypted bundle: `crate::history_bundle`), and automatic
//! rotation after N messages or a week (callers can use [`DeviceCrypto::outbound_session_info`]
//! and [`DeviceCrypto::rotate`]).

#![warn(missing_docs)]

mod device;
mod envelope;
mod error;
mod safety;
pub mod sealed;
#[cfg(feature = "native")]
pub mod store;
#[cfg(test)]
mod tests;
mod trust;

pub use device::{DeviceCrypto, ExportedRoomKey, OneTimeKey, ToDeviceMessage, verify_one_time_key};
pub use envelope::{EnvelopeKind, envelope_kind};
pub use error::CryptoError;
pub use safety::{fingerprint, safety_number};
pub use sealed::SealError;
#[cfg(feature = "native")]
pub use store::{CryptoStore, StoreError};
pub use trust::{TrustOutcome, TrustStore};
