//! Object storage (media and backups) through presigned requests.

use crate::error::PortError;
use async_trait::async_trait;

/// An HTTP request, signed by the server, that a client sends straight to object storage (S3
/// presigned URLs): the bytes never pass through a function.
#[derive(Debug, Clone, PartialEq)]
pub struct PresignedRequest {
    /// `PUT` or `GET`.
    pub method: String,
    /// The signed URL.
    pub url: String,
    /// Headers the client must send exactly as given (they are part of the signature).
    pub headers: Vec<(String, String)>,
    /// How long the URL stays valid.
    pub expires_in_seconds: u64,
}

/// Object storage for ciphertext blobs (media, backups): presigned uploads and downloads, and the
/// little bookkeeping the server does itself (sizes, tags for lifecycle rules, deletion).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A `PUT` for `key` bound to `content_type` and exactly `size` bytes, stored with `tags`
    /// (S3 object tags, which lifecycle rules can act on), valid for `ttl`.
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        tags: &[(&str, &str)],
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError>;
    /// A `GET` for `key`, valid for `ttl`.
    async fn presign_get(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError>;
    /// The stored object's size in bytes; `None` if nothing is stored under `key`.
    async fn size(&self, key: &str) -> Result<Option<u64>, PortError>;
    /// Replaces the object's tags.
    async fn set_tags(&self, key: &str, tags: &[(&str, &str)]) -> Result<(), PortError>;
    /// Deletes the object (deleting a missing one is not an error).
    async fn delete(&self, key: &str) -> Result<(), PortError>;
}

/// Where user reports go for moderation (`reportUser`): written by the server, read by no
/// function (on AWS, only the moderation role may read them: template.yaml's `ModerationRole`).
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores one report as `key` (JSON).
    async fn file_report(&self, key: &str, json: &[u8]) -> Result<(), PortError>;
}
