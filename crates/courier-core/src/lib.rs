//! Courier's domain: identifiers, the client protocol, use cases and the ports they need.
//!
//! Map of the crate:
//! - [`ids`], [`phone`]: values that can only hold valid data (parse, don't validate).
//! - [`secrets`]: API keys and one-time codes, generated from a CSPRNG and stored only as hashes.
//! - [`error`]: the protocol's error codes and the [`ApiError`] every use case returns.
//! - [`protocol`]: request bodies, WebSocket frames and replies as they travel on the wire.
//! - [`ports`]: the narrow traits use cases need (stores, SMS, the connection gateway, the clock).
//! - [`rate_limit`]: rate-limit rules (token buckets, fixed windows) and their defaults.
//! - [`settings`]: profile fields, privacy choices and who may see what.
//! - [`media`]: media uploads, where they were sent, who may download them.
//! - [`usecases`]: one module per operation.
//! - [`memory`]: in-memory ports, for tests of the use cases and of the layers above.
//!
//! Error policy: use cases return [`ApiError`]; failures of a port keep their cause so the
//! Lambda layer can log it, and clients see only a code and a message that says what to fix.
//! This crate depends on no AWS or Lambda crate (CI checks it).

pub mod chat;
pub mod clock;
pub mod error;
pub mod ids;
pub mod media;
pub mod memory;
pub mod phone;
pub mod ports;
pub mod protocol;
pub mod rate_limit;
pub mod secrets;
pub mod settings;
pub mod usecases;

pub use error::{ApiError, ErrorCode};
pub use ids::{ConnectionId, DeviceId, MsgId, SessionId, UserId};
pub use phone::PhoneNumber;
