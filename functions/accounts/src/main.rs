//! The `accounts` function: `deleteAccount`, the directory (`lookupUser`, `discoverContacts`,
//! `getProfile`), settings and contacts (`getSettings`, `updateSettings`, `updateContacts`) and
//! two-step verification (`setRegistrationPin`, `removeRegistrationPin`, `checkRegistrationPin`),
//! and block lists and reports (`blockUser`, `unblockUser`, `listBlocked`, `reportUser`).

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest as Request;
use courier_core::ApiError;
use courier_core::clock::SystemClock;
use courier_core::ports::DeviceCredential;
use courier_core::protocol::{GetSettingsParams, LookupUserParams};
use courier_core::usecases::{
    blocks, delete_account, discover_contacts, lookup_user, profile, registration_pin,
};
use courier_lambda::stores::{Stores, leak};
use courier_lambda::{routes, serve};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let actions = |l: &courier_core::rate_limit::Limits| l.actions;
    match serve::start()? {
        "deleteAccount" => {
            serve::ws(|s| {
                let deps = delete_deps(s)?;
                Ok(move |event: Request| async move { routes::delete_account(deps, &event).await })
            })
            .await
        }
        "lookupUser" => {
            serve::ws(|s| {
                let users = s.users()?;
                let limit = s.lookups()?;
                Ok(move |event: Request| async move {
                    routes::action(
                        "lookupUser",
                        &event,
                        |who, p: LookupUserParams| async move {
                            limit.take(&who).await?;
                            lookup_user::lookup_user(users, &p.phone).await
                        },
                    )
                    .await
                })
            })
            .await
        }
        "discoverContacts" => {
            serve::action(
                "discoverContacts",
                |s| {
                    Ok(leak(discover_contacts::Deps {
                        accounts: s.users()?,
                        budget: Some(s.throttle(|l| l.discoveries)?),
                        clock: &SystemClock,
                    }))
                },
                discover_contacts::discover_contacts,
            )
            .await
        }
        "getSettings" => serve::action("getSettings", profile_deps, get_settings).await,
        "updateSettings" => {
            serve::limited_action(
                "updateSettings",
                actions,
                profile_deps,
                profile::update_settings,
            )
            .await
        }
        "updateContacts" => {
            serve::limited_action(
                "updateContacts",
                actions,
                profile_deps,
                profile::update_contacts,
            )
            .await
        }
        "getProfile" => {
            serve::ws(|s| {
                let deps = leak(profile::Deps {
                    last_seen: Some(s.connections()?),
                    sessions: Some(s.sessions()?),
                    ..*profile_deps(s)?
                });
                let limit = s.lookups()?;
                Ok(move |event: Request| async move {
                    routes::action("getProfile", &event, |who, p| async move {
                        limit.take(&who).await?;
                        profile::get_profile(deps, &who, p).await
                    })
                    .await
                })
            })
            .await
        }
        // The per-device action limit is the use case's, beside the account's budget of wrong
        // PINs; it never logs or returns the PIN.
        "setRegistrationPin" => {
            serve::action(
                "setRegistrationPin",
                pin_deps,
                registration_pin::set_registration_pin,
            )
            .await
        }
        "removeRegistrationPin" => {
            serve::action(
                "removeRegistrationPin",
                pin_deps,
                registration_pin::remove_registration_pin,
            )
            .await
        }
        "checkRegistrationPin" => {
            serve::action(
                "checkRegistrationPin",
                pin_deps,
                registration_pin::check_registration_pin,
            )
            .await
        }
        "blockUser" => {
            serve::limited_action("blockUser", actions, block_deps, blocks::block_user).await
        }
        "unblockUser" => {
            serve::limited_action("unblockUser", actions, block_deps, blocks::unblock_user).await
        }
        // A list of up to 10,000 read whole: limited like the actions that write.
        "listBlocked" => {
            serve::limited_action("listBlocked", actions, block_deps, blocks::list_blocked).await
        }
        "reportUser" => {
            serve::limited_action(
                "reportUser",
                actions,
                |s| {
                    let (sessions, messages) = s.chats()?;
                    Ok(leak(blocks::ReportDeps {
                        blocks: blocks::Deps { ..*block_deps(s)? },
                        sessions,
                        messages,
                        reports: s.objects()?,
                        budget: Some(s.throttle(|_| blocks::REPORTS_PER_DAY)?),
                    }))
                },
                blocks::report_user,
            )
            .await
        }
        other => Err(serve::unknown("accounts", other)),
    }
}

/// Block lists (`USERS_TABLE`, beside the contacts) and the accounts blocked.
fn block_deps(s: &Stores) -> Result<&'static blocks::Deps<'static>, Error> {
    Ok(leak(blocks::Deps {
        settings: s.settings()?,
        accounts: s.users()?,
        clock: &SystemClock,
    }))
}

/// The account, its devices and keys, and all its data beyond them.
fn delete_deps(s: &Stores) -> Result<&'static delete_account::Deps<'static>, Error> {
    let connections = s.connections()?;
    Ok(leak(delete_account::Deps {
        accounts: s.accounts()?,
        connections,
        gateway: s.gateway()?,
        keys: s.keys()?,
        queues: s.queues()?,
        clock: &SystemClock,
        data: s.account_data(connections)?,
    }))
}

/// Settings and contacts live in the users table; only `getProfile` adds last seen.
fn profile_deps(s: &Stores) -> Result<&'static profile::Deps<'static>, Error> {
    Ok(leak(profile::Deps {
        settings: s.settings()?,
        accounts: s.users()?,
        last_seen: None,
        sessions: None,
        clock: &SystemClock,
    }))
}

async fn get_settings(
    deps: &profile::Deps<'_>,
    who: &DeviceCredential,
    _: GetSettingsParams,
) -> Result<courier_core::protocol::SettingsReply, ApiError> {
    profile::get_settings(deps, who).await
}

/// The account's PIN record, the per-device action limit and the budget of wrong PINs.
fn pin_deps(s: &Stores) -> Result<&'static registration_pin::Deps<'static>, Error> {
    Ok(leak(registration_pin::Deps {
        accounts: s.users()?,
        limit: Some(s.throttle(|l| l.actions)?),
        checks: Some(s.throttle(|l| l.pin_checks)?),
        clock: &SystemClock,
    }))
}
