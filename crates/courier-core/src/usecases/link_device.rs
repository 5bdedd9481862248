//! Linking a companion device (web, desktop, a second phone) to an account.
//!
//! 1. The new device asks: `POST /v1/devices/link-requests` → a random `linkId` (its secret) and
//!    a short `code`, valid 5 minutes, which it shows (as a QR code and as text).
//! 2. The account's primary device approves the code: `approveDeviceLink {"code"}`. Codes are
//!    single use; at most [`MAX_COMPANIONS`] companions besides the primary.
//! 3. The new device polls `GET /v1/devices/link-requests/{linkId}`: 202 while pending, then 200
//!    with its own API key, exactly once. The key is generated at that moment and stored only as
//!    a hash, so no usable key ever sits in the table.
//!
//! An approval is good only while the code is (5 minutes), while the primary device that gave
//! it exists, and until the account revokes devices (re-registration, `deleteAccount`,
//! `removeDevice` end its pending links); approved links not collected yet count toward the
//! companion cap (docs/security.md).

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode, PortError};
use crate::ids::DeviceId;
use crate::ports::{Device, DeviceCredential, LinkRequest, LinkStore, UserDirectory};
use crate::protocol::{Credentials, DeviceInfo};
use crate::protocol::{LinkRequested, LinkedDevice};
use crate::secrets::ApiKey;
use chrono::Duration;
use rand::Rng;

/// How long a link code works.
pub const LINK_LIFETIME_SECS: i64 = 5 * 60;
/// Companion devices an account may have besides its primary.
pub const MAX_COMPANIONS: usize = 5;
/// Characters of a link code: Crockford's base32 (no I, L, O, U), so codes read aloud or typed survive.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Code length: 10 characters, 50 bits.
const CODE_LEN: usize = 10;

/// What linking needs.
pub struct Deps<'a> {
    /// Link requests.
    pub links: &'a dyn LinkStore,
    /// The approver's devices, for the companion cap (`approveDeviceLink` only).
    pub accounts: Option<&'a dyn UserDirectory>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// Link attempts: requests per source IP, approvals per account (`None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
}

fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// Normalises what a user typed: case, spaces and dashes do not matter.
fn normalise_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// Step 1: a new device asks to be linked, from `source_ip` (when the gateway says).
pub async fn request_link(
    deps: &Deps<'_>,
    device: DeviceInfo,
    source_ip: Option<&str>,
) -> Result<LinkRequested, ApiError> {
    device.validate()?;
    if let Some(ip) = source_ip.filter(|ip| !ip.is_empty()) {
        crate::rate_limit::take(
            deps.throttle.as_ref(),
            &format!("link-ip#{ip}"),
            "link requests from this address",
            deps.clock.now(),
        )
        .await?;
    }
    for _ in 0..3 {
        let link = LinkRequest {
            link_id: format!("l_{}", uuid::Uuid::new_v4().simple()),
            code: new_code(),
            name: device.name.trim().to_owned(),
            platform: device.platform,
            expires_at: deps.clock.now() + Duration::seconds(LINK_LIFETIME_SECS),
            approved: None,
            approved_by: None,
        };
        match deps.links.create(&link).await {
            Ok(()) => {
                return Ok(LinkRequested {
                    link_id: link.link_id,
                    code: link.code,
                    expires_in_seconds: LINK_LIFETIME_SECS.unsigned_abs(),
                });
            }
            Err(PortError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PortError::Conflict.into())
}

/// Step 2: the primary device approves a code.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn approve(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    code: &str,
) -> Result<LinkedDevice, ApiError> {
    let code = normalise_code(code)
        .ok_or_else(|| ApiError::bad_request("code must be 10 letters and digits"))?;
    // Per account, before the code is looked up: guessing codes is what this slows down.
    crate::rate_limit::take(
        deps.throttle.as_ref(),
        &format!("link-approve#{}", who.user_id),
        "link approvals",
        deps.clock.now(),
    )
    .await?;
    let accounts = super::wired(deps.accounts, "the accounts")?;
    let devices = accounts.devices(&who.user_id).await?;
    let me = devices.iter().find(|d| d.device_id == who.device_id);
    if !me.is_some_and(|d| d.primary) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the primary device can link devices",
        ));
    }
    let link = deps
        .links
        .by_code(&code)
        .await?
        .filter(|l| l.approved.is_none())
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, "no pending link request has this code")
        })?;
    if deps.clock.now() >= link.expires_at {
        return Err(ApiError::new(
            ErrorCode::Expired,
            "the link code has expired; show a new one",
        ));
    }
    // Approved links not collected yet will be companions: they count.
    let now = deps.clock.now();
    let pending = accounts
        .pending_links(&who.user_id)
        .await?
        .into_iter()
        .filter(|p| p.expires_at > now)
        .count();
    if devices.iter().filter(|d| !d.primary).count() + pending >= MAX_COMPANIONS {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {MAX_COMPANIONS} linked devices; remove one first"),
        ));
    }
    let device = DeviceCredential {
        user_id: who.user_id.clone(),
        device_id: DeviceId::generate(),
    };
    match deps.links.approve(&link, &device, &who.device_id).await {
        Ok(()) => {}
        Err(PortError::Conflict) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "this code was already used",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(device = %device.device_id.pseudonym(), "device link approved");
    Ok(LinkedDevice {
        device_id: device.device_id.to_string(),
        name: link.name,
        platform: link.platform,
    })
}

/// What the new device's poll finds.
#[derive(Debug)]
pub enum LinkPoll {
    /// Not approved yet.
    Pending,
    /// Approved: the credentials, handed out this once.
    Linked(Credentials),
}

/// Step 3: the new device polls; once approved, it gets its key, once.
pub async fn poll(deps: &Deps<'_>, link_id: &str) -> Result<LinkPoll, ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorCode::NotFound,
            "no such link request (or its key was already handed out)",
        )
    };
    if !link_id.starts_with("l_") || link_id.len() > 64 {
        return Err(not_found());
    }
    let link = deps.links.by_id(link_id).await?.ok_or_else(not_found)?;
    // An approval does not outlive the code: a new device that did not collect its key in
    // time must ask again (an approval kept for later would let it join whenever it liked).
    if deps.clock.now() >= link.expires_at {
        return Err(ApiError::new(
            ErrorCode::Expired,
            "the link request expired before its key was collected",
        ));
    }
    let Some(approved) = link.approved.clone() else {
        return Ok(LinkPoll::Pending);
    };
    let key = ApiKey::generate();
    let device = Device {
        user_id: approved.user_id.clone(),
        device_id: approved.device_id.clone(),
        name: link.name.clone(),
        platform: link.platform,
        primary: false,
        key_hash: key.hash(),
        created_at: deps.clock.now(),
    };
    match deps.links.complete(&link, &device).await {
        Ok(()) => Ok(LinkPoll::Linked(Credentials {
            user_id: approved.user_id.to_string(),
            device_id: approved.device_id.to_string(),
            api_key: key.expose().to_owned(),
        })),
        // Already collected, ended by a revocation, or its approver is gone.
        Err(PortError::Conflict) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_unambiguous_characters_and_typing_is_forgiving() {
        let c = new_code();
        assert_eq!(c.len(), CODE_LEN);
        assert_eq!(normalise_code(&c).unwrap(), c);
        assert_eq!(normalise_code("abcde-fghjk").unwrap(), "ABCDEFGHJK");
        assert!(
            normalise_code("ABCDEFGHIL").is_none(),
            "I and L are not in the alphabet"
        );
        assert!(normalise_code("SHORT").is_none());
    }
}
