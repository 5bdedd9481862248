//! The `groups` function: `initiateGroupChatSession`, `getGroup`, `addUserToGroup`,
//! `removeUserFromGroup`, `promoteUserToAdmin`, `deleteGroup`, and the scheduled `groupCensus`.

use courier_core::clock::SystemClock;
use courier_core::rate_limit::Limits;
use courier_core::usecases::{analytics, groups};
use courier_lambda::serve;
use courier_lambda::stores::{Stores, leak};
use courier_lambda::telemetry::{self, Unit};
use lambda_runtime::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let actions = |l: &Limits| l.actions;
    match serve::start()? {
        "initiateGroupChatSession" => {
            serve::limited_action(
                "initiateGroupChatSession",
                actions,
                adding_deps,
                groups::initiate,
            )
            .await
        }
        "getGroup" => serve::action("getGroup", group_deps, groups::get).await,
        "addUserToGroup" => {
            serve::limited_action("addUserToGroup", actions, adding_deps, groups::add).await
        }
        "removeUserFromGroup" => {
            serve::limited_action("removeUserFromGroup", actions, group_deps, groups::remove).await
        }
        "promoteUserToAdmin" => {
            serve::limited_action("promoteUserToAdmin", actions, group_deps, groups::promote).await
        }
        "deleteGroup" => {
            serve::limited_action("deleteGroup", actions, group_deps, groups::delete).await
        }
        // Scheduled (EventBridge): the size of every group, for the median group size.
        "groupCensus" => {
            serve::event("groupCensus", |s| {
                let sessions = s.sessions()?;
                Ok(move |_: Value| async move {
                    let sizes = analytics::group_census(sessions).await?;
                    telemetry::count("GroupsCounted", sizes.len() as u64);
                    for size in &sizes {
                        telemetry::observe("GroupSize", Unit::None, f64::from(*size));
                    }
                    tracing::info!(groups = sizes.len(), "group census");
                    Ok::<_, Error>(serde_json::json!({ "groups": sizes.len() }))
                })
            })
            .await
        }
        other => Err(serve::unknown("groups", other)),
    }
}

/// Every group operation's stores. Each change is delivered by the operation that makes it,
/// pushes included (the notices sent directly are never pushed: they carry no push note).
fn group_deps(s: &Stores) -> Result<&'static groups::Deps<'static>, Error> {
    Ok(leak(deps(s, None)?))
}

/// The operations that put someone in a group, with the daily cap per person added.
fn adding_deps(s: &Stores) -> Result<&'static groups::Deps<'static>, Error> {
    let cap = s.stranger_cap(|l| l.group_adds_per_target, "group-adds")?;
    Ok(leak(deps(s, Some(cap))?))
}

fn deps(
    s: &Stores,
    adds_per_target: Option<courier_core::rate_limit::StrangerCap<'static>>,
) -> Result<groups::Deps<'static>, Error> {
    let (sessions, messages) = s.chats()?;
    Ok(groups::Deps {
        groups: sessions,
        sessions,
        messages,
        // Only read: does a member exist?
        accounts: s.users()?,
        settings: s.settings()?,
        deliver: s.deliverer(true)?,
        log: Some(messages),
        clock: &SystemClock,
        adds_per_target,
    })
}
