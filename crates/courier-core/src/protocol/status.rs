//! Status posts: their params and events.

use super::*;

/// `postStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostStatusParams {
    /// Ciphertext (a Megolm message of the poster's status room).
    pub payload: String,
    /// Media ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// `removeStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveStatusParams {
    /// One of the caller's statuses.
    pub status_id: String,
}

/// `viewStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewStatusParams {
    /// Whose statuses.
    pub user_id: String,
    /// Continue after this status id (the last one of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `getStatusViewers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetStatusViewersParams {
    /// One of the caller's statuses.
    pub status_id: String,
    /// Continue after this viewer's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `getStatusAudience`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetStatusAudienceParams {
    /// Continue after this user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A status as the protocol shows it.
pub fn status_json(s: &crate::ports::Status) -> Value {
    json!({
        "userId": s.user_id, "statusId": s.status_id, "deviceId": s.device_id,
        "payload": s.payload, "attachments": s.attachments,
        "postedAt": crate::chat::timestamp(s.posted_at),
        "expiresAt": crate::chat::timestamp(s.expires_at)
    })
}

/// The `statusPosted` event (the payload itself is fetched with `viewStatus`).
pub fn status_posted_event(s: &crate::ports::Status) -> String {
    json!({
        "type": "event", "event": "statusPosted", "userId": s.user_id, "statusId": s.status_id,
        "expiresAt": crate::chat::timestamp(s.expires_at)
    })
    .to_string()
}
