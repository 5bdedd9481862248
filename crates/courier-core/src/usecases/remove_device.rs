//! `removeDevice`: the primary device removes a companion, or a companion removes itself.
//!
//! Its API key is deleted with the device (in one transaction), so the authorizer refuses it at
//! once; its connections are closed, its push endpoint forgotten, and its keys and queued device
//! messages deleted. The primary cannot be removed: re-registering the number replaces it, and
//! deleting the account removes everything.

use super::close_connections;
use super::keys::device_id_param;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ConnectionId, DeviceId, UserId};
use crate::ports::{
    AccountStore, ConnectionGateway, ConnectionStore, Device, DeviceCredential, DeviceQueueStore,
    KeyStore, PresenceStore,
};
use crate::protocol::RemoveDeviceParams;

/// What `removeDevice` needs.
pub struct Deps<'a> {
    /// Devices and their API keys.
    pub accounts: &'a dyn AccountStore,
    /// Live connections.
    pub connections: &'a dyn ConnectionStore,
    /// Push endpoints.
    pub presence: &'a dyn PresenceStore,
    /// The management API.
    pub gateway: &'a dyn ConnectionGateway,
    /// The key directory.
    pub keys: &'a dyn KeyStore,
    /// Device queues.
    pub queues: &'a dyn DeviceQueueStore,
}

/// What removing did: whether the caller's own connection (`current`) is to be closed once the
/// reply is sent (a companion removed itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The caller's connection, if it belonged to the removed device.
    pub close_after_reply: Option<ConnectionId>,
}

/// Removes a device of the caller's account.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym()))]
pub async fn remove_device(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    current: &ConnectionId,
    p: RemoveDeviceParams,
) -> Result<Removed, ApiError> {
    let target_id = device_id_param("deviceId", &p.device_id)?;
    let devices = deps.accounts.devices(&who.user_id).await?;
    let Some(target) = devices.iter().find(|d| d.device_id == target_id) else {
        return Err(match deps.accounts.device_owner(&target_id).await? {
            Some(_) => ApiError::new(ErrorCode::Forbidden, "that device is not yours"),
            None => ApiError::new(ErrorCode::NotFound, format!("no device {target_id}")),
        });
    };
    if target.primary {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the primary device cannot be removed; re-register the number or delete the account",
        ));
    }
    let caller_is_primary = devices
        .iter()
        .any(|d| d.device_id == who.device_id && d.primary);
    if target.device_id != who.device_id && !caller_is_primary {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a companion device can remove only itself",
        ));
    }
    // The device (with its key) goes first, then its connections are listed: a `$connect`
    // racing this either wrote its record before (listed here, closed) or is refused (its
    // record is written only while the device exists).
    deps.accounts.remove_device(target).await?;
    // Links approved earlier but not collected yet end too: removing devices leaves exactly
    // the devices the owner sees.
    deps.accounts.end_pending_links(&who.user_id).await?;
    let connections: Vec<ConnectionId> = deps
        .connections
        .for_user(&who.user_id)
        .await?
        .into_iter()
        .filter(|(d, _)| d == &target.device_id)
        .map(|(_, c)| c)
        .collect();
    let others: Vec<&ConnectionId> = connections.iter().filter(|c| *c != current).collect();
    close_connections(deps.connections, deps.gateway, others.iter().copied()).await?;
    for c in &connections {
        deps.connections.remove(c).await?;
    }
    purge_device(deps.presence, deps.keys, deps.queues, target).await?;
    tracing::info!(removed = %target.device_id.pseudonym(), "device removed");
    // A companion removing itself is calling on one of its own connections.
    let removed_itself = target.device_id == who.device_id;
    Ok(Removed {
        close_after_reply: removed_itself.then(|| current.clone()),
    })
}

/// Deletes what a removed device leaves behind: its push endpoint, keys and queued messages.
pub async fn purge_device(
    presence: &dyn PresenceStore,
    keys: &dyn KeyStore,
    queues: &dyn DeviceQueueStore,
    device: &Device,
) -> Result<(), ApiError> {
    presence
        .forget_push_endpoint(&device.user_id, &device.device_id)
        .await?;
    purge_device_data(keys, queues, &device.user_id, &device.device_id).await
}

/// Deletes a device's keys and queued messages.
pub async fn purge_device_data(
    keys: &dyn KeyStore,
    queues: &dyn DeviceQueueStore,
    user: &UserId,
    device: &DeviceId,
) -> Result<(), ApiError> {
    keys.delete_device_keys(user, device).await?;
    queues.purge(user, device).await?;
    Ok(())
}
