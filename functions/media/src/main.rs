//! The `media` function: `createMediaUpload` and `getMediaDownload`.

use courier_core::clock::SystemClock;
use courier_core::usecases::media::{self, Deps, StatusLookup};
use courier_lambda::serve;
use courier_lambda::stores::{Stores, leak};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        // Behind the per-device action limit and the daily byte quota.
        "createMediaUpload" => {
            serve::limited_action(
                "createMediaUpload",
                |l| l.actions,
                |s| {
                    Ok(leak(Deps {
                        sessions: None,
                        statuses: None,
                        upload_quota: Some(s.quota(|l| l.media_upload_bytes)?),
                        ..*deps(s)?
                    }))
                },
                media::create_upload,
            )
            .await
        }
        // Media in a chat is for its members; media on a live status is for those who may see
        // the status.
        "getMediaDownload" => {
            serve::action(
                "getMediaDownload",
                |s| {
                    Ok(leak(Deps {
                        sessions: Some(s.sessions()?),
                        statuses: Some(StatusLookup {
                            statuses: s.statuses()?,
                            settings: s.settings()?,
                        }),
                        ..*deps(s)?
                    }))
                },
                media::get_download,
            )
            .await
        }
        other => Err(serve::unknown("media", other)),
    }
}

/// The upload records and the bucket, which both operations use.
fn deps(s: &Stores) -> Result<&'static Deps<'static>, Error> {
    Ok(leak(Deps {
        media: s.media()?,
        objects: s.objects()?,
        sessions: None,
        statuses: None,
        clock: &SystemClock,
        upload_quota: None,
    }))
}
