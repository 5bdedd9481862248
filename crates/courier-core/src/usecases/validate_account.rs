//! `validateAccount`: check the SMS code, then create the account (or move it to this phone)
//! and hand out the device's API key.
//!
//! The code is single use: it is consumed (a versioned delete) before the account changes, so two
//! concurrent requests with the right code cannot both get a key. Re-registering a number keeps
//! the user id (groups and contacts stay) but replaces every device: old keys stop working and
//! old connections are closed, as when WhatsApp moves to a new phone.
//!
//! Two-step verification: when the number's account has a registration PIN, the code alone moves
//! nothing. The PIN is checked after the code and before the code is consumed (so a mistyped
//! PIN does not cost a new SMS); without it, or with a wrong one, the answer is an error and no
//! device, key, group, contact or backup of the account reaches the caller. Once the PIN's
//! lockout has ended, verifying without a PIN deletes the old account, all of its data as
//! `deleteAccount` would, and creates a fresh one with a new user id (see
//! [`super::registration_pin`]).

use super::close_connections;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode, PortError};
use crate::ids::{DeviceId, UserId};
use crate::phone::PhoneNumber;
use crate::ports::{
    AccountStore, ConnectionGateway, ConnectionStore, Device, DeviceQueueStore, KeyStore,
    PendingRegistration, RegistrationStore, User,
};
use crate::protocol::{Credentials, ValidateAccountRequest};
use crate::secrets::{ApiKey, VerificationCode};

/// Wrong codes accepted against one code before it is locked.
pub const MAX_FAILED_ATTEMPTS: u32 = 5;

/// What `validateAccount` needs.
pub struct Deps<'a> {
    /// Pending codes.
    pub registrations: &'a dyn RegistrationStore,
    /// Users and devices.
    pub accounts: &'a dyn AccountStore,
    /// Live connections (to close the replaced devices').
    pub connections: &'a dyn ConnectionStore,
    /// The management API.
    pub gateway: &'a dyn ConnectionGateway,
    /// The key directory (the replaced devices' keys are deleted).
    pub keys: &'a dyn KeyStore,
    /// Device queues (the replaced devices' queues are deleted).
    pub queues: &'a dyn DeviceQueueStore,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The rest of an account's data: a PIN reset deletes the old account's (its groups,
    /// chats, contacts, statuses and backups), as `deleteAccount` would.
    pub data: super::delete_account::AccountData<'a>,
}

/// Verifies the code and returns the new device's credentials.
#[tracing::instrument(skip_all)]
pub async fn validate_account(
    deps: &Deps<'_>,
    req: &ValidateAccountRequest,
) -> Result<Credentials, ApiError> {
    let phone = PhoneNumber::parse(&req.phone).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let code = VerificationCode::parse(&req.code)
        .ok_or_else(|| ApiError::bad_request("code must be 6 digits"))?;
    req.device.validate()?;

    let reset = consume_code(deps, &phone, &code, req.pin.as_deref()).await?;

    let now = deps.clock.now();
    let api_key = ApiKey::generate();
    let new_device = |user_id: &UserId| Device {
        user_id: user_id.clone(),
        device_id: DeviceId::generate(),
        name: req.device.name.trim().to_owned(),
        platform: req.device.platform,
        primary: true,
        key_hash: api_key.hash(),
        created_at: now,
    };

    let device = match deps.accounts.user_by_phone(&phone).await? {
        None => {
            let user = User {
                user_id: UserId::generate(),
                phone: phone.clone(),
                created_at: now,
            };
            let device = new_device(&user.user_id);
            match deps.accounts.create_account(&user, &device).await {
                Ok(()) => {
                    tracing::info!(user = %user.user_id.pseudonym(), "account created");
                    device
                }
                Err(PortError::Conflict) => {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "this number was registered concurrently; request a new code",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Some(user_id) if reset => {
            // The lockout ended without the PIN: the old account goes, all of it, as
            // `deleteAccount` deletes it (its number claim, PIN, devices, keys, connections,
            // groups, chats, contacts, statuses and backups): whoever holds the number now gets
            // none of it. Then the number starts afresh.
            let old = deps.accounts.devices(&user_id).await?;
            if let Some(user) = deps.accounts.user(&user_id).await? {
                let purge = super::delete_account::Deps {
                    accounts: deps.accounts,
                    connections: deps.connections,
                    gateway: deps.gateway,
                    keys: deps.keys,
                    queues: deps.queues,
                    clock: deps.clock,
                    data: deps.data,
                };
                super::delete_account::purge(&purge, &user, &old, None).await?;
            }
            tracing::info!(user = %user_id.pseudonym(), "registration PIN locked out: account reset");
            let user = User {
                user_id: UserId::generate(),
                phone: phone.clone(),
                created_at: now,
            };
            let device = new_device(&user.user_id);
            deps.accounts
                .create_account(&user, &device)
                .await
                .map_err(|e| match e {
                    PortError::Conflict => ApiError::new(
                        ErrorCode::Conflict,
                        "this number was registered concurrently; request a new code",
                    ),
                    e => e.into(),
                })?;
            device
        }
        Some(user_id) => {
            let old = deps.accounts.devices(&user_id).await?;
            let device = new_device(&user_id);
            // Old devices and keys first, then their connections are listed (see
            // remove_device); links the old primary approved end too.
            deps.accounts.replace_devices(&device, &old).await?;
            evict(deps, &user_id, &old).await?;
            tracing::info!(user = %user_id.pseudonym(), replaced = old.len(), "account moved to a new device");
            device
        }
    };
    Ok(Credentials {
        user_id: device.user_id.to_string(),
        device_id: device.device_id.to_string(),
        api_key: api_key.expose().to_owned(),
    })
}

/// Ends what the replaced devices `old` of `user_id` had: links they approved, their
/// connections, push endpoints, keys and queues.
async fn evict(deps: &Deps<'_>, user_id: &UserId, old: &[Device]) -> Result<(), ApiError> {
    deps.accounts.end_pending_links(user_id).await?;
    let old_connections: Vec<_> = deps
        .connections
        .for_user(user_id)
        .await?
        .into_iter()
        .filter(|(d, _)| old.iter().any(|o| &o.device_id == d))
        .map(|(_, c)| c)
        .collect();
    close_connections(deps.connections, deps.gateway, &old_connections).await?;
    for c in &old_connections {
        deps.connections.remove(c).await?;
    }
    // The old devices' push endpoints go too: a sold or lost phone gets no more pushes.
    // The new device cannot be connected yet (its key is in this very reply).
    deps.connections.forget_user(user_id).await?;
    for d in old {
        super::remove_device::purge_device_data(deps.keys, deps.queues, &d.user_id, &d.device_id)
            .await?;
    }
    Ok(())
}

/// Checks the code against the pending registration, then (if the number's account has one)
/// the registration PIN, and consumes the code; or records a wrong try. Answers whether the
/// account is to be reset (its PIN's lockout is over and no PIN was given).
async fn consume_code(
    deps: &Deps<'_>,
    phone: &PhoneNumber,
    code: &VerificationCode,
    pin: Option<&str>,
) -> Result<bool, ApiError> {
    for _ in 0..3 {
        let Some(reg) = deps.registrations.get(phone).await? else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no code was requested for this number; request one first",
            ));
        };
        if deps.clock.now() >= reg.expires_at {
            return Err(ApiError::new(
                ErrorCode::Expired,
                "the code has expired; request a new one",
            ));
        }
        if reg.failed_attempts >= MAX_FAILED_ATTEMPTS {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                "too many wrong codes; request a new one",
            ));
        }
        if !code.matches(&reg.code) {
            let failed = PendingRegistration {
                failed_attempts: reg.failed_attempts + 1,
                version: reg.version + 1,
                ..reg.clone()
            };
            match deps.registrations.put(&failed, Some(reg.version)).await {
                Ok(()) => {
                    let left = MAX_FAILED_ATTEMPTS - failed.failed_attempts;
                    return Err(ApiError::new(
                        ErrorCode::Unauthorized,
                        format!("wrong code; {left} tries left"),
                    ));
                }
                Err(PortError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // The code is right. An account with a PIN needs it proven before anything else.
        let mut reset = false;
        if let Some(user_id) = deps.accounts.user_by_phone(phone).await?
            && let Some(record) = deps.accounts.registration_pin(&user_id).await?
        {
            reset =
                super::registration_pin::check_pin(deps.accounts, &record, pin, deps.clock.now())
                    .await?
                    == super::registration_pin::PinOutcome::Reset;
        }
        match deps.registrations.delete(phone, reg.version).await {
            Ok(()) => return Ok(reset),
            Err(PortError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PortError::Conflict.into())
}
