//! The `backups` function: `createBackup`, `listBackups` and `getBackupDownload`.

use courier_core::ApiError;
use courier_core::clock::SystemClock;
use courier_core::ports::DeviceCredential;
use courier_core::protocol::ListBackupsParams;
use courier_core::rate_limit::QuotaThrottle;
use courier_core::usecases::backups::{self, Deps};
use courier_lambda::serve;
use courier_lambda::stores::{Stores, leak};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        // Behind the per-device action limit and the daily byte quota.
        "createBackup" => {
            serve::limited_action(
                "createBackup",
                |l| l.actions,
                |s| {
                    let quota = s.quota(|l| l.backup_bytes)?;
                    deps(s, Some(quota))
                },
                backups::create_backup,
            )
            .await
        }
        "listBackups" => serve::action("listBackups", |s| deps(s, None), list_backups).await,
        "getBackupDownload" => {
            serve::action(
                "getBackupDownload",
                |s| deps(s, None),
                backups::get_backup_download,
            )
            .await
        }
        other => Err(serve::unknown("backups", other)),
    }
}

/// The backup records and the bucket; only `createBackup` counts bytes.
fn deps(
    s: &Stores,
    quota: Option<QuotaThrottle<'static>>,
) -> Result<&'static Deps<'static>, Error> {
    Ok(leak(Deps {
        backups: s.backups()?,
        objects: s.objects()?,
        clock: &SystemClock,
        quota,
    }))
}

async fn list_backups(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    _: ListBackupsParams,
) -> Result<courier_core::protocol::BackupList, ApiError> {
    backups::list_backups(deps, who).await
}
