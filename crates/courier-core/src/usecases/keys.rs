//! The key directory: `uploadKeys`, `claimKeys`, `listDevices`.
//!
//! The server is a directory for public keys; it checks their shape (unpadded base64 of the
//! right length), never their cryptography: clients verify each one-time key's signature against
//! the owner's signing key. Each one-time key is handed out at most once, even to concurrent
//! claims (the store's claim is a conditional delete); once none are left the fallback key is
//! handed out, and kept.

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{DeviceId, UserId};
use crate::ports::{DeviceCredential, DeviceKeys, KeyStore, SignedKey, UserDirectory};
use crate::protocol::{
    ClaimKeysParams, ClaimKeysReply, DeviceList, KeyBundle, ListDevicesParams, UploadKeysParams,
    UploadKeysReply, UserDevice,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use std::collections::HashSet;

/// One-time keys accepted in one `uploadKeys`.
pub const MAX_KEYS_PER_UPLOAD: usize = 100;
/// Unclaimed one-time keys kept per device.
pub const MAX_STORED_ONE_TIME_KEYS: usize = 200;
/// Users in one `listDevices`: the reply of this many, each with a primary and the most
/// companions (about 250 bytes a device with keys), stays within the reply budget
/// ([`crate::protocol::REPLY_BUDGET_BYTES`]); 257 made replies of up to about 400 KB, which API
/// Gateway never sends. A client asks about a large group in chunks of this many.
pub const MAX_LIST_USERS: usize = 50;
/// Device ids in one `claimKeys`.
pub const MAX_CLAIM_DEVICES: usize = 100;
/// Length of a Curve25519 or Ed25519 public key in unpadded base64.
pub const PUBLIC_KEY_CHARS: usize = 43;
/// Length of an Ed25519 signature in unpadded base64.
pub const SIGNATURE_CHARS: usize = 86;
/// Longest key id accepted.
pub const MAX_KEY_ID_CHARS: usize = 64;
/// Directory reads in flight at once.
const CONCURRENT_READS: usize = 16;

/// What the key operations need.
pub struct Deps<'a> {
    /// Do the users and devices exist? (`claimKeys`, `listDevices`: `uploadKeys` reads no
    /// account.)
    pub accounts: Option<&'a dyn UserDirectory>,
    /// The key directory.
    pub keys: &'a dyn KeyStore,
    /// `claimKeys`: claims per target user that may take a one-time key (`None`: unlimited).
    /// Past it a claim gets the fallback key, so a drain cannot empty the pool and no one is
    /// refused the target's keys.
    pub one_time_keys_per_target: Option<crate::rate_limit::Throttle<'a>>,
    /// Time (the window of `one_time_keys_per_target`).
    pub clock: &'a dyn Clock,
}

fn is_base64(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn check_base64(field: &str, value: &str, len: usize) -> Result<(), ApiError> {
    if value.len() != len || !is_base64(value) {
        return Err(ApiError::bad_request(format!(
            "{field} must be {len} characters of unpadded base64"
        )));
    }
    Ok(())
}

fn check_signed_key(field: &str, k: &SignedKey) -> Result<(), ApiError> {
    let id_ok = !k.key_id.is_empty()
        && k.key_id.len() <= MAX_KEY_ID_CHARS
        && k.key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b));
    if !id_ok {
        return Err(ApiError::bad_request(format!(
            "{field}.keyId must be 1 to {MAX_KEY_ID_CHARS} characters of base64"
        )));
    }
    check_base64(&format!("{field}.key"), &k.key, PUBLIC_KEY_CHARS)?;
    check_base64(&format!("{field}.signature"), &k.signature, SIGNATURE_CHARS)
}

/// Parses a user id from a request (`field` names it in the error).
pub fn user_id_param(field: &str, s: &str) -> Result<UserId, ApiError> {
    id_param(field, s, "u_").map(UserId::from_trusted)
}

/// Parses a device id from a request (`field` names it in the error).
pub fn device_id_param(field: &str, s: &str) -> Result<DeviceId, ApiError> {
    id_param(field, s, "d_").map(DeviceId::from_trusted)
}

fn id_param(field: &str, s: &str, prefix: &str) -> Result<String, ApiError> {
    let ok = s.starts_with(prefix)
        && s.len() > prefix.len()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(ApiError::bad_request(format!(
            "{field} must be an id starting with {prefix}"
        )));
    }
    Ok(s.to_owned())
}

/// `uploadKeys`: returns `{"oneTimeKeyCount"}`, the device's unclaimed one-time keys now.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym()))]
pub async fn upload_keys(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: UploadKeysParams,
) -> Result<UploadKeysReply, ApiError> {
    check_base64("identityKey", &p.identity_key, PUBLIC_KEY_CHARS)?;
    check_base64("signingKey", &p.signing_key, PUBLIC_KEY_CHARS)?;
    if p.one_time_keys.len() > MAX_KEYS_PER_UPLOAD {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("oneTimeKeys: at most {MAX_KEYS_PER_UPLOAD} per upload"),
        ));
    }
    for (i, k) in p.one_time_keys.iter().enumerate() {
        check_signed_key(&format!("oneTimeKeys[{i}]"), k)?;
    }
    if let Some(k) = &p.fallback_key {
        check_signed_key("fallbackKey", k)?;
    }

    let current = deps
        .keys
        .device_keys(&who.user_id)
        .await?
        .into_iter()
        .find(|k| k.device_id == who.device_id);
    // A new identity makes the old one-time and fallback keys useless: peers would find keys
    // signed by a key the device no longer has.
    let replaced = current
        .as_ref()
        .is_some_and(|c| c.identity_key != p.identity_key || c.signing_key != p.signing_key);
    let stored: HashSet<String> = match &current {
        Some(_) if !replaced => deps
            .keys
            .one_time_key_ids(&who.user_id, &who.device_id)
            .await?
            .into_iter()
            .collect(),
        _ => HashSet::new(),
    };
    let mut seen = HashSet::new();
    let new: Vec<SignedKey> = p
        .one_time_keys
        .into_iter()
        .filter(|k| !stored.contains(&k.key_id) && seen.insert(k.key_id.clone()))
        .collect();
    let total = stored.len() + new.len();
    if total > MAX_STORED_ONE_TIME_KEYS {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!(
                "oneTimeKeys: a device keeps at most {MAX_STORED_ONE_TIME_KEYS} unclaimed; it has {} and sent {} new",
                stored.len(),
                new.len()
            ),
        ));
    }
    let fallback = match (p.fallback_key, &current) {
        (Some(k), _) => Some(k),
        (None, Some(c)) if !replaced => c.fallback.clone(),
        _ => None,
    };
    let entry = DeviceKeys {
        user_id: who.user_id.clone(),
        device_id: who.device_id.clone(),
        identity_key: p.identity_key,
        signing_key: p.signing_key,
        fallback,
    };
    if current.as_ref() != Some(&entry) {
        deps.keys.put_device_keys(&entry, replaced).await?;
    }
    if !new.is_empty() {
        deps.keys
            .add_one_time_keys(&who.user_id, &who.device_id, &new)
            .await?;
    }
    tracing::info!(
        added = new.len(),
        total,
        identity_replaced = replaced,
        "keys uploaded"
    );
    Ok(UploadKeysReply {
        one_time_key_count: total,
    })
}

/// `claimKeys`: one bundle per device of the user that has keys.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn claim_keys(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: ClaimKeysParams,
) -> Result<ClaimKeysReply, ApiError> {
    let user = user_id_param("userId", &p.user_id)?;
    let only: Option<HashSet<DeviceId>> = match &p.device_ids {
        None => None,
        Some(ids) if ids.is_empty() => {
            return Err(ApiError::bad_request(
                "deviceIds must name at least one device (or be left out)",
            ));
        }
        Some(ids) if ids.len() > MAX_CLAIM_DEVICES => {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("deviceIds: at most {MAX_CLAIM_DEVICES}"),
            ));
        }
        Some(ids) => Some(
            ids.iter()
                .map(|d| device_id_param("deviceIds", d))
                .collect::<Result<_, _>>()?,
        ),
    };
    // Every account has a device; none means no account. Keys of a device that is no longer in
    // the account (removed while its keys were being deleted) are not handed out.
    let devices = super::wired(deps.accounts, "the accounts")?
        .devices(&user)
        .await?;
    if devices.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no user {}", p.user_id),
        ));
    }
    let entries: Vec<DeviceKeys> = deps
        .keys
        .device_keys(&user)
        .await?
        .into_iter()
        .filter(|k| devices.iter().any(|d| d.device_id == k.device_id))
        .filter(|k| only.as_ref().is_none_or(|o| o.contains(&k.device_id)))
        .collect();
    // One count per claim of another user's keys (the caller's own devices are not limited).
    let one_time = match &deps.one_time_keys_per_target {
        Some(t) if user != who.user_id => {
            let key = format!("oneTimeKeys#{user}");
            match t.limiter.take(&key, t.rule, deps.clock.now()).await? {
                crate::rate_limit::Decision::Allowed => true,
                crate::rate_limit::Decision::Limited { .. } => {
                    tracing::info!(claimed_for = %user.pseudonym(), "one-time keys capped: fallback");
                    false
                }
            }
        }
        _ => true,
    };
    let bundles: Vec<KeyBundle> = stream::iter(entries)
        .map(|entry| async move {
            let otk = if one_time {
                deps.keys
                    .claim_one_time_key(&entry.user_id, &entry.device_id)
                    .await?
            } else {
                None
            };
            let (key, fallback) = match otk {
                Some(k) => (Some(k), false),
                None => (entry.fallback.clone(), entry.fallback.is_some()),
            };
            Ok::<_, ApiError>(KeyBundle {
                user_id: entry.user_id.to_string(),
                device_id: entry.device_id.to_string(),
                identity_key: entry.identity_key,
                signing_key: entry.signing_key,
                one_time_key: key,
                fallback,
            })
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    tracing::info!(claimed_for = %user.pseudonym(), devices = bundles.len(), "keys claimed");
    Ok(ClaimKeysReply { devices: bundles })
}

/// `listDevices`: every device of the users, with their keys once uploaded.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn list_devices(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: ListDevicesParams,
) -> Result<DeviceList, ApiError> {
    if p.user_ids.is_empty() {
        return Err(ApiError::bad_request("userIds must name at least one user"));
    }
    if p.user_ids.len() > MAX_LIST_USERS {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("userIds: at most {MAX_LIST_USERS}"),
        ));
    }
    let mut users: Vec<UserId> = Vec::with_capacity(p.user_ids.len());
    for u in &p.user_ids {
        let u = user_id_param("userIds", u)?;
        if !users.contains(&u) {
            users.push(u);
        }
    }
    let per_user: Vec<Vec<UserDevice>> = stream::iter(users)
        .map(|user| async move {
            let devices = super::wired(deps.accounts, "the accounts")?
                .devices(&user)
                .await?;
            if devices.is_empty() {
                return Ok(Vec::new());
            }
            let keys = deps.keys.device_keys(&user).await?;
            let mine = user == who.user_id;
            let mut out = Vec::with_capacity(devices.len());
            for d in devices {
                let mut v = UserDevice {
                    user_id: d.user_id.to_string(),
                    device_id: d.device_id.to_string(),
                    // A device's name ("Alice's work laptop") is the owner's to see.
                    name: if mine { d.name.clone() } else { String::new() },
                    platform: d.platform,
                    primary: d.primary,
                    identity_key: None,
                    signing_key: None,
                    one_time_key_count: None,
                };
                if let Some(k) = keys.iter().find(|k| k.device_id == d.device_id) {
                    v.identity_key = Some(k.identity_key.clone());
                    v.signing_key = Some(k.signing_key.clone());
                    if mine {
                        let n = deps
                            .keys
                            .one_time_key_count(&d.user_id, &d.device_id)
                            .await?;
                        v.one_time_key_count = Some(n);
                    }
                }
                out.push(v);
            }
            Ok::<_, ApiError>(out)
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    Ok(DeviceList {
        devices: per_user.into_iter().flatten().collect(),
    })
}
