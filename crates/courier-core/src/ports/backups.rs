//! User backup records.

use crate::error::PortError;
use crate::ids::UserId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A user backup: a ciphertext object the client uploaded to `backups/<userId>/<backupId>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// The user it belongs to.
    pub user_id: UserId,
    /// Random id, unique per user.
    pub backup_id: String,
    /// The size the upload was bound to, in bytes.
    pub size: u64,
    /// When `createBackup` was called.
    pub created_at: DateTime<Utc>,
    /// The object was seen in storage with the right size (until then it is pending and expires).
    pub complete: bool,
}

/// The records of user backups (the objects themselves are in an [`ObjectStore`]).
#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Stores a new pending record.
    async fn put_backup(&self, backup: &BackupRecord) -> Result<(), PortError>;
    /// Every record of a user (pending ones included), newest first.
    async fn backups(&self, user: &UserId) -> Result<Vec<BackupRecord>, PortError>;
    /// One record of a user.
    async fn backup(
        &self,
        user: &UserId,
        backup_id: &str,
    ) -> Result<Option<BackupRecord>, PortError>;
    /// Marks a record complete (its object was uploaded); it no longer expires.
    async fn mark_complete(&self, user: &UserId, backup_id: &str) -> Result<(), PortError>;
    /// Deletes a record (deleting a missing one is not an error).
    async fn delete_backup(&self, user: &UserId, backup_id: &str) -> Result<(), PortError>;
}
