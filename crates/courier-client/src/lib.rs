//! Courier's client SDK: the HTTP account endpoints, an authenticated WebSocket session with
//! request/reply correlation by `requestId`, and a resilient messaging [`Client`] on top of it
//! (reconnect with backoff, sync after every connect, de-duplication, idempotent sends). Used by
//! the CLI, the end-to-end tests and the benchmarks.
//!
//! - [`accounts`]: `registerAccount` / `validateAccount` over HTTP.
//! - [`crypto`]: end-to-end encryption (Olm/Megolm via vodozemac), trust pins, encrypted store.
//! - [`session`]: one WebSocket connection, with typed actions.
//! - [`protocol`]: messages, sessions, statuses, events and request frames as types.
//! - [`client`]: the resilient client, with end-to-end encryption when configured.
//! - [`e2ee`]: the crypto core wired to the key directory and device queues.
//! - [`content`]: replies, reactions and edits inside encrypted text, and a chat as shown.
//! - [`cursors`]: what a client has seen, per session (exported and imported between runs).
//! - [`media`]: files encrypted (AES-256-GCM) before upload, and their downloads.
//! - [`history`]: the device's message history, encrypted at rest.
//! - [`history_bundle`]: a new linked device's history, sent by the primary device.
//! - [`backup`]: user backups (history, room keys, cursors) under a passphrase.
//! - [`payload`]: text to payload and back for clients without end-to-end encryption.
//!
//! The `native` feature (on by default) holds everything that needs an operating system:
//! tokio, the WebSocket and HTTP transports, the on-disk stores. Without it the crate builds
//! for `wasm32-unknown-unknown`, where `crates/courier-web` wraps the crypto, the protocol types
//! and [`e2ee`] for the browser client (its transport is the browser's).

#[cfg(feature = "native")]
pub mod accounts;
#[cfg(feature = "native")]
pub mod backup;
#[cfg(feature = "native")]
pub mod client;
pub mod content;
pub mod crypto;
pub mod cursors;
pub mod e2ee;
#[cfg(feature = "native")]
pub mod heartbeat;
pub mod history;
pub mod history_bundle;
pub mod media;
pub mod payload;
pub mod protocol;
#[cfg(feature = "native")]
pub mod session;

#[cfg(feature = "native")]
pub use accounts::AccountsClient;
#[cfg(feature = "native")]
pub use client::{BackoffTimer, Client, ClientConfig, Encryption, TokioTimer};
#[cfg(feature = "native")]
pub use crypto::CryptoStore;
pub use crypto::{CryptoError, DeviceCrypto, TrustStore};
pub use cursors::{Cursors, SessionCursor};
pub use e2ee::SafetyInfo;
pub use protocol::{
    DeviceMessage, DirectChat, DiscoveredContact, Event, KeyBundle, Message, MessageKind,
    MessageStatus, MessagesPage, NewMessage, PushPlatform, Receipt, RecipientStatus, SentMessage,
    SessionSummary, StatusPost, StatusViewer, UserDevice,
};
#[cfg(feature = "native")]
pub use session::{ConnectError, Session};

/// A failed request: the protocol error the server sent, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a protocol error.
    #[error("{}: {}", .0.code, .0.message)]
    Api(courier_core::protocol::ErrorDetail),
    /// The server answered something that is not the protocol.
    #[error("unexpected reply (HTTP {status}): {body}")]
    Unexpected {
        /// HTTP status, or 0 on WebSocket.
        status: u16,
        /// What came back.
        body: String,
    },
    /// The connection failed or closed.
    #[error("transport: {0}")]
    Transport(String),
    /// No reply came within the request timeout.
    #[error("timed out waiting for the reply")]
    Timeout,
    /// The server refused the API key at the handshake (HTTP 401: revoked, or the account
    /// moved to another phone).
    #[error("the server refused the API key (HTTP 401)")]
    Unauthorized,
    /// The client was closed, or stopped after the key was refused.
    #[error("the client is closed")]
    Closed,
    /// End-to-end encryption refused: above all [`CryptoError::IdentityChanged`] (a contact's
    /// identity key changed; nothing is sent to it until the user accepts it).
    #[error("end-to-end encryption: {0}")]
    Crypto(#[from] CryptoError),
    /// The encrypted crypto state could not be loaded or saved.
    #[error("crypto store: {0}")]
    Store(String),
    /// A media file could not be uploaded, downloaded or decrypted (a digest that does not
    /// match, a refused transfer, a descriptor that is not one).
    #[error("media: {0}")]
    Media(String),
}

impl ClientError {
    /// The protocol error code, if the server sent one.
    pub fn code(&self) -> Option<courier_core::ErrorCode> {
        match self {
            ClientError::Api(d) => Some(d.code),
            _ => None,
        }
    }

    /// Whether the request may have failed in transit, so sending it again (with the same
    /// idempotency key) can succeed: transport failures, timeouts and server-side failures.
    pub fn is_retryable(&self) -> bool {
        use courier_core::ErrorCode;
        match self {
            ClientError::Transport(_) | ClientError::Timeout => true,
            ClientError::Api(d) => matches!(
                d.code,
                ErrorCode::Internal | ErrorCode::LimitExceeded | ErrorCode::Conflict
            ),
            // An HTTP 5xx without the protocol's body (the gateway's own errors). (On the
            // WebSocket the gateway's `{"message": "Internal server error"}` carries no request
            // id of ours: that request ends in a timeout.)
            ClientError::Unexpected { status, .. } => *status >= 500,
            ClientError::Unauthorized
            | ClientError::Closed
            | ClientError::Crypto(_)
            | ClientError::Store(_)
            | ClientError::Media(_) => false,
        }
    }
}
