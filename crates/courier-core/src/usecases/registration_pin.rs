//! Two-step verification: `setRegistrationPin`, `removeRegistrationPin`,
//! `checkRegistrationPin`, and the PIN check of `POST /v1/accounts/verify` (docs/protocol.md,
//! two-step verification).
//!
//! Whoever receives a number's SMS (a recycled number, a swapped SIM) can prove the code. An
//! account with a PIN is moved to a new phone only when the PIN is proven too, so such a person
//! gets none of its groups, contacts or backups. Wrong PINs count against the account (not the
//! code or the caller, since a new code or a new address is cheap): after
//! [`MAX_PIN_ATTEMPTS`] the PIN is refused, even right, for [`PIN_LOCKOUT_SECS`]; after that
//! the number may be registered without it, which starts a fresh account.
//!
//! The primary device sets, changes and removes the PIN as it likes (it holds the number). A
//! companion (Courier Web, a linked CLI) may change or remove it only by giving the current
//! one, and may never set the first: a stolen companion can then neither lift the protection
//! nor lock the owner out with a PIN the owner does not know. The PINs companions give, and
//! those `checkRegistrationPin` is asked about, count against a budget of wrong PINs per account
//! and day of its own (`Limits::pin_checks`), never against the registration lockout, so
//! guessing from a companion cannot lock the owner's re-registration either.

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode, PortError};
use crate::ports::{DeviceCredential, RegistrationPinRecord, UserDirectory};
use crate::protocol::{
    CheckRegistrationPinParams, CheckRegistrationPinResponse, RegistrationPinResponse,
    RemoveRegistrationPinParams, SetRegistrationPinParams,
};
use crate::rate_limit::Throttle;
use crate::secrets::RegistrationPin;
use chrono::{DateTime, Duration, Utc};

/// Wrong PINs accepted before the lockout.
pub const MAX_PIN_ATTEMPTS: u32 = 10;
/// How long the PIN is refused once the tries are spent (7 days).
pub const PIN_LOCKOUT_SECS: i64 = 7 * 86_400;

/// What `setRegistrationPin`, `removeRegistrationPin` and `checkRegistrationPin` need.
pub struct Deps<'a> {
    /// Users, devices and PINs.
    pub accounts: &'a dyn UserDirectory,
    /// The per-device limit of the operation (`None`: unlimited).
    pub limit: Option<Throttle<'a>>,
    /// The account's budget of wrong PINs given by companions and to `checkRegistrationPin`
    /// (a window; `None`: unlimited).
    pub checks: Option<Throttle<'a>>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
}

/// Whether `who` is its account's primary device (the phone holding the number).
async fn is_primary(
    accounts: &dyn UserDirectory,
    who: &DeviceCredential,
) -> Result<bool, ApiError> {
    Ok(accounts
        .devices(&who.user_id)
        .await?
        .iter()
        .any(|d| d.device_id == who.device_id && d.primary))
}

fn parse(pin: &str, field: &str) -> Result<RegistrationPin, ApiError> {
    RegistrationPin::parse(pin)
        .ok_or_else(|| ApiError::bad_request(format!("{field} must be 6 digits")))
}

/// The counter of the account's wrong-PIN budget.
fn checks_key(who: &DeviceCredential) -> String {
    format!("registrationPinChecks#{}", who.user_id)
}

/// Judges `pin` against the stored `hash` under the account's budget of wrong PINs: one try is
/// taken first (so concurrent guesses cannot all pass a check before any is counted; past the
/// budget, `LIMIT_EXCEEDED` before the PIN is looked at, right or wrong) and given back when
/// the PIN was right. Whether it was right.
async fn judge(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    pin: &RegistrationPin,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let key = checks_key(who);
    crate::rate_limit::take(
        deps.checks.as_ref(),
        &key,
        "wrong registration PINs today",
        now,
    )
    .await?;
    let right = pin.matches(hash);
    if !right {
        tracing::info!("wrong registration PIN given by a device of the account");
    } else if let Some(checks) = &deps.checks {
        checks.give_back(&key, now).await?;
    }
    Ok(right)
}

/// From a companion: `Ok` only when `current` is the account's PIN. `FORBIDDEN` when the
/// account has none (a companion never sets the first), `PIN_REQUIRED` without `current`,
/// `WRONG_PIN` when it is wrong (counted), `LIMIT_EXCEEDED` past the day's budget. Returns the
/// record the change is to be written over.
async fn prove_current(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    current: Option<&str>,
    what: &str,
    now: DateTime<Utc>,
) -> Result<RegistrationPinRecord, ApiError> {
    let Some(record) = deps.accounts.registration_pin(&who.user_id).await? else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this account has no registration PIN, and only the primary device (the phone that \
             registered the number) can turn two-step verification on",
        ));
    };
    let Some(current) = current else {
        return Err(ApiError::new(
            ErrorCode::PinRequired,
            format!(
                "from a linked device, send the account's current PIN (currentPin) to {what} it"
            ),
        ));
    };
    let current = parse(current, "currentPin")?;
    if judge(deps, who, &current, &record.hash, now).await? {
        Ok(record)
    } else {
        Err(ApiError::new(
            ErrorCode::WrongPin,
            "currentPin is not the account's registration PIN",
        ))
    }
}

/// Sets (or changes) the account's PIN; the wrong-try count starts again. From the primary no
/// current PIN is asked for (as WhatsApp: the phone holds the number anyway); from a companion
/// only a change, proven with `currentPin`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn set_registration_pin(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    params: SetRegistrationPinParams,
) -> Result<RegistrationPinResponse, ApiError> {
    let now = deps.clock.now();
    crate::rate_limit::take_per_device(deps.limit.as_ref(), "setRegistrationPin", who, now).await?;
    let pin = parse(&params.pin, "pin")?;
    let primary = is_primary(deps.accounts, who).await?;
    let proven = if primary {
        None
    } else {
        Some(prove_current(deps, who, params.current_pin.as_deref(), "change", now).await?)
    };
    let hash = pin.hash();
    for _ in 0..3 {
        let existing = match &proven {
            // The change is written over the very record the current PIN was proven against:
            // if it changed meanwhile (the primary set another PIN), this one is not applied.
            Some(p) => Some(p.clone()),
            None => deps.accounts.registration_pin(&who.user_id).await?,
        };
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
                tracing::info!(primary, "registration PIN set");
                return Ok(RegistrationPinResponse { pin_enabled: true });
            }
            Err(PortError::Conflict) if proven.is_none() => continue,
            Err(PortError::Conflict) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "the registration PIN changed meanwhile; try again",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PortError::Conflict.into())
}

/// Removes the account's PIN: from the primary at any time (nothing if it has none), from a
/// companion only with `currentPin`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn remove_registration_pin(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    params: RemoveRegistrationPinParams,
) -> Result<RegistrationPinResponse, ApiError> {
    let now = deps.clock.now();
    crate::rate_limit::take_per_device(deps.limit.as_ref(), "removeRegistrationPin", who, now)
        .await?;
    let primary = is_primary(deps.accounts, who).await?;
    // A companion removes the very record its current PIN was proven against: if the PIN
    // changed meanwhile (the primary set another), nothing is removed.
    let proven = if primary {
        None
    } else {
        let record = prove_current(deps, who, params.current_pin.as_deref(), "remove", now).await?;
        Some(record.version)
    };
    match deps
        .accounts
        .delete_registration_pin(&who.user_id, proven)
        .await
    {
        Ok(()) => {}
        Err(PortError::Conflict) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the registration PIN changed meanwhile; try again",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(primary, "registration PIN removed");
    Ok(RegistrationPinResponse { pin_enabled: false })
}

/// `checkRegistrationPin`: whether `pin` is the account's PIN, for any of its devices (the
/// periodic reminder that keeps the user remembering it). `NOT_FOUND` when the account has no
/// PIN. A wrong PIN is an answer (`correct: false`), counted against the account's daily
/// budget; the registration lockout is not touched.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn check_registration_pin(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    params: CheckRegistrationPinParams,
) -> Result<CheckRegistrationPinResponse, ApiError> {
    let now = deps.clock.now();
    crate::rate_limit::take_per_device(deps.limit.as_ref(), "checkRegistrationPin", who, now)
        .await?;
    let pin = parse(&params.pin, "pin")?;
    let Some(record) = deps.accounts.registration_pin(&who.user_id).await? else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this account has no registration PIN (two-step verification is off)",
        ));
    };
    let correct = judge(deps, who, &pin, &record.hash, now).await?;
    Ok(CheckRegistrationPinResponse { correct })
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
    accounts: &dyn UserDirectory,
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
