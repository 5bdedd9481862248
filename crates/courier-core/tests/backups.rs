//! Backup use cases on in-memory ports: presigned uploads bound to the size, listing only what
//! was uploaded, keeping the newest three, downloads only for the owner.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use courier_core::ports::{BackupStore, DeviceCredential};
use courier_core::protocol::{CreateBackupParams, GetBackupDownloadParams};
use courier_core::usecases::backups::{self, Deps, MAX_BACKUP_BYTES};
use courier_core::{DeviceId, ErrorCode, UserId};
use serde_json::Value;
use support::{Wire, World};

/// When every test here starts.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
}

impl World {
    fn deps(&self) -> Deps<'_> {
        Deps {
            backups: &self.backups,
            objects: &self.objects,
            clock: &self.clock,
            quota: None,
        }
    }
    async fn create(
        &self,
        who: &DeviceCredential,
        size: u64,
    ) -> Result<Value, courier_core::ApiError> {
        backups::create_backup(&self.deps(), who, CreateBackupParams { size })
            .await
            .map(|r| r.json())
    }
    /// Creates a backup and uploads `size` bytes as the client would; returns its id.
    async fn upload(&self, who: &DeviceCredential, size: u64) -> String {
        let r = self.create(who, size).await.unwrap();
        let id = r["backupId"].as_str().unwrap().to_owned();
        self.objects.put(
            &format!("backups/{}/{id}", who.user_id),
            vec![7; size as usize],
            "application/octet-stream",
        );
        self.clock.advance(Duration::minutes(1));
        id
    }
    async fn list(&self, who: &DeviceCredential) -> Vec<Value> {
        let r = backups::list_backups(&self.deps(), who).await.unwrap();
        r.json()["backups"].as_array().unwrap().clone()
    }
    async fn download(
        &self,
        who: &DeviceCredential,
        id: &str,
    ) -> Result<Value, courier_core::ApiError> {
        let p = GetBackupDownloadParams {
            backup_id: id.to_owned(),
        };
        backups::get_backup_download(&self.deps(), who, p)
            .await
            .map(|r| r.json())
    }
}

fn who(u: &str) -> DeviceCredential {
    DeviceCredential {
        user_id: UserId::from_trusted(u),
        device_id: DeviceId::from_trusted(format!("d_{u}")),
    }
}

#[tokio::test]
async fn create_presigns_a_put_bound_to_the_size_and_octet_stream_under_the_users_prefix() {
    let w = World::at(start());
    let a = who("u_a");
    let r = w.create(&a, 1234).await.unwrap();
    let id = r["backupId"].as_str().unwrap();
    assert_eq!(r["uploadUrl"], format!("memory://backups/u_a/{id}"));
    assert_eq!(
        r["uploadHeaders"]["content-type"],
        "application/octet-stream"
    );
    assert_eq!(r["uploadHeaders"]["content-length"], "1234");
    assert_eq!(r["expiresInSeconds"], 900);
}

#[tokio::test]
async fn empty_and_oversized_backups_are_refused() {
    let w = World::at(start());
    let a = who("u_a");
    assert_eq!(
        w.create(&a, 0).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        w.create(&a, MAX_BACKUP_BYTES + 1).await.unwrap_err().code,
        ErrorCode::PayloadTooLarge
    );
    w.create(&a, MAX_BACKUP_BYTES).await.unwrap();
}

#[tokio::test]
async fn only_uploaded_backups_are_listed_newest_first() {
    let w = World::at(start());
    let a = who("u_a");
    let first = w.upload(&a, 10).await;
    let pending = w.create(&a, 20).await.unwrap();
    w.clock.advance(Duration::minutes(1));
    let second = w.upload(&a, 30).await;
    let list = w.list(&a).await;
    let ids: Vec<_> = list
        .iter()
        .map(|b| b["backupId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(list[0]["size"], 30);
    assert_eq!(list[1]["createdAt"], "2026-11-29T12:00:00.000Z");
    // Not uploaded: no download either.
    let pending = pending["backupId"].as_str().unwrap();
    assert_eq!(
        w.download(&a, pending).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // An upload URL that expired unused leaves nothing behind.
    w.clock.advance(Duration::hours(1));
    w.list(&a).await;
    assert_eq!(w.backups.backups(&a.user_id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_newest_three_are_kept_and_older_objects_and_records_deleted() {
    let w = World::at(start());
    let a = who("u_a");
    let mut ids = Vec::new();
    for size in 1..=5 {
        ids.push(w.upload(&a, size).await);
    }
    let listed: Vec<String> = w
        .list(&a)
        .await
        .iter()
        .map(|b| b["backupId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, [ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    let mut keys = w.objects.keys();
    keys.sort();
    let mut expected: Vec<String> = ids[2..]
        .iter()
        .map(|i| format!("backups/u_a/{i}"))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(
        w.download(&a, &ids[0]).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn too_many_pending_uploads_are_a_limit() {
    let w = World::at(start());
    let a = who("u_a");
    for _ in 0..3 {
        w.create(&a, 5).await.unwrap();
    }
    assert_eq!(
        w.create(&a, 5).await.unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    // Once they expire, backups can be created again.
    w.clock.advance(Duration::hours(1));
    w.create(&a, 5).await.unwrap();
}

#[tokio::test]
async fn only_the_owner_gets_a_download_and_bad_ids_are_bad_requests() {
    let w = World::at(start());
    let a = who("u_a");
    let b = who("u_b");
    let id = w.upload(&a, 8).await;
    let r = w.download(&a, &id).await.unwrap();
    assert_eq!(r["downloadUrl"], format!("memory://backups/u_a/{id}"));
    assert_eq!(r["size"], 8);
    assert_eq!(
        w.download(&b, &id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        w.download(&a, "0123abcd").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        w.download(&a, "../u_b/x").await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        w.download(&a, "").await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert!(w.list(&b).await.is_empty());
}

/// Backup cycling (issue 21 item 11): every backup replaced lingers as a noncurrent version, so
/// the bytes of backups one user may start are counted per UTC day. Past the quota
/// `createBackup` is `LIMIT_EXCEEDED` with the seconds left in the day and records nothing.
#[tokio::test]
async fn backups_past_the_daily_byte_quota_are_refused_and_record_nothing() {
    use courier_core::memory::MemoryRateLimiter;
    use courier_core::rate_limit::{DAY_SECS, Quota, QuotaThrottle};
    let w = World::at(start());
    let limiter = MemoryRateLimiter::default();
    let deps = Deps {
        quota: Some(QuotaThrottle {
            limiter: &limiter,
            quota: Quota {
                max: 2 * MAX_BACKUP_BYTES,
                window_secs: DAY_SECS,
            },
        }),
        ..w.deps()
    };
    let me = who("u_cycler");
    let create = |size| backups::create_backup(&deps, &me, CreateBackupParams { size });
    // Two pending backups (the cap on pending ones is three) use up the day's bytes.
    create(MAX_BACKUP_BYTES).await.unwrap();
    create(MAX_BACKUP_BYTES).await.unwrap();
    let e = create(1).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e:?}");
    assert_eq!(e.retry_after_secs, Some(12 * 3600));
    assert_eq!(w.backups.backups(&me.user_id).await.unwrap().len(), 2);
    w.clock.advance(Duration::hours(12));
    create(1).await.unwrap();
}
