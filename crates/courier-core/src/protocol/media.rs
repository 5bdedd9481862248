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

/// Headers a presigned request must carry (signed into its URL), by name.
pub type Headers = std::collections::BTreeMap<String, String>;

/// Reply to `createMediaUpload`: where and how to upload the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaUpload {
    /// The media id.
    pub media_id: String,
    /// Where to upload.
    pub upload_url: String,
    /// The method (`PUT`).
    pub upload_method: String,
    /// Headers the upload must carry.
    #[serde(default)]
    pub upload_headers: Headers,
    /// How long the URL stays valid.
    pub expires_in_seconds: u64,
}

/// Reply to `getMediaDownload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaDownload {
    /// The media id.
    pub media_id: String,
    /// Where to download the ciphertext.
    pub download_url: String,
    /// Its size in bytes.
    pub size: u64,
    /// The media type it was uploaded with.
    pub content_type: String,
    /// How long the URL stays valid.
    pub expires_in_seconds: u64,
}

/// Reply to `createBackup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupUpload {
    /// The backup's id.
    pub backup_id: String,
    /// Where to `PUT` the encrypted file.
    pub upload_url: String,
    /// Headers the upload must carry.
    #[serde(default)]
    pub upload_headers: Headers,
    /// How long the URL stays valid.
    pub expires_in_seconds: u64,
}

/// One uploaded backup (`listBackups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupEntry {
    /// Its id.
    pub backup_id: String,
    /// Its size in bytes, as uploaded.
    pub size: u64,
    /// When it was created.
    pub created_at: String,
}

/// Reply to `listBackups`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupList {
    /// The caller's uploaded backups.
    pub backups: Vec<BackupEntry>,
}

/// Reply to `getBackupDownload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupDownload {
    /// The backup.
    pub backup_id: String,
    /// Its size in bytes, as uploaded.
    pub size: u64,
    /// Where to download it.
    pub download_url: String,
    /// Headers the download must carry.
    #[serde(default)]
    pub download_headers: Headers,
    /// How long the URL stays valid.
    pub expires_in_seconds: u64,
}
