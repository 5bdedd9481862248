//! Devices, keys and device-to-device messages: their params and events.

use super::*;

use crate::ports::{DeviceMessage, SignedKey};

/// `uploadKeys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadKeysParams {
    /// Curve25519 identity key.
    pub identity_key: String,
    /// Ed25519 signing key.
    pub signing_key: String,
    /// New one-time keys (0 to 100).
    pub one_time_keys: Vec<SignedKey>,
    /// Replaces the fallback key when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_key: Option<SignedKey>,
}

/// `claimKeys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimKeysParams {
    /// Whose keys.
    pub user_id: String,
    /// Only these devices (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
}

/// `listDevices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDevicesParams {
    /// 1 to 50 users (`MAX_LIST_USERS` of the keys use case).
    pub user_ids: Vec<String>,
}

/// `removeDevice`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveDeviceParams {
    /// The device to remove.
    pub device_id: String,
}

/// One message of `sendToDevice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingDeviceMessage {
    /// Target user.
    pub user_id: String,
    /// Target device.
    pub device_id: String,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
}

/// `sendToDevice`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendToDeviceParams {
    /// 1 to 100 messages.
    pub messages: Vec<OutgoingDeviceMessage>,
}

/// `readDeviceMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadDeviceMessagesParams {
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `ackDeviceMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckDeviceMessagesParams {
    /// 1 to 100 message ids.
    pub ids: Vec<String>,
}

/// A message in a device's queue as the protocol shows it (`deviceMessage` events,
/// `readDeviceMessages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedDeviceMessage {
    /// Its id in the queue (ids sort in queue order); acknowledge it with `ackDeviceMessages`.
    pub id: String,
    /// The sending user.
    pub sender: String,
    /// The sending device.
    pub sender_device: String,
    /// The opaque payload (an Olm envelope).
    pub payload: String,
    /// When it was queued.
    #[serde(default)]
    pub sent_at: String,
}

impl From<&DeviceMessage> for QueuedDeviceMessage {
    fn from(m: &DeviceMessage) -> Self {
        QueuedDeviceMessage {
            id: m.id.clone(),
            sender: m.sender.to_string(),
            sender_device: m.sender_device.to_string(),
            payload: m.payload.clone(),
            sent_at: crate::chat::timestamp(m.sent_at),
        }
    }
}

/// Reply to `readDeviceMessages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMessagesPage {
    /// Oldest first.
    pub messages: Vec<QueuedDeviceMessage>,
    /// Whether more are queued.
    #[serde(default)]
    pub has_more: bool,
}

/// A (user, device) pair, with the queued message's id in `sendToDevice`'s `queued`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRef {
    /// The user.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The queued message's id (only in `sendToDevice`'s `queued`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Reply to `sendToDevice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendToDeviceReply {
    /// The messages queued, with their ids.
    #[serde(default)]
    pub queued: Vec<DeviceRef>,
    /// Targets that do not exist (removed devices): they got nothing.
    #[serde(default)]
    pub unknown_devices: Vec<DeviceRef>,
}

/// Reply to `ackDeviceMessages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedDeviceMessages {
    /// How many of the ids were in the queue (and are gone now).
    pub acked: usize,
}

/// Reply to `uploadKeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadKeysReply {
    /// Unclaimed one-time keys the calling device has now, so it can top up.
    pub one_time_key_count: usize,
}

/// One device's keys, as `claimKeys` hands them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyBundle {
    /// The user.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// Its Curve25519 identity key.
    pub identity_key: String,
    /// Its Ed25519 signing key (verifies the one-time key's signature).
    pub signing_key: String,
    /// A one-time key (used at most once), the fallback key, or none.
    #[serde(default)]
    pub one_time_key: Option<SignedKey>,
    /// Whether `one_time_key` is the device's fallback key.
    #[serde(default)]
    pub fallback: bool,
}

/// Reply to `claimKeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimKeysReply {
    /// One bundle per device with keys.
    pub devices: Vec<KeyBundle>,
}

/// One device of a user, as `listDevices` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDevice {
    /// The user.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// Its name; only for the caller's own devices (absent for anyone else's: the server shows
    /// a device's name to its owner alone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What it runs.
    pub platform: Platform,
    /// Whether it is the account's primary device (the phone that registered the number).
    #[serde(default)]
    pub primary: bool,
    /// Its Curve25519 identity key, once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key: Option<String>,
    /// Its Ed25519 signing key, once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Unclaimed one-time keys (only for the caller's own devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_key_count: Option<u32>,
}

/// Reply to `listDevices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceList {
    /// Every device of the users asked for.
    pub devices: Vec<UserDevice>,
}

/// The `deviceMessage` event.
pub fn device_message_event(m: &DeviceMessage) -> String {
    Event::DeviceMessage {
        message: QueuedDeviceMessage::from(m),
    }
    .frame()
}

/// Reply to `POST /v1/devices/link-requests`: what the new device shows and polls with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkRequested {
    /// The poll's id (a 128-bit secret).
    pub link_id: String,
    /// The code the primary device enters.
    pub code: String,
    /// How long the code works.
    pub expires_in_seconds: u64,
}

/// Reply to `approveDeviceLink`: the device that was linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedDevice {
    /// The new device.
    pub device_id: String,
    /// Its name.
    pub name: String,
    /// Its platform.
    pub platform: Platform,
}
