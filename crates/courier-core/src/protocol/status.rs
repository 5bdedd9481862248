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

/// A status as the protocol shows it (`viewStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusItem {
    /// The poster.
    pub user_id: String,
    /// Its id.
    pub status_id: String,
    /// The poster's device that encrypted it.
    pub device_id: String,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// Media ids.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// When it was posted.
    pub posted_at: String,
    /// When it stops being shown.
    pub expires_at: String,
}

impl From<&crate::ports::Status> for StatusItem {
    fn from(s: &crate::ports::Status) -> Self {
        StatusItem {
            user_id: s.user_id.to_string(),
            status_id: s.status_id.clone(),
            device_id: s.device_id.to_string(),
            payload: s.payload.clone(),
            attachments: s.attachments.clone(),
            posted_at: crate::chat::timestamp(s.posted_at),
            expires_at: crate::chat::timestamp(s.expires_at),
        }
    }
}

/// Reply to `postStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostedStatus {
    /// The new status.
    pub status_id: String,
    /// When it stops being shown.
    pub expires_at: String,
}

/// Reply to `removeStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedStatus {
    /// Always true.
    pub removed: bool,
}

/// Reply to `viewStatus`: one page of a poster's live statuses, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusesPage {
    /// The poster.
    pub user_id: String,
    /// What the caller may see.
    pub statuses: Vec<StatusItem>,
    /// Whether more follow (ask again with `after`).
    pub has_more: bool,
}

/// One viewer of a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusViewer {
    /// The viewer.
    pub user_id: String,
    /// When first.
    pub viewed_at: String,
}

/// Reply to `getStatusViewers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewersPage {
    /// The status.
    pub status_id: String,
    /// By viewer id.
    pub viewers: Vec<StatusViewer>,
    /// Whether more follow.
    pub has_more: bool,
}

/// Reply to `getStatusAudience`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudiencePage {
    /// Who may see the caller's statuses, by id.
    pub user_ids: Vec<String>,
    /// Whether more follow.
    pub has_more: bool,
}

/// The `statusPosted` event (the payload itself is fetched with `viewStatus`).
pub fn status_posted_event(s: &crate::ports::Status) -> String {
    Event::StatusPosted {
        user_id: s.user_id.to_string(),
        status_id: s.status_id.clone(),
        expires_at: crate::chat::timestamp(s.expires_at),
    }
    .frame()
}
