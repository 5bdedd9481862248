//! Two-step verification: `setRegistrationPin`, `removeRegistrationPin`, and the PIN check of
//! `POST /v1/accounts/verify` (docs/protocol.md, two-step verification).
//!
//! Whoever receives a number's SMS (a recycled number, a swapped SIM) can prove the code. An
//! account with a PIN is moved to a new phone only when the PIN is proven too, so such a person
//! gets none of its groups, contacts or backups. Wrong PINs count against the account (not the
//! code or the caller, since a new code or a new address is cheap): after
//! [`MAX_PIN_ATTEMPTS`] the PIN is refused, even right, for [`PIN_LOCKOUT_SECS`]; after that
//! the number may be registered without it, which starts a fresh account.

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode, PortError};
use crate::ports::{AccountStore, DeviceCredential, RegistrationPinRecord};
use crate::protocol::{RegistrationPinResponse, SetRegistrationPinParams};
use crate::rate_limit::Throttle;
use crate::secrets::RegistrationPin;
use chrono::{DateTime, Duration, Utc};

/// Wrong PINs accepted before the lockout.
pub const MAX_PIN_ATTEMPTS: u32 = 10;
/// How long the PIN is refused once the tries are spent (7 days).
pub const PIN_LOCKOUT_SECS: i64 = 7 * 86_400;

/// What `setRegistrationPin` and `removeRegistrationPin` need.
pub struct Deps<'a> {
    /// Users, devices and PINs.
    pub accounts: &'a dyn AccountStore,
    /// The per-device limit of the operation (`None`: unlimited).
    pub limit: Option<Throttle<'a>>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
}

/// `FORBIDDEN` unless `who` is its account's primary device (the phone holding the number):
/// a linked companion must not be able to lock the owner out, nor lift the protection.
async fn require_primary(
    accounts: &dyn AccountStore,
    who: &DeviceCredential,
    what: &str,
) -> Result<(), ApiError> {
    let primary = accounts
        .devices(&who.user_id)
        .await?
        .iter()
        .any(|d| d.device_id == who.device_id && d.primary);
    if primary {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only the primary device can {what} the registration PIN"),
        ))
    }
}

/// Sets (or changes) the account's PIN; the wrong-try count starts again.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn set_registration_pin(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    params: SetRegistrationPinParams,
) -> Result<RegistrationPinResponse, ApiError> {
    let now = deps.clock.now();
    crate::rate_limit::take_per_device(deps.limit.as_ref(), "setRegistrationPin", who, now).await?;
    require_primary(deps.accounts, who, "set").await?;
    let pin = RegistrationPin::parse(&params.pin)
        .ok_or_else(|| ApiError::bad_request("pin must be 6 digits"))?;
    let hash = pin.hash();
    for _ in 0..3 {
        let existing = deps.accounts.registration_pin(&who.user_id).await?;
        let record = RegistrationPinRecord {
            user_id: who.user_id.clone(),
            hash: hash.clone(),
            failed_attempts: 0,
            locked_until: None,
            version: existing.as_ref().map_or(1, |p| p.version + 1),
        };
        match deps
            .accounts
            .put_registration_pin(&record, existing.map(|p| p.version))
            .await
        {
            Ok(()) => {
                tracing::info!("registration PIN set");
                return Ok(RegistrationPinResponse { pin_enabled: true });
            }
            Err(PortError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PortError::Conflict.into())
}

/// Removes the account's PIN (nothing if it has none).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn remove_registration_pin(
    deps: &Deps<'_>,
    who: &DeviceCredential,
) -> Result<RegistrationPinResponse, ApiError> {
    let now = deps.clock.now();
    crate::rate_limit::take_per_device(deps.limit.as_ref(), "removeRegistrationPin", who, now)
        .await?;
    require_primary(deps.accounts, who, "remove").await?;
    deps.accounts.delete_registration_pin(&who.user_id).await?;
    tracing::info!("registration PIN removed");
    Ok(RegistrationPinResponse { pin_enabled: false })
}

/// What the verify step may do with an account that has a PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// The PIN was proven: the account moves to the new device.
    Proven,
    /// The lockout has ended and no PIN was given: the old account is deleted and the number
    /// starts a fresh one (nothing of the old one is handed over).
    Reset,
}

/// Checks `given` against the account's PIN `record` at `now`, recording a wrong try. Any
/// error means nothing of the account may be handed over. `Conflict` (a concurrent try changed
/// the record) is for the caller to retry.
pub(crate) async fn check_pin(
    accounts: &dyn AccountStore,
    record: &RegistrationPinRecord,
    given: Option<&str>,
    now: DateTime<Utc>,
) -> Result<PinOutcome, ApiError> {
    let given = given
        .map(|p| {
            RegistrationPin::parse(p).ok_or_else(|| ApiError::bad_request("pin must be 6 digits"))
        })
        .transpose()?;
    let locked_out = record.failed_attempts >= MAX_PIN_ATTEMPTS;
    if locked_out && let Some(until) = record.locked_until.filter(|u| now < *u) {
        // Refused before the PIN is even looked at: the 11th try is refused right or wrong.
        return Err(lockout_error(until, now));
    }
    let Some(pin) = given else {
        if locked_out {
            return Ok(PinOutcome::Reset);
        }
        return Err(ApiError::new(
            ErrorCode::PinRequired,
            format!(
                "this account has two-step verification: send its registration PIN ({} tries left)",
                MAX_PIN_ATTEMPTS - record.failed_attempts
            ),
        ));
    };
    let proven = pin.matches(&record.hash);
    let failed_attempts = if proven {
        0
    } else {
        (record.failed_attempts + 1).min(MAX_PIN_ATTEMPTS)
    };
    // A wrong try that spends the last one (or any wrong try after a lockout ended) locks the
    // PIN for another full period.
    let locked_until = (!proven && failed_attempts >= MAX_PIN_ATTEMPTS)
        .then(|| now + Duration::seconds(PIN_LOCKOUT_SECS));
    let updated = RegistrationPinRecord {
        failed_attempts,
        locked_until,
        version: record.version + 1,
        ..record.clone()
    };
    match accounts
        .put_registration_pin(&updated, Some(record.version))
        .await
    {
        Ok(()) => {}
        // Another try against the same account got there first; its count stands, this one
        // is not judged (the client may retry).
        Err(PortError::Conflict) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "another verification of this number ran at the same time; retry",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    if proven {
        return Ok(PinOutcome::Proven);
    }
    tracing::info!(user = %record.user_id.pseudonym(), failed_attempts, "wrong registration PIN");
    match locked_until {
        Some(until) => Err(lockout_error(until, now)),
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!(
                "wrong PIN; {} tries left",
                MAX_PIN_ATTEMPTS - failed_attempts
            ),
        )),
    }
}

fn lockout_error(until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    let retry = (until - now).num_seconds().max(1) as u64;
    ApiError::limit_exceeded(
        format!(
            "too many wrong PINs: the PIN is locked for {retry} s; after that the number can be \
             registered without it as a new, empty account"
        ),
        retry,
    )
}
