//! Courier's client SDK: the HTTP account endpoints and an authenticated WebSocket session with
//! request/reply correlation by `requestId` and a stream of server events. Used by the CLI, the
//! end-to-end tests and the benchmarks.
//!
//! - [`accounts`]: `registerAccount` / `validateAccount` over HTTP.
//! - [`session`]: the WebSocket connection.

pub mod accounts;
pub mod session;

pub use accounts::AccountsClient;
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
}

impl ClientError {
    /// The protocol error code, if the server sent one.
    pub fn code(&self) -> Option<courier_core::ErrorCode> {
        match self {
            ClientError::Api(d) => Some(d.code),
            _ => None,
        }
    }
}
