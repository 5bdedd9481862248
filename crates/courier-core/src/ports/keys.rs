//! Keys and device queues (end-to-end encryption).

use crate::error::PortError;
use crate::ids::{DeviceId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A signed Curve25519 key others claim to start an Olm session with a device: a one-time key
/// or the fallback key. The server checks its shape, never its cryptography.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedKey {
    /// Unique per device.
    pub key_id: String,
    /// The public key, unpadded base64.
    pub key: String,
    /// Its signature by the device's signing key, unpadded base64.
    pub signature: String,
}

/// A device's entry in the key directory: its long-term public keys and its fallback key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    /// The user it belongs to.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// Curve25519 identity key.
    pub identity_key: String,
    /// Ed25519 signing key (verifies the one-time keys' signatures).
    pub signing_key: String,
    /// Handed out, and not consumed, once the one-time keys run out.
    pub fallback: Option<SignedKey>,
}

/// The key directory: per device, its [`DeviceKeys`] and a pool of one-time keys, each of which
/// is handed out at most once.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The entries of every device of a user that has uploaded keys (one query).
    async fn device_keys(&self, user: &UserId) -> Result<Vec<DeviceKeys>, PortError>;
    /// Writes a device's entry. With `discard_old`, its one-time keys are deleted first (the
    /// device's identity changed: keys signed by the old one are useless).
    async fn put_device_keys(&self, keys: &DeviceKeys, discard_old: bool) -> Result<(), PortError>;
    /// The ids of a device's unclaimed one-time keys (strongly consistent).
    async fn one_time_key_ids(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>, PortError>;
    /// How many unclaimed one-time keys a device has.
    async fn one_time_key_count(&self, user: &UserId, device: &DeviceId) -> Result<u32, PortError>;
    /// Stores one-time keys (their ids are not stored yet).
    async fn add_one_time_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: &[SignedKey],
    ) -> Result<(), PortError>;
    /// Removes and returns one unclaimed one-time key of a device; `None` when none is left.
    /// Two claims, however concurrent, never get the same key.
    async fn claim_one_time_key(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Option<SignedKey>, PortError>;
    /// Deletes a device's entry and all its one-time keys.
    async fn delete_device_keys(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError>;
}

/// A message for one device (a room key, a key request...), opaque to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMessage {
    /// Time-sortable id (a ULID): queue order.
    pub id: String,
    /// The sending user.
    pub sender: UserId,
    /// The sending device.
    pub sender_device: DeviceId,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// When it was queued.
    pub sent_at: DateTime<Utc>,
}

/// A device message addressed to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Target user.
    pub user_id: UserId,
    /// Target device.
    pub device_id: DeviceId,
    /// The message.
    pub message: DeviceMessage,
    /// When it is dropped unread.
    pub expires_at: DateTime<Utc>,
}

/// Per-device queues of device messages, oldest first.
#[async_trait]
pub trait DeviceQueueStore: Send + Sync {
    /// Stores messages (all of them, or fails).
    async fn enqueue(&self, messages: &[QueuedMessage]) -> Result<(), PortError>;
    /// Up to `limit` messages of a device's queue that have not expired at `now`, oldest first,
    /// and whether more follow.
    async fn read(
        &self,
        user: &UserId,
        device: &DeviceId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<DeviceMessage>, bool), PortError>;
    /// Removes these ids from a device's queue; returns how many were in it.
    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        ids: &[String],
    ) -> Result<usize, PortError>;
    /// Deletes a device's whole queue.
    async fn purge(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError>;
}
