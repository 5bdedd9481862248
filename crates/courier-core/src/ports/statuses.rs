//! Status posts (24-hour stories) and their viewers.

use crate::error::PortError;
use crate::ids::{DeviceId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A status post: ciphertext every allowed viewer can read, live until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The poster.
    pub user_id: UserId,
    /// Time-sortable id (a ULID), unique per poster.
    pub status_id: String,
    /// The poster's device that posted it (its Megolm session decrypts it).
    pub device_id: DeviceId,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// Media ids.
    pub attachments: Vec<String>,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// When it stops being shown (storage deletes it some time later: DynamoDB TTL).
    pub expires_at: DateTime<Utc>,
}

/// Who viewed a status, and when first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    /// The viewer.
    pub viewer: UserId,
    /// When it first viewed the status.
    pub viewed_at: DateTime<Utc>,
}

/// Status posts and their viewers, per poster. Expired items may still be stored (TTL deletion
/// lags): every read takes `now` and leaves them out.
#[async_trait]
pub trait StatusStore: Send + Sync {
    /// Stores a new status.
    async fn put_status(&self, status: &Status) -> Result<(), PortError>;
    /// A poster's statuses live at `now` with ids after `after`, oldest first, at most `limit`,
    /// and whether more follow.
    async fn live_statuses(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Status>, bool), PortError>;
    /// One status of a poster, if it is live at `now`.
    async fn status(
        &self,
        user: &UserId,
        status_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Status>, PortError>;
    /// Records that `viewer` saw these statuses of `poster` at `at`; a view already recorded
    /// keeps its first time.
    async fn record_views(
        &self,
        poster: &UserId,
        statuses: &[Status],
        viewer: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Viewers of a status (by viewer id, after `after`), at most `limit`, and whether more follow.
    async fn viewers(
        &self,
        poster: &UserId,
        status_id: &str,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<(Vec<StatusView>, bool), PortError>;
    /// Deletes a status and its viewer records.
    async fn remove_status(&self, poster: &UserId, status_id: &str) -> Result<(), PortError>;
    /// Deletes every status of a user and their viewer records (account deletion).
    async fn delete_statuses(&self, user: &UserId) -> Result<(), PortError>;
}
