//! `registerAccount`: send a six-digit code by SMS to a phone number.
//!
//! Rules: a code lives 15 minutes; at most 3 codes per number in any 15 minutes; a new code
//! replaces the previous one and resets its wrong-try count. Writes are optimistic (versioned),
//! so two concurrent requests for one number cannot both slip under the limit.

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode, PortError};
use crate::phone::PhoneNumber;
use crate::ports::{PendingRegistration, RegistrationStore, SmsSender};
use crate::protocol::RegisterAccountResponse;
use crate::secrets::VerificationCode;
use chrono::{DateTime, Duration, Utc};

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
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// How long a code is accepted ([`CODE_LIFETIME_SECS`] in production).
    pub code_lifetime_secs: i64,
    /// Test numbers (off in production unless the operator sets them).
    pub test_numbers: Option<TestNumbers>,
    /// Codes per phone number and per source IP (`None`: unlimited).
    pub limits: Option<CodeLimits<'a>>,
    /// The country allow-list and the hourly SMS budgets (`None`: every country, no budget).
    pub sms_guard: Option<SmsGuard<'a>>,
}

/// What stands between an attacker and the operator's SMS bill ("SMS pumping": codes requested
/// for numbers, often premium-rate ones, the attacker profits from, from ever new addresses, so
/// the limits per number and per address do not hold it).
///
/// - `allowed_calling_codes`: countries (by calling code) the deployment sends codes to; a code
///   for any other number is refused with `COUNTRY_NOT_SUPPORTED` and counts nothing.
/// - `per_country` and `global`: hourly budgets of SMS, one per calling code and one for the
///   whole service. They are fixed windows in the rate-limit table (an atomic conditional
///   `ADD` per hour, shared by every Lambda instance, never in a process). Once one is spent it
///   is a circuit breaker: every code it covers is refused with `SMS_BUDGET_EXHAUSTED` and
///   `retryAfter` (the end of the hour) before anything is sent, and the refusal is logged at
///   warn so the operator sees it next to the `SmsVolumeAlarm`.
///
/// Only codes that go out by SMS are counted (test numbers are not).
#[derive(Clone)]
pub struct SmsGuard<'a> {
    /// Calling codes allowed; empty allows every country.
    pub allowed_calling_codes: Vec<u16>,
    /// SMS per calling code per window.
    pub per_country: crate::rate_limit::Throttle<'a>,
    /// SMS for the whole service per window.
    pub global: crate::rate_limit::Throttle<'a>,
}

impl SmsGuard<'_> {
    /// Refuses a code for `phone` unless its country is allowed and both budgets have room,
    /// counting it against both. The country's budget is taken first: a country that is spent
    /// does not use up the global budget for nothing. (A code the global budget then refuses has
    /// used one of its country's: the country's budget errs on the side of fewer SMS.)
    pub async fn admit(&self, phone: &PhoneNumber, now: DateTime<Utc>) -> Result<(), ApiError> {
        use crate::rate_limit::Decision;
        let cc = phone.calling_code();
        if !self.allowed_calling_codes.is_empty() && !self.allowed_calling_codes.contains(&cc) {
            tracing::info!(
                calling_code = cc,
                "code refused: country not on the allow-list"
            );
            return Err(ApiError::new(
                ErrorCode::CountryNotSupported,
                format!("this service does not send verification codes to +{cc} numbers"),
            ));
        }
        for (throttle, key, what) in [
            (
                &self.per_country,
                format!("sms-country#{cc}"),
                format!("+{cc} numbers"),
            ),
            (
                &self.global,
                "sms-global".to_owned(),
                "all numbers".to_owned(),
            ),
        ] {
            if let Decision::Limited { retry_after_secs } =
                throttle.limiter.take(&key, throttle.rule, now).await?
            {
                tracing::warn!(
                    budget = %key,
                    retry_after_secs,
                    "SMS budget exhausted: verification codes refused until the window ends"
                );
                return Err(ApiError {
                    retry_after_secs: Some(retry_after_secs),
                    ..ApiError::new(
                        ErrorCode::SmsBudgetExhausted,
                        format!(
                            "the hourly SMS budget for {what} is spent; no codes are sent for \
                             {retry_after_secs} s"
                        ),
                    )
                });
            }
        }
        Ok(())
    }
}

/// Test phone numbers, for running the end-to-end tests and the load generator against a
/// deployed stack, where nobody can read the SMS: a number starting with `prefix` gets no SMS
/// and its code is always `code` (as Firebase's "phone numbers for testing"). Everything else
/// (limits, expiry, wrong tries) applies as for any number. The operator picks a prefix no real
/// subscriber has; anyone who knows prefix and code can register those numbers.
#[derive(Debug, Clone)]
pub struct TestNumbers {
    /// E.164 prefix, at least `+` and 4 digits.
    pub prefix: String,
    /// The fixed six-digit code.
    pub code: VerificationCode,
}

impl TestNumbers {
    /// From the configuration (`TEST_PHONE_PREFIX`, `TEST_PHONE_CODE`): both empty is `None`;
    /// one without the other, a prefix that is not `+` and 4 to 14 digits, or a code that is not
    /// six digits is an error.
    pub fn from_config(prefix: &str, code: &str) -> Result<Option<Self>, String> {
        match (prefix.is_empty(), code.is_empty()) {
            (true, true) => return Ok(None),
            (false, false) => {}
            _ => return Err("test numbers need both a prefix and a code".into()),
        }
        let digits = prefix.strip_prefix('+').unwrap_or_default();
        if !(4..=14).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "test number prefix {prefix:?} is not + and 4 to 14 digits"
            ));
        }
        let code = VerificationCode::parse(code).ok_or("the test code is not six digits")?;
        Ok(Some(Self {
            prefix: prefix.to_owned(),
            code,
        }))
    }

    /// A random valid test number (for the tests and the load generator): the prefix and
    /// random digits, as few as make a valid number.
    pub fn random_number(&self) -> Option<String> {
        use rand::Rng as _;
        let have = self.prefix.len() - 1;
        for total in (have + 1)..=15 {
            for _ in 0..64 {
                let fill: String = (have..total)
                    .map(|_| char::from(b'0' + rand::rng().random_range(0..10u8)))
                    .collect();
                let candidate = format!("{}{fill}", self.prefix);
                if PhoneNumber::parse(&candidate).is_ok() {
                    return Some(candidate);
                }
            }
        }
        None
    }

    /// Whether `phone` is a test number.
    pub fn covers(&self, phone: &PhoneNumber) -> bool {
        phone.as_str().starts_with(&self.prefix)
    }
}

impl Deps<'_> {
    /// Whether a code for `phone` goes out by SMS (not for test numbers).
    pub fn sends_sms_to(&self, phone: &PhoneNumber) -> bool {
        !self.test_numbers.as_ref().is_some_and(|t| t.covers(phone))
    }
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
    let test = !deps.sends_sms_to(&phone);
    // The SMS guard is asked once, after the per-number rule below (a code that rule refuses
    // uses no budget), and not again when a lost race goes round the loop.
    let mut admitted = test || deps.sms_guard.is_none();
    let code = match &deps.test_numbers {
        Some(t) if test => t.code.clone(),
        _ => VerificationCode::generate(),
    };
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
        if !admitted && let Some(guard) = &deps.sms_guard {
            guard.admit(&phone, now).await?;
            admitted = true;
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
            Ok(()) if test => {
                tracing::info!(phone = %phone.redacted(), "test number: no SMS sent");
                return Ok(RegisterAccountResponse {
                    expires_in_seconds: deps.code_lifetime_secs as u64,
                });
            }
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
