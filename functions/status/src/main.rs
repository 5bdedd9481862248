//! The `status` function: `postStatus`, `removeStatus`, `viewStatus`, `getStatusViewers` and
//! `getStatusAudience`.

use courier_core::ApiError;
use courier_core::clock::SystemClock;
use courier_core::ports::DeviceCredential;
use courier_core::protocol::PostStatusParams;
use courier_core::usecases::status::{self, Deps};
use courier_lambda::serve;
use courier_lambda::stores::{Stores, leak, seconds};
use courier_lambda::telemetry;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        "postStatus" => serve::action("postStatus", post_deps, post_status_counted).await,
        "removeStatus" => {
            serve::limited_action(
                "removeStatus",
                |l| l.actions,
                |s| deps(s, true, false),
                status::remove_status,
            )
            .await
        }
        "viewStatus" => {
            serve::action("viewStatus", |s| deps(s, true, true), status::view_status).await
        }
        "getStatusViewers" => {
            serve::action(
                "getStatusViewers",
                |s| deps(s, true, false),
                status::get_status_viewers,
            )
            .await
        }
        "getStatusAudience" => {
            serve::action(
                "getStatusAudience",
                |s| deps(s, false, true),
                status::get_status_audience,
            )
            .await
        }
        other => Err(serve::unknown("status", other)),
    }
}

/// The statuses and the posters' privacy settings, each only where the operation reads it.
fn deps(s: &Stores, statuses: bool, settings: bool) -> Result<&'static Deps<'static>, Error> {
    Ok(leak(Deps {
        statuses: if statuses { Some(s.statuses()?) } else { None },
        settings: if settings { Some(s.settings()?) } else { None },
        deliver: None,
        media: None,
        clock: &SystemClock,
        ttl_secs: seconds("STATUS_TTL_SECS", status::DEFAULT_STATUS_TTL_SECS)?,
        throttle: None,
    }))
}

/// Posting also tells the audience (`statusPosted`), checks and attaches the poster's media,
/// and is limited as sends are.
fn post_deps(s: &Stores) -> Result<&'static Deps<'static>, Error> {
    Ok(leak(Deps {
        deliver: Some(s.deliverer(false)?),
        media: Some(s.attach()?),
        throttle: Some(s.throttle(|l| l.sends)?),
        ..*deps(s, true, true)?
    }))
}

/// `postStatus`, counted as `MessagesSent` of kind `status`.
async fn post_status_counted(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: PostStatusParams,
) -> Result<courier_core::protocol::PostedStatus, ApiError> {
    let reply = status::post_status(deps, who, p).await?;
    telemetry::count_by("MessagesSent", "Kind", "status", 1);
    Ok(reply)
}
