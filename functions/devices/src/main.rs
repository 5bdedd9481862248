//! The `devices` function: linking (`createLinkRequest`, `getLinkRequest` on the HTTP API;
//! `approveDeviceLink`), `removeDevice`, the key directory (`uploadKeys`, `claimKeys`,
//! `listDevices`) and the device queues (`sendToDevice`, `readDeviceMessages`,
//! `ackDeviceMessages`).

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest as Request;
use courier_core::clock::SystemClock;
use courier_core::protocol::ApproveDeviceLinkParams;
use courier_core::rate_limit::Limits;
use courier_core::usecases::{device_messages, keys, link_device, remove_device};
use courier_lambda::stores::{Stores, leak};
use courier_lambda::{http, routes, serve};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let actions = |l: &Limits| l.actions;
    match serve::start()? {
        "createLinkRequest" => {
            serve::http(
                |s| {
                    Ok(leak(link_device::Deps {
                        links: s.link_requests()?,
                        accounts: None,
                        clock: &SystemClock,
                        throttle: Some(s.throttle(|l| l.link_attempts)?),
                    }))
                },
                http::create_link_request,
            )
            .await
        }
        // The poll is not limited: the waiting device polls until approved, and its linkId is
        // a 128-bit secret no one can guess. Its completion writes the device and its key.
        "getLinkRequest" => {
            serve::http(
                |s| {
                    Ok(leak(link_device::Deps {
                        links: s.link_completions()?,
                        accounts: None,
                        clock: &SystemClock,
                        throttle: None,
                    }))
                },
                http::get_link_request,
            )
            .await
        }
        // Checks the companion cap against the account's devices and pending links.
        "approveDeviceLink" => {
            serve::action(
                "approveDeviceLink",
                |s| {
                    Ok(leak(link_device::Deps {
                        links: s.link_approvals()?,
                        accounts: Some(s.users()?),
                        clock: &SystemClock,
                        throttle: Some(s.throttle(|l| l.link_attempts)?),
                    }))
                },
                async |deps, who, p: ApproveDeviceLinkParams| {
                    link_device::approve(deps, who, &p.code).await
                },
            )
            .await
        }
        "removeDevice" => {
            serve::ws(|s| {
                let connections = s.connections()?;
                let deps = leak(remove_device::Deps {
                    accounts: s.accounts()?,
                    connections,
                    presence: connections,
                    gateway: s.gateway()?,
                    keys: s.keys()?,
                    queues: s.queues()?,
                });
                Ok(move |event: Request| async move { routes::remove_device(deps, &event).await })
            })
            .await
        }
        "uploadKeys" => {
            serve::limited_action(
                "uploadKeys",
                actions,
                |s| key_deps(s, false, None),
                keys::upload_keys,
            )
            .await
        }
        "claimKeys" => {
            serve::limited_action(
                "claimKeys",
                |l| l.key_claims,
                |s| {
                    let per_target = s.throttle(|l| l.one_time_keys_per_target)?;
                    key_deps(s, true, Some(per_target))
                },
                keys::claim_keys,
            )
            .await
        }
        "listDevices" => {
            serve::action(
                "listDevices",
                |s| key_deps(s, true, None),
                keys::list_devices,
            )
            .await
        }
        "sendToDevice" => {
            serve::action(
                "sendToDevice",
                |s| {
                    Ok(leak(device_messages::Deps {
                        accounts: Some(s.users()?),
                        queues: s.queues()?,
                        deliver: Some(s.deliverer(true)?),
                        clock: &SystemClock,
                        throttle: Some(s.throttle(|l| l.sends)?),
                    }))
                },
                device_messages::send_to_device,
            )
            .await
        }
        "readDeviceMessages" => {
            serve::action(
                "readDeviceMessages",
                queue_deps,
                device_messages::read_device_messages,
            )
            .await
        }
        "ackDeviceMessages" => {
            serve::action(
                "ackDeviceMessages",
                queue_deps,
                device_messages::ack_device_messages,
            )
            .await
        }
        other => Err(serve::unknown("devices", other)),
    }
}

/// The key directory; device lists (`claimKeys`, `listDevices`) also read the users table.
fn key_deps(
    s: &Stores,
    reads_devices: bool,
    one_time_keys_per_target: Option<courier_core::rate_limit::Throttle<'static>>,
) -> Result<&'static keys::Deps<'static>, Error> {
    Ok(leak(keys::Deps {
        accounts: if reads_devices {
            Some(s.users()?)
        } else {
            None
        },
        keys: s.keys()?,
        one_time_keys_per_target,
        clock: &SystemClock,
    }))
}

/// The caller's own queue: reading and acknowledging touch nothing else.
fn queue_deps(s: &Stores) -> Result<&'static device_messages::Deps<'static>, Error> {
    Ok(leak(device_messages::Deps {
        accounts: None,
        queues: s.queues()?,
        deliver: None,
        clock: &SystemClock,
        throttle: None,
    }))
}
