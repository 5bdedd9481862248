//! `deleteAccount`: remove the caller's account, its number claim, its devices and their keys,
//! its presence, last seen and push endpoints, its session memberships, its settings and
//! contacts, its status posts with their viewers, its backups (records and objects), and close
//! its connections.
//! Other users' data is not touched: the peer of a direct chat keeps the messages.

use super::close_connections;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ConnectionId, DeviceId};
use crate::ports::{
    AccountStore, BackupStore, ConnectionGateway, ConnectionStore, Device, DeviceCredential,
    DeviceQueueStore, GroupStore, KeyStore, MessageStore, ObjectStore, PresenceStore, SessionStore,
    SettingsStore, StatusStore, User,
};

/// What `deleteAccount` needs.
pub struct Deps<'a> {
    /// Users and devices.
    pub accounts: &'a dyn AccountStore,
    /// Live connections.
    pub connections: &'a dyn ConnectionStore,
    /// The management API.
    pub gateway: &'a dyn ConnectionGateway,
    /// The key directory (every device's keys are deleted).
    pub keys: &'a dyn KeyStore,
    /// Device queues (every device's queue is deleted).
    pub queues: &'a dyn DeviceQueueStore,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The rest of the account's data.
    pub data: AccountData<'a>,
}

/// Where an account's data lives beyond its devices, keys and connections: what
/// `deleteAccount` deletes besides those, and what a registration PIN reset deletes of the
/// account it replaces (`validateAccount`).
#[derive(Clone, Copy)]
pub struct AccountData<'a> {
    /// Memberships (the user leaves every session).
    pub sessions: &'a dyn SessionStore,
    /// Groups (it leaves each as a member leaving would: admin hand-over, a `groupUpdate`).
    pub groups: &'a dyn GroupStore,
    /// Where the groups' `memberRemoved` changes are written.
    pub messages: &'a dyn MessageStore,
    /// To reach the other members.
    pub presence: &'a dyn PresenceStore,
    /// Settings and contacts (deleted; also read by the group hand-over).
    pub settings: &'a dyn SettingsStore,
    /// Status posts and their viewers (deleted).
    pub statuses: &'a dyn StatusStore,
    /// Backup records (deleted).
    pub backups: &'a dyn BackupStore,
    /// The bucket holding the backup files (deleted).
    pub objects: &'a dyn ObjectStore,
}

/// Deletes the caller's account (`FORBIDDEN` from a companion device). Every connection of the account is closed except `current`,
/// which the caller closes once its reply is sent; it is returned to say so.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn delete_account(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    current: &ConnectionId,
) -> Result<ConnectionId, ApiError> {
    let user = deps
        .accounts
        .user(&who.user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "this account no longer exists"))?;
    let devices = deps.accounts.devices(&user.user_id).await?;
    // As in WhatsApp, only the phone (the primary device, the one holding the number) deletes
    // the account: a linked companion can remove itself, not everything.
    if !devices
        .iter()
        .any(|d| d.device_id == who.device_id && d.primary)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the primary device can delete the account; a companion can remove itself (removeDevice)",
        ));
    }
    purge(deps, &user, &devices, Some(current)).await?;
    Ok(current.clone())
}

/// Deletes everything of `user` (whose devices are `devices`): its number claim, devices and
/// keys, links, connections (all closed but `keep`, which the caller closes itself), presence
/// and push endpoints, memberships (leaving each group as a member would), settings and
/// contacts, statuses and backups. Other users' data is not touched.
pub async fn purge(
    deps: &Deps<'_>,
    user: &User,
    devices: &[Device],
    keep: Option<&ConnectionId>,
) -> Result<(), ApiError> {
    let data = deps.data;
    // Devices and keys first, then the connections are listed (see remove_device).
    deps.accounts.delete_account(user, devices).await?;
    deps.accounts.end_pending_links(&user.user_id).await?;
    let connections = deps.connections.for_user(&user.user_id).await?;
    // Owned ids, not an iterator of borrowed ones: such an iterator held across the closes
    // defeats rustc's proof that a caller's future is `Send` (a PIN reset runs this inside
    // `validateAccount`).
    let others: Vec<ConnectionId> = connections
        .iter()
        .map(|(_, c)| c)
        .filter(|c| Some(*c) != keep)
        .cloned()
        .collect();
    close_connections(deps.connections, deps.gateway, &others).await?;
    for (_, c) in &connections {
        deps.connections.remove(c).await?;
    }
    // Presence goes too, push endpoints included: nothing is pushed to a deleted account.
    deps.connections.forget_user(&user.user_id).await?;
    for d in devices {
        super::remove_device::purge_device_data(deps.keys, deps.queues, &d.user_id, &d.device_id)
            .await?;
    }
    let group_deps = super::groups::Deps {
        groups: data.groups,
        sessions: data.sessions,
        messages: data.messages,
        accounts: deps.accounts,
        settings: data.settings,
        deliver: super::deliver::Deliverer {
            presence: data.presence,
            connections: deps.connections,
            gateway: deps.gateway,
            push: None,
        },
        // Leaving is recorded in each group; the fan-out delivers it.
        log: None,
        clock: deps.clock,
        // Leaving adds no one.
        adds_per_target: None,
    };
    // Leaving a group names only the user (the device is not recorded).
    let leaver = DeviceCredential {
        user_id: user.user_id.clone(),
        device_id: devices
            .iter()
            .find(|d| d.primary)
            .or(devices.first())
            .map(|d| d.device_id.clone())
            .unwrap_or_else(DeviceId::generate),
    };
    let groups = super::groups::leave_all_groups(&group_deps, &leaver).await?;
    let left = data.sessions.leave_all(&user.user_id).await?;
    data.settings.delete_settings(&user.user_id).await?;
    data.settings.delete_blocks(&user.user_id).await?;
    data.statuses.delete_statuses(&user.user_id).await?;
    let backups =
        super::backups::delete_all_backups(data.backups, data.objects, &user.user_id).await?;
    tracing::info!(
        devices = devices.len(),
        groups,
        sessions = left,
        backups,
        "account deleted"
    );
    Ok(())
}
