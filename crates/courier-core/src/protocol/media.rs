//! Media uploads and backups: their params.

use super::*;

/// `createMediaUpload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMediaUploadParams {
    /// The media type the upload is bound to (the ciphertext is stored with it).
    pub content_type: String,
    /// Exact size in bytes of what will be uploaded (the ciphertext).
    pub size: u64,
}

/// `getMediaDownload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMediaDownloadParams {
    /// The media.
    pub media_id: String,
}
/// `createBackup`: the size of the encrypted backup file the client will upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBackupParams {
    /// Bytes; the upload is bound to exactly this many.
    pub size: u64,
}

/// `listBackups`: no fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListBackupsParams {}

/// `getBackupDownload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetBackupDownloadParams {
    /// Which backup (from `listBackups`).
    pub backup_id: String,
}
