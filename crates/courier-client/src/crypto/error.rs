//! The one error type of the crypto core.

/// Why an encryption, decryption or key operation was refused.
///
/// Every variant leaves the [`DeviceCrypto`](super::DeviceCrypto) usable: a failed call changes
/// no session state that a later, valid message needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The payload is not an envelope of this module (not JSON, unknown version or type, bad
    /// base64, or an undecodable Olm/Megolm message inside).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// A key given by the caller is not a valid Curve25519 / Ed25519 key.
    #[error("not a valid key: {0}")]
    InvalidKey(String),
    /// The ciphertext failed its MAC or signature check: it was altered in transit, or was not
    /// encrypted with this session.
    #[error("the message failed authentication (tampered with, or not encrypted for this session)")]
    Tampered,
    /// A Megolm message index that already decrypted one message came with a different
    /// ciphertext, or the same ciphertext came back as another message id. (The same message
    /// again, e.g. on a re-sync, is not a replay.)
    #[error(
        "message index {index} of megolm session {session_id} was already used by another \
         message (replay)"
    )]
    Replay {
        /// The Megolm session.
        session_id: String,
        /// The reused message index.
        index: u32,
    },
    /// This Olm message was already decrypted (its one-use message key is gone), or is too old.
    #[error("olm message already decrypted, or too old to decrypt (replay)")]
    OlmReplay,
    /// No room key for this Megolm session has arrived yet: ask the sender's device for it.
    #[error(
        "no megolm session {session_id} for chat {chat_session_id}: ask \
         {sender_user}/{sender_device} for the room key"
    )]
    UnknownSession {
        /// The chat the message was read from.
        chat_session_id: String,
        /// The Megolm session id the message names.
        session_id: String,
        /// Who the server says sent it.
        sender_user: String,
        /// Which of the sender's devices.
        sender_device: String,
    },
    /// The message is older than the first index this device holds a key for: it was sent
    /// before this device was given the room key (a late-joining or newly linked device).
    #[error(
        "message index {index} precedes the first index {first_known_index} this device holds \
         for megolm session {session_id}"
    )]
    UnknownMessageIndex {
        /// The Megolm session.
        session_id: String,
        /// The first message index this device can decrypt.
        first_known_index: u32,
        /// The message's index.
        index: u32,
    },
    /// The envelope's sender identity key is not the one expected for the sender.
    #[error("sender identity key mismatch: expected {expected}, the message says {got}")]
    WrongSenderKey {
        /// The key the caller (or the room key's origin) says the sender has.
        expected: String,
        /// The key the message carries.
        got: String,
    },
    /// The message names a different sender than the one it was delivered as.
    #[error("wrong sender: {0}")]
    WrongSender(String),
    /// An Olm message that was encrypted for another user, device or identity key.
    #[error("the message was encrypted for another device")]
    WrongRecipient,
    /// A room key or Megolm message for another chat than the one it was read from.
    #[error("megolm session {session_id} belongs to chat {expected}, not {got}")]
    WrongChat {
        /// The Megolm session.
        session_id: String,
        /// The chat the session belongs to (or the caller named).
        expected: String,
        /// The chat named instead.
        got: String,
    },
    /// The identity key of a device differs from the one pinned when it was first seen. Nothing
    /// is encrypted to or accepted from the new key until
    /// [`DeviceCrypto::accept_new_identity`](super::DeviceCrypto::accept_new_identity).
    #[error("the identity key of {user}/{device} changed from {old} to {new}")]
    IdentityChanged {
        /// The user.
        user: String,
        /// The device.
        device: String,
        /// The pinned key.
        old: String,
        /// The key presented now.
        new: String,
    },
    /// There is no Olm session with this peer yet (and, when encrypting, no one-time key was
    /// given to create one: claim one with `claimKeys`).
    #[error("no olm session with {user}/{device}")]
    NoOlmSession {
        /// The peer user.
        user: String,
        /// The peer device.
        device: String,
    },
    /// A room key from a device whose identity key this device has not pinned: room keys are
    /// taken only from devices that sent an Olm message.
    #[error(
        "no pinned identity key for {user}/{device}: room keys are accepted only from devices \
         that sent an olm message"
    )]
    UntrustedDevice {
        /// The user.
        user: String,
        /// The device.
        device: String,
    },
    /// An Olm session could not be created (unknown or already used one-time key, bad key).
    #[error("could not create an olm session: {0}")]
    OlmSession(String),
    /// A one-time key signature does not verify.
    #[error("the one-time key signature is not valid")]
    BadSignature,
}
