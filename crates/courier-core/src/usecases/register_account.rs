//! `registerAccount`: send a six-digit code by SMS to a phone number.
//!
//! Rules: a code lives 15 minutes; at most 3 codes per number in any 15 minutes; a new code
//! replaces the previous one and resets its wrong-try count. Writes are optimistic (versioned),
//! so two concurrent requests for one number cannot both slip under the limit.

use crate::clock::Clock;
use crate::error::{ApiError, PortError};
use crate::phone::PhoneNumber;
use crate::ports::{PendingRegistration, RegistrationStore, SmsSender};
use crate::protocol::RegisterAccountResponse;
use crate::secrets::VerificationCode;
use chrono::Duration;

/// How long a code is accepted, unless configured otherwise (tests shorten it).
pub const CODE_LIFETIME_SECS: i64 = 15 * 60;
/// The window in which at most [`MAX_CODES_PER_WINDOW`] codes are sent to one number.
pub const SEND_WINDOW_SECS: i64 = 15 * 60;
/// Codes per number per window.
pub const MAX_CODES_PER_WINDOW: usize = 3;

/// What `registerAccount` needs.
pub struct Deps<'a> {
    /// Pending codes.
    pub registrations: &'a dyn RegistrationStore,
    /// SMS.
    pub sms: &'a dyn SmsSender,
    /// Time.
    pub clock: &'a dyn Clock,
    /// How long a code is accepted ([`CODE_LIFETIME_SECS`] in production).
    pub code_lifetime_secs: i64,
    /// Codes per phone number and per source IP (`None`: unlimited).
    pub limits: Option<CodeLimits<'a>>,
}

/// The rate limits on sending codes, on top of the per-number rule above.
#[derive(Clone, Copy)]
pub struct CodeLimits<'a> {
    /// Requests per phone number.
    pub per_phone: crate::rate_limit::Throttle<'a>,
    /// Requests per source IP.
    pub per_ip: crate::rate_limit::Throttle<'a>,
}

/// Sends a new code to `phone`, asked for from `source_ip` (when the gateway says).
///
/// Rate limits come first: every request counts against its source IP, and one that passes
/// that counts against the phone number; a refused request sends nothing.
#[tracing::instrument(skip_all)]
pub async fn register_account(
    deps: &Deps<'_>,
    phone: &str,
    source_ip: Option<&str>,
) -> Result<RegisterAccountResponse, ApiError> {
    let phone = PhoneNumber::parse(phone).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(limits) = &deps.limits {
        let now = deps.clock.now();
        if let Some(ip) = source_ip.filter(|ip| !ip.is_empty()) {
            limits
                .per_ip
                .take(
                    &format!("codes-ip#{ip}"),
                    "verification codes from this address",
                    now,
                )
                .await?;
        }
        limits
            .per_phone
            .take(
                &format!("codes-phone#{}", phone.as_str()),
                "verification codes for this number",
                now,
            )
            .await?;
    }
    let code = VerificationCode::generate();
    // A lost race re-reads and re-checks the limit; three rounds are plenty for one phone.
    for _ in 0..3 {
        let now = deps.clock.now();
        let existing = deps.registrations.get(&phone).await?;
        let window_start = now - Duration::seconds(SEND_WINDOW_SECS);
        let mut sent_at: Vec<_> = existing
            .as_ref()
            .map(|r| {
                r.sent_at
                    .iter()
                    .copied()
                    .filter(|t| *t > window_start)
                    .collect()
            })
            .unwrap_or_default();
        if sent_at.len() >= MAX_CODES_PER_WINDOW {
            let oldest = sent_at.iter().min().copied().unwrap_or(now);
            let retry = (oldest + Duration::seconds(SEND_WINDOW_SECS) - now)
                .num_seconds()
                .max(1);
            return Err(ApiError::limit_exceeded(
                format!(
                    "at most {MAX_CODES_PER_WINDOW} codes per number in 15 minutes; retry later"
                ),
                retry as u64,
            ));
        }
        sent_at.push(now);
        let reg = PendingRegistration {
            phone: phone.clone(),
            code: code.hash(),
            expires_at: now + Duration::seconds(deps.code_lifetime_secs),
            failed_attempts: 0,
            sent_at,
            version: existing.as_ref().map_or(1, |r| r.version + 1),
        };
        match deps
            .registrations
            .put(&reg, existing.map(|r| r.version))
            .await
        {
            Ok(()) => {
                let text = format!(
                    "Your Courier code is {}. It expires in 15 minutes. Never share it.",
                    code.expose()
                );
                deps.sms.send_sms(&phone, &text).await?;
                tracing::info!(phone = %phone.redacted(), "verification code sent");
                return Ok(RegisterAccountResponse {
                    expires_in_seconds: deps.code_lifetime_secs as u64,
                });
            }
            Err(PortError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PortError::Conflict.into())
}
