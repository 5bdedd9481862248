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

/// A device message as the protocol shows it.
pub fn device_message_json(m: &DeviceMessage) -> Value {
    json!({
        "id": m.id, "sender": m.sender, "senderDevice": m.sender_device,
        "payload": m.payload, "sentAt": crate::chat::timestamp(m.sent_at)
    })
}

/// The `deviceMessage` event.
pub fn device_message_event(m: &DeviceMessage) -> String {
    json!({ "type": "event", "event": "deviceMessage", "message": device_message_json(m) })
        .to_string()
}
