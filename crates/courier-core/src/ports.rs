//! The narrow interfaces use cases need. Each adapter (DynamoDB, SNS, the API Gateway management
//! API, or the in-memory ones in [`crate::memory`]) implements the ones it can serve; each
//! function is given only the ports its operation uses, which is also its IAM policy.

use crate::error::PortError;
use crate::ids::{ConnectionId, DeviceId, UserId};
use crate::phone::PhoneNumber;
use crate::protocol::Platform;
use crate::secrets::{ApiKeyHash, CodeHash};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A code sent by SMS and not yet used, with the history that rate-limits sending.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRegistration {
    /// The number being registered.
    pub phone: PhoneNumber,
    /// The current code's salted hash.
    pub code: CodeHash,
    /// When the current code stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// Wrong codes entered against the current code.
    pub failed_attempts: u32,
    /// When codes were sent, within the rate-limit window.
    pub sent_at: Vec<DateTime<Utc>>,
    /// Optimistic-concurrency version; every write increments it.
    pub version: u64,
}

/// Pending registrations, one per phone number.
#[async_trait]
pub trait RegistrationStore: Send + Sync {
    /// The pending registration for a number (strongly consistent).
    async fn get(&self, phone: &PhoneNumber) -> Result<Option<PendingRegistration>, PortError>;
    /// Writes `reg` if the stored version is still `expected` (`None`: nothing stored).
    async fn put(&self, reg: &PendingRegistration, expected: Option<u64>) -> Result<(), PortError>;
    /// Removes the registration if its version is still `expected`.
    async fn delete(&self, phone: &PhoneNumber, expected: u64) -> Result<(), PortError>;
}

/// Sends SMS.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends `text` to `to`.
    async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<(), PortError>;
}

/// An account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Its id.
    pub user_id: UserId,
    /// The number it registered with.
    pub phone: PhoneNumber,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A device of an account, with the hash of its API key.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Owner.
    pub user_id: UserId,
    /// Its id.
    pub device_id: DeviceId,
    /// Name given by the user.
    pub name: String,
    /// Client kind.
    pub platform: Platform,
    /// Whether this is the phone the number was verified on (it approves linked devices).
    pub primary: bool,
    /// Hash of its API key.
    pub key_hash: ApiKeyHash,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Users, their phone numbers and devices.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The user holding a number, if any.
    async fn user_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError>;
    /// A user's profile.
    async fn user(&self, user_id: &UserId) -> Result<Option<User>, PortError>;
    /// A user's devices.
    async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>, PortError>;
    /// Creates the user, claims its number and adds its first device with its key, all or
    /// nothing. `Conflict` if the number is already claimed.
    async fn create_account(&self, user: &User, device: &Device) -> Result<(), PortError>;
    /// Adds `new_primary` with its key and removes `old` devices with their keys, all or nothing.
    async fn replace_devices(&self, new_primary: &Device, old: &[Device]) -> Result<(), PortError>;
    /// Removes the user, its number claim, its devices and their keys.
    async fn delete_account(&self, user: &User, devices: &[Device]) -> Result<(), PortError>;
}

/// Who a valid API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredential {
    /// The account.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
}

/// Looks up API keys by hash (the authorizer's only read).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The device a key hash belongs to, if the key is live.
    async fn device_for_key(&self, key: &ApiKeyHash)
    -> Result<Option<DeviceCredential>, PortError>;
}

/// A live WebSocket connection of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Gateway id.
    pub connection_id: ConnectionId,
    /// Account.
    pub user_id: UserId,
    /// Device.
    pub device_id: DeviceId,
    /// When it opened.
    pub connected_at: DateTime<Utc>,
}

/// Live connections, found by id (on disconnect) and by user (for fan-out).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Records a new connection.
    async fn add(&self, connection: &Connection) -> Result<(), PortError>;
    /// Forgets a connection; returns it if it was known.
    async fn remove(&self, connection_id: &ConnectionId) -> Result<Option<Connection>, PortError>;
    /// A user's live connections, with their devices.
    async fn for_user(&self, user_id: &UserId) -> Result<Vec<(DeviceId, ConnectionId)>, PortError>;
}

/// Why posting to a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The connection is closed (API Gateway's `GoneException`).
    #[error("connection is gone")]
    Gone,
    /// Anything else.
    #[error(transparent)]
    Other(#[from] PortError),
}

/// The WebSocket gateway's management API.
#[async_trait]
pub trait ConnectionGateway: Send + Sync {
    /// Sends one frame to a connection.
    async fn post(&self, connection_id: &ConnectionId, data: &str) -> Result<(), GatewayError>;
    /// Closes a connection (the gateway then runs `$disconnect`).
    async fn close(&self, connection_id: &ConnectionId) -> Result<(), GatewayError>;
}
