//! Registration codes, SMS, users and devices, API keys and connect tickets.

use crate::error::PortError;
use crate::ids::{DeviceId, UserId};
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
    /// The user it belongs to.
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

/// Users, their numbers and devices as the users table holds them: every read, and the
/// account's own records there (pending links, the registration PIN). Operations that only read
/// accounts take this, so their function needs no API-keys table.
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// The user holding a number, if any.
    async fn user_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError>;
    /// A user's profile.
    async fn user(&self, user_id: &UserId) -> Result<Option<User>, PortError>;
    /// A user's devices.
    async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>, PortError>;
    /// The account's approved links whose new device has not collected its key yet (each will
    /// become a companion): they count toward the companion cap.
    async fn pending_links(&self, user_id: &UserId) -> Result<Vec<PendingLink>, PortError>;
    /// Ends the account's pending links: none of them can be completed any more. Returns how
    /// many there were. Every revocation (re-registration, `deleteAccount`, `removeDevice`) calls
    /// it, so a device approved earlier cannot join after the owner has cleaned up.
    async fn end_pending_links(&self, user_id: &UserId) -> Result<usize, PortError>;
    /// Which account a device belongs to, if it exists (device ids are unique across accounts).
    async fn device_owner(&self, device: &DeviceId) -> Result<Option<UserId>, PortError>;
    /// The account's registration PIN (two-step verification), if it has one.
    async fn registration_pin(
        &self,
        user_id: &UserId,
    ) -> Result<Option<RegistrationPinRecord>, PortError>;
    /// Writes the account's PIN record if its stored version is `expected` (`None`: there is
    /// none); `Conflict` otherwise, so concurrent wrong tries cannot undercount.
    async fn put_registration_pin(
        &self,
        pin: &RegistrationPinRecord,
        expected: Option<u64>,
    ) -> Result<(), PortError>;
    /// Removes the account's PIN record (nothing if there is none); with `expected`, only while
    /// the stored record still has that version (`Conflict` otherwise, nothing removed), so a
    /// removal proven against one PIN never removes a PIN set meanwhile. `delete_account`
    /// removes it too.
    async fn delete_registration_pin(
        &self,
        user_id: &UserId,
        expected: Option<u64>,
    ) -> Result<(), PortError>;
}

/// The directory, plus the writes that add or remove devices: each writes the users table and
/// the API-keys table in one transaction.
#[async_trait]
pub trait AccountStore: UserDirectory {
    /// Creates the user, claims its number and adds its first device with its key, all or
    /// nothing. `Conflict` if the number is already claimed.
    async fn create_account(&self, user: &User, device: &Device) -> Result<(), PortError>;
    /// Adds `new_primary` with its key and removes `old` devices with their keys, all or nothing.
    async fn replace_devices(&self, new_primary: &Device, old: &[Device]) -> Result<(), PortError>;
    /// Removes the user, its number claim, its devices and their keys.
    async fn delete_account(&self, user: &User, devices: &[Device]) -> Result<(), PortError>;
    /// Removes one device with its API key, all or nothing.
    async fn remove_device(&self, device: &Device) -> Result<(), PortError>;
}

/// An account's registration PIN: its Argon2id hash and the wrong tries against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPinRecord {
    /// The account.
    pub user_id: UserId,
    /// The PIN's Argon2id hash (PHC string).
    pub hash: String,
    /// Wrong PINs given since the PIN was set or last proven.
    pub failed_attempts: u32,
    /// Set when the tries ran out: no PIN is accepted before it.
    pub locked_until: Option<DateTime<Utc>>,
    /// Optimistic-locking version, starting at 1.
    pub version: u64,
}

/// An approved link whose new device has not collected its key yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLink {
    /// The link request.
    pub link_id: String,
    /// The device it will add.
    pub device_id: DeviceId,
    /// When it stops working (the code's expiry).
    pub expires_at: DateTime<Utc>,
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

/// One-time connect tickets (`POST /v1/connect-tickets`): what a browser puts in the WebSocket
/// URL instead of its key. Each is stored by its hash with the hash of the key it stands for.
#[async_trait]
pub trait ConnectTicketStore: Send + Sync {
    /// Stores a ticket for `key` until `expires_at`.
    async fn put_ticket(
        &self,
        ticket: &ApiKeyHash,
        key: &ApiKeyHash,
        expires_at: DateTime<Utc>,
    ) -> Result<(), PortError>;

    /// Removes the ticket and answers its key and expiry, if it was there. However many take
    /// the same ticket at once, at most one gets it (single use).
    async fn take_ticket(
        &self,
        ticket: &ApiKeyHash,
    ) -> Result<Option<(ApiKeyHash, DateTime<Utc>)>, PortError>;
}
