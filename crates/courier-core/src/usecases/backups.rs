//! `createBackup`, `listBackups`, `getBackupDownload`: user backups. The client encrypts its
//! history and keys with a passphrase-derived key and moves the bytes itself through presigned
//! URLs; the server sees only ciphertext sizes and keeps the newest [`KEEP_BACKUPS`] per user.

use crate::chat::timestamp;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::UserId;
use crate::ports::{BackupRecord, BackupStore, DeviceCredential, ObjectStore};
use crate::protocol::{
    BackupDownload, BackupEntry, BackupList, BackupUpload, CreateBackupParams,
    GetBackupDownloadParams, Headers,
};
use std::time::Duration;

/// The largest backup file accepted (bytes).
pub const MAX_BACKUP_BYTES: u64 = 512 * 1024 * 1024;
/// Complete backups kept per user; older ones are deleted, object and record.
pub const KEEP_BACKUPS: usize = 3;
/// Backups created but not yet seen uploaded, per user; more is `LIMIT_EXCEEDED`.
pub const MAX_PENDING_BACKUPS: usize = 3;
/// How long the presigned upload and download URLs stay valid.
pub const URL_TTL: Duration = Duration::from_secs(15 * 60);
/// The content type every backup upload is bound to.
pub const BACKUP_CONTENT_TYPE: &str = "application/octet-stream";

/// What the backup operations need.
pub struct Deps<'a> {
    /// Backup records.
    pub backups: &'a dyn BackupStore,
    /// The bucket the backup files are in.
    pub objects: &'a dyn ObjectStore,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The daily byte quota of backups per user (`None`: unlimited).
    pub quota: Option<crate::rate_limit::QuotaThrottle<'a>>,
}

/// Where a backup's object is stored.
pub fn object_key(user: &UserId, backup_id: &str) -> String {
    format!("backups/{user}/{backup_id}")
}

/// Brings a user's records up to date with storage: a pending record whose object arrived is
/// marked complete, one whose upload URL expired unused is dropped, and complete backups beyond
/// the newest [`KEEP_BACKUPS`] are deleted. Returns what is left, newest first.
async fn settle(deps: &Deps<'_>, user: &UserId) -> Result<Vec<BackupRecord>, ApiError> {
    let now = deps.clock.now();
    let stale_before = now - chrono::Duration::seconds(URL_TTL.as_secs() as i64 + 60);
    let mut left = Vec::new();
    let mut complete = 0;
    for mut b in deps.backups.backups(user).await? {
        let key = object_key(user, &b.backup_id);
        if !b.complete {
            match deps.objects.size(&key).await? {
                Some(size) if size == b.size => {
                    deps.backups.mark_complete(user, &b.backup_id).await?;
                    b.complete = true;
                }
                Some(_) => {
                    // Cannot happen with an upload bound to the size; never keep a mismatch.
                    deps.objects.delete(&key).await?;
                    deps.backups.delete_backup(user, &b.backup_id).await?;
                    continue;
                }
                None if b.created_at < stale_before => {
                    deps.backups.delete_backup(user, &b.backup_id).await?;
                    continue;
                }
                None => {}
            }
        }
        if b.complete {
            complete += 1;
            if complete > KEEP_BACKUPS {
                deps.objects.delete(&key).await?;
                deps.backups.delete_backup(user, &b.backup_id).await?;
                tracing::info!("old backup deleted");
                continue;
            }
        }
        left.push(b);
    }
    Ok(left)
}

fn headers(h: &[(String, String)]) -> Headers {
    h.iter().cloned().collect()
}

/// `createBackup`: a pending record and a presigned `PUT` bound to the size and
/// `application/octet-stream`. The backup is listed once the object is there.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn create_backup(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: CreateBackupParams,
) -> Result<BackupUpload, ApiError> {
    if p.size == 0 {
        return Err(ApiError::bad_request("size must be at least 1 byte"));
    }
    if p.size > MAX_BACKUP_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a backup is at most {MAX_BACKUP_BYTES} bytes"),
        ));
    }
    let records = settle(deps, &who.user_id).await?;
    if records.iter().filter(|b| !b.complete).count() >= MAX_PENDING_BACKUPS {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!(
                "at most {MAX_PENDING_BACKUPS} backups may wait for their upload; upload one or retry in {} minutes",
                URL_TTL.as_secs() / 60
            ),
        ));
    }
    // Kept backups are bounded (KEEP_BACKUPS + MAX_PENDING_BACKUPS), but each replaced one
    // lingers as a noncurrent version of the versioned bucket: the bytes a user may start a day
    // bound what cycling backups can make the operator store.
    if let Some(quota) = &deps.quota {
        quota
            .take(
                &format!("backupBytes#account#{}", who.user_id),
                p.size,
                "backups",
                deps.clock.now(),
            )
            .await?;
    }
    let record = BackupRecord {
        user_id: who.user_id.clone(),
        backup_id: uuid::Uuid::new_v4().simple().to_string(),
        size: p.size,
        created_at: deps.clock.now(),
        complete: false,
    };
    let put = deps
        .objects
        .presign_put(
            &object_key(&who.user_id, &record.backup_id),
            BACKUP_CONTENT_TYPE,
            p.size,
            &[],
            URL_TTL,
        )
        .await?;
    deps.backups.put_backup(&record).await?;
    tracing::info!(size = p.size, "backup created");
    Ok(BackupUpload {
        backup_id: record.backup_id,
        upload_url: put.url,
        upload_headers: headers(&put.headers),
        expires_in_seconds: put.expires_in_seconds,
    })
}

/// `listBackups`: the caller's uploaded backups, newest first (pending ones are left out).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn list_backups(deps: &Deps<'_>, who: &DeviceCredential) -> Result<BackupList, ApiError> {
    let backups = settle(deps, &who.user_id)
        .await?
        .into_iter()
        .filter(|b| b.complete)
        .map(|b| BackupEntry {
            backup_id: b.backup_id,
            size: b.size,
            created_at: timestamp(b.created_at),
        })
        .collect();
    Ok(BackupList { backups })
}

/// `getBackupDownload`: a presigned `GET` for one of the caller's uploaded backups. Another
/// user's id, an unknown id and a backup not uploaded yet are all `NOT_FOUND`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get_backup_download(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GetBackupDownloadParams,
) -> Result<BackupDownload, ApiError> {
    let id = p.backup_id.trim();
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request(
            "backupId must be an id returned by listBackups",
        ));
    }
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such backup");
    let b = deps
        .backups
        .backup(&who.user_id, id)
        .await?
        .ok_or_else(not_found)?;
    let key = object_key(&who.user_id, id);
    if !b.complete {
        if deps.objects.size(&key).await? != Some(b.size) {
            return Err(not_found());
        }
        deps.backups.mark_complete(&who.user_id, id).await?;
    }
    let get = deps.objects.presign_get(&key, URL_TTL).await?;
    Ok(BackupDownload {
        backup_id: id.to_owned(),
        size: b.size,
        download_url: get.url,
        download_headers: headers(&get.headers),
        expires_in_seconds: get.expires_in_seconds,
    })
}

/// Deletes every backup of a user, objects and records (account deletion).
pub async fn delete_all_backups(
    backups: &dyn BackupStore,
    objects: &dyn ObjectStore,
    user: &UserId,
) -> Result<usize, ApiError> {
    let all = backups.backups(user).await?;
    for b in &all {
        objects.delete(&object_key(user, &b.backup_id)).await?;
        backups.delete_backup(user, &b.backup_id).await?;
    }
    Ok(all.len())
}
