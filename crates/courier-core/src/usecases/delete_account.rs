//! `deleteAccount`: remove the caller's account, its number claim, its devices and their keys,
//! its presence, last seen and push endpoints, its session memberships, its settings and
//! contacts, its status posts with their viewers, its backups (records and objects), and close
//! its connections.
//! Other users' data is not touched: the peer of a direct chat keeps the messages.

use super::close_connections;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::ConnectionId;
use crate::ports::{
    AccountStore, BackupStore, ConnectionGateway, ConnectionStore, DeviceCredential,
    DeviceQueueStore, GroupStore, KeyStore, MessageStore, ObjectStore, PresenceStore, SessionStore,
    SettingsStore, StatusStore,
};

/// What `deleteAccount` needs.
pub struct Deps<'a> {
    /// Users and devices.
    pub accounts: &'a dyn AccountStore,
    /// Live connections.
    pub connections: &'a dyn ConnectionStore,
    /// The management API.
    pub gateway: &'a dyn ConnectionGateway,
    /// Memberships (the user leaves every session).
    pub sessions: &'a dyn SessionStore,
    /// Groups (it leaves each as a member leaving would: admin hand-over, a `groupUpdate`).
    pub groups: &'a dyn GroupStore,
    /// Where the groups' `memberRemoved` changes are written.
    pub messages: &'a dyn MessageStore,
    /// To reach the other members.
    pub presence: &'a dyn PresenceStore,
    /// The key directory (every device's keys are deleted).
    pub keys: &'a dyn KeyStore,
    /// Device queues (every device's queue is deleted).
    pub queues: &'a dyn DeviceQueueStore,
    /// Settings and contacts (deleted; also read by the group hand-over).
    pub settings: &'a dyn SettingsStore,
    /// Status posts and their viewers (deleted).
    pub statuses: &'a dyn StatusStore,
    /// Time.
    pub clock: &'a dyn Clock,
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
    // Devices and keys first, then the connections are listed (see remove_device).
    deps.accounts.delete_account(&user, &devices).await?;
    deps.accounts.end_pending_links(&user.user_id).await?;
    let connections = deps.connections.for_user(&user.user_id).await?;
    let others: Vec<_> = connections
        .iter()
        .map(|(_, c)| c)
        .filter(|c| *c != current)
        .collect();
    close_connections(deps.connections, deps.gateway, others.iter().copied()).await?;
    for (_, c) in &connections {
        deps.connections.remove(c).await?;
    }
    // Presence goes too, push endpoints included: nothing is pushed to a deleted account.
    deps.connections.forget_user(&user.user_id).await?;
    for d in &devices {
        super::remove_device::purge_device_data(deps.keys, deps.queues, &d.user_id, &d.device_id)
            .await?;
    }
    let group_deps = super::groups::Deps {
        groups: deps.groups,
        sessions: deps.sessions,
        messages: deps.messages,
        accounts: deps.accounts,
        settings: deps.settings,
        deliver: super::deliver::Deliverer {
            presence: deps.presence,
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
    let groups = super::groups::leave_all_groups(&group_deps, who).await?;
    let left = deps.sessions.leave_all(&user.user_id).await?;
    deps.settings.delete_settings(&user.user_id).await?;
    deps.statuses.delete_statuses(&user.user_id).await?;
    let backups =
        super::backups::delete_all_backups(deps.backups, deps.objects, &user.user_id).await?;
    tracing::info!(
        devices = devices.len(),
        groups,
        sessions = left,
        backups,
        "account deleted"
    );
    Ok(current.clone())
}
