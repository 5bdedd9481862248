//! Rate limits: the rules, the arithmetic every [`RateLimiter`] shares, and the defaults.
//!
//! Two kinds of rule, each where it fits best:
//! - [`Rule::TokenBucket`] for sends (a burst, then a steady rate). It is kept as GCRA (the
//!   "generic cell rate algorithm"): the whole bucket is one number, the theoretical arrival time
//!   (`tat`) of the next request, in milliseconds. A take is allowed while `tat - now` is at most
//!   `(burst - 1) * interval`, and moves `tat` to `max(tat, now) + interval`. That is exactly a
//!   token bucket of `burst` tokens refilled one per `interval`, and one number can be updated by
//!   a single conditional write, so many Lambda instances share a bucket without a lock.
//! - [`Rule::Window`] for "N per hour" limits (codes, link attempts, failed connections): a
//!   counter per fixed window (aligned to the epoch), incremented with a condition `n < max`.
//!   Its meaning is the plainest to state and to support ("5 codes per phone in a clock hour"),
//!   at the price of allowing up to `2 * max` across a window boundary.
//!
//! The state lives behind the [`RateLimiter`] port (DynamoDB in production), never in a process.
//!

use crate::error::{ApiError, PortError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// How a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A token bucket of `burst` tokens, one more every `interval_ms` milliseconds.
    TokenBucket {
        /// Requests allowed at once, from a full bucket.
        burst: u32,
        /// Milliseconds per token refilled.
        interval_ms: u64,
    },
    /// At most `max` requests per fixed window of `window_secs` seconds.
    Window {
        /// Requests per window.
        max: u32,
        /// The window's length in seconds (windows start at multiples of it since the epoch).
        window_secs: u64,
    },
}

/// What a limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit (and, for a take, counted).
    Allowed,
    /// Over the limit: nothing was counted; try again after this many seconds (at least 1).
    Limited {
        /// Whole seconds until a request can succeed.
        retry_after_secs: u64,
    },
}

/// Milliseconds since the epoch, the unit of bucket state.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Whole seconds, rounded up, at least 1: a client that waits this long will not be refused by
/// the same bucket again (unless it is drained by someone else meanwhile).
pub fn retry_secs(wait_ms: i64) -> u64 {
    (wait_ms.max(1) as u64).div_ceil(1000).max(1)
}

/// GCRA for a token bucket: given the stored `tat` (`None`: never used or expired), whether a
/// request at `now_ms` is allowed and, if so, the new `tat`.
pub fn gcra(burst: u32, interval_ms: u64, tat: Option<i64>, now_ms: i64) -> Result<i64, u64> {
    let interval = interval_ms as i64;
    let tolerance = i64::from(burst.max(1) - 1) * interval;
    let start = tat.map_or(now_ms, |t| t.max(now_ms));
    if start - now_ms > tolerance {
        Err(retry_secs(start - tolerance - now_ms))
    } else {
        Ok(start + interval)
    }
}

/// The fixed window `now` falls in: its start and end, in seconds since the epoch.
pub fn window_of(window_secs: u64, now: DateTime<Utc>) -> (i64, i64) {
    let len = window_secs.max(1) as i64;
    let start = now.timestamp().div_euclid(len) * len;
    (start, start + len)
}

/// `Limited` with the seconds left in the window.
pub fn window_retry(window_secs: u64, now: DateTime<Utc>) -> Decision {
    let (_, end) = window_of(window_secs, now);
    Decision::Limited {
        retry_after_secs: retry_secs(end * 1000 - millis(now)),
    }
}

/// The limits of a deployment (template.yaml parameters; [`Limits::default`] otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per device and send operation (`sendMessage`, `sendToDevice`, `postStatus`).
    pub sends: Rule,
    /// Verification codes per phone number.
    pub codes_per_phone: Rule,
    /// Verification codes per source IP.
    pub codes_per_ip: Rule,
    /// Link requests per source IP and link approvals per account.
    pub link_attempts: Rule,
    /// Refused `$connect` attempts per source IP.
    pub failed_connects: Rule,
    /// Per device and operation, for every other action that makes the server write, post or
    /// push (groups, direct chats, contacts, settings, push tokens, uploads, backups, keys).
    pub actions: Rule,
    /// Per target user: times a stranger (someone not in its contacts) may add it to a group.
    pub group_adds_per_target: Rule,
    /// Per target user: direct chats (and their handshakes) strangers may open with it.
    pub handshakes_per_target: Rule,
    /// Per device and operation: `lookupUser`, `getProfile`.
    pub lookups: Rule,
    /// Per account and operation: `lookupUser`, `getProfile` (all of its devices together).
    pub lookups_per_account: Rule,
    /// Per account: `discoverContacts` calls (each of at most `MAX_DISCOVER_PHONES` numbers, a
    /// constant of that use case).
    pub discoveries: Rule,
    /// Per claiming device: `claimKeys`.
    pub key_claims: Rule,
    /// Per target user: claims that may take a one-time key; beyond it a claim gets the
    /// fallback key, so a drain cannot empty the pool and no one is refused the target's keys.
    pub one_time_keys_per_target: Rule,
    /// Per account: bytes of media uploads (`createMediaUpload`'s declared sizes) per day.
    pub media_upload_bytes: Quota,
    /// Per account: bytes of backups (`createBackup`'s declared sizes) per day.
    pub backup_bytes: Quota,
    /// Per account: wrong registration PINs given to `checkRegistrationPin`, or as `currentPin`
    /// by a companion changing or removing the PIN. Separate from the registration lockout
    /// (`POST /v1/accounts/verify`), so a stolen companion guessing cannot lock the owner's
    /// re-registration; a window, so that a try can be given back when the PIN was right.
    pub pin_checks: Rule,
}

/// A budget of units (bytes) per fixed window, taken in amounts: each request counts its size,
/// so a few large requests use it up as surely as many small ones. Kept like a
/// [`Rule::Window`]: a counter per window, added to on the condition that it stays within `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Units per window.
    pub max: u64,
    /// The window's length in seconds (windows start at multiples of it since the epoch).
    pub window_secs: u64,
}

/// A day, the window of the per-target and per-account caps.
pub const DAY_SECS: u64 = 86_400;

impl Default for Limits {
    fn default() -> Self {
        Self {
            sends: Rule::TokenBucket {
                burst: 60,
                interval_ms: 1000,
            },
            codes_per_phone: Rule::Window {
                max: 5,
                window_secs: 3600,
            },
            codes_per_ip: Rule::Window {
                max: 20,
                window_secs: 3600,
            },
            link_attempts: Rule::Window {
                max: 10,
                window_secs: 600,
            },
            failed_connects: Rule::Window {
                max: 20,
                window_secs: 60,
            },
            actions: Rule::TokenBucket {
                burst: 30,
                interval_ms: 2000,
            },
            group_adds_per_target: Rule::Window {
                max: 50,
                window_secs: DAY_SECS,
            },
            handshakes_per_target: Rule::Window {
                max: 50,
                window_secs: DAY_SECS,
            },
            lookups: Rule::TokenBucket {
                burst: 30,
                interval_ms: 2000,
            },
            lookups_per_account: Rule::Window {
                max: 1000,
                window_secs: DAY_SECS,
            },
            discoveries: Rule::Window {
                max: 10,
                window_secs: DAY_SECS,
            },
            key_claims: Rule::TokenBucket {
                burst: 300,
                interval_ms: 1000,
            },
            one_time_keys_per_target: Rule::Window {
                max: 100,
                window_secs: 3600,
            },
            // 1 GiB: 64 files of the 16 MiB maximum, or thousands of photos, a day.
            media_upload_bytes: Quota {
                max: 1024 * 1024 * 1024,
                window_secs: DAY_SECS,
            },
            // 2 GiB: four backups of the 512 MiB maximum a day (one and a few retries).
            backup_bytes: Quota {
                max: 2 * 1024 * 1024 * 1024,
                window_secs: DAY_SECS,
            },
            // Five wrong PINs a day: plenty for an owner who mistypes, about 1,800 guesses a
            // year out of a million for a thief holding a companion.
            pin_checks: Rule::Window {
                max: 5,
                window_secs: DAY_SECS,
            },
        }
    }
}

/// One limit applied by a use case: the shared limiter and the rule for this kind of request.
#[derive(Clone, Copy)]
pub struct Throttle<'a> {
    /// Where the counts live.
    pub limiter: &'a dyn RateLimiter,
    /// How they count.
    pub rule: Rule,
}

impl Throttle<'_> {
    /// Takes one request for `key`; over the limit, `LIMIT_EXCEEDED` saying what was limited.
    pub async fn take(&self, key: &str, what: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
        match self.limiter.take(key, self.rule, now).await? {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after_secs } => {
                tracing::info!(limit = what, retry_after_secs, "rate limited");
                Err(ApiError::limit_exceeded(
                    format!("too many {what}; retry in {retry_after_secs} s"),
                    retry_after_secs,
                ))
            }
        }
    }

    /// Whether `key` is over the limit now, without counting a request.
    pub async fn check(&self, key: &str, now: DateTime<Utc>) -> Result<Decision, PortError> {
        self.limiter.check(key, self.rule, now).await
    }

    /// Gives back a request taken for `key` at the same `now` (one that turned out not to
    /// count, like a right PIN under a budget of wrong ones). Taking first and giving back
    /// after is what keeps concurrent requests from all passing a check before any is counted.
    /// Only windows can give back; for a token bucket this does nothing.
    pub async fn give_back(&self, key: &str, now: DateTime<Utc>) -> Result<(), PortError> {
        match self.rule {
            Rule::Window { window_secs, .. } => self.limiter.give_back(key, window_secs, now).await,
            Rule::TokenBucket { .. } => Ok(()),
        }
    }
}

/// One quota applied by a use case: the shared limiter and the budget.
#[derive(Clone, Copy)]
pub struct QuotaThrottle<'a> {
    /// Where the counts live.
    pub limiter: &'a dyn RateLimiter,
    /// The budget.
    pub quota: Quota,
}

impl QuotaThrottle<'_> {
    /// Counts `amount` for `key`; past the budget, `LIMIT_EXCEEDED` saying what was limited and
    /// when the window ends, and nothing counted.
    pub async fn take(
        &self,
        key: &str,
        amount: u64,
        what: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        match self
            .limiter
            .take_amount(key, amount, self.quota, now)
            .await?
        {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after_secs } => {
                tracing::info!(limit = what, amount, retry_after_secs, "quota reached");
                Err(ApiError::limit_exceeded(
                    format!(
                        "{what}: at most {} bytes a day (UTC) per user, and this would pass it; retry in {retry_after_secs} s",
                        self.quota.max
                    ),
                    retry_after_secs,
                ))
            }
        }
    }
}

/// The bucket of one device for one operation: each device has its own, so one device over its
/// limit slows no one else (not even the same user's other devices).
pub fn device_key(operation: &str, who: &crate::ports::DeviceCredential) -> String {
    format!("{operation}#{}#{}", who.user_id, who.device_id)
}

/// Takes one `operation` from the calling device's bucket (`None`: unlimited).
pub async fn take_per_device(
    throttle: Option<&Throttle<'_>>,
    operation: &str,
    who: &crate::ports::DeviceCredential,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    take(throttle, &device_key(operation, who), operation, now).await
}

/// Takes one `operation` from the calling device's bucket (`device`), then from its account's
/// (`account`, all of the account's devices together): lookups that scrape the directory are
/// limited both ways, so neither many devices nor many calls from one get far.
pub async fn take_per_device_and_account(
    device: Option<&Throttle<'_>>,
    account: Option<&Throttle<'_>>,
    operation: &str,
    who: &crate::ports::DeviceCredential,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    take_per_device(device, operation, who, now).await?;
    take(
        account,
        &format!("{operation}#account#{}", who.user_id),
        operation,
        now,
    )
    .await
}

/// A cap per target user on what strangers (users it has not listed as contacts) do to it:
/// adding it to groups, opening direct chats with it. What its contacts do is not counted, so a
/// stranger who uses up the cap cannot keep the target's friends from reaching it.
#[derive(Clone, Copy)]
pub struct StrangerCap<'a> {
    /// Whose contacts are whose.
    pub settings: &'a dyn crate::ports::SettingsStore,
    /// The limit per target (a window).
    pub throttle: Throttle<'a>,
    /// Names the counter (`<key>#<target>`) and, in the refusal, what was limited.
    pub key: &'static str,
}

impl StrangerCap<'_> {
    /// Counts one action of `actor` against each of `targets` that does not list it as a
    /// contact. Every one is checked before any is counted, so a refused call counts nothing
    /// (but for a race with another call on the same target); `LIMIT_EXCEEDED` names the target.
    pub async fn take(
        &self,
        actor: &crate::ids::UserId,
        targets: &[crate::ids::UserId],
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        use futures_util::{StreamExt, TryStreamExt, stream};
        let strangers: Vec<&crate::ids::UserId> = stream::iter(targets)
            .map(|t| async move {
                let known = t == actor || self.settings.is_contact(t, actor).await?;
                Ok::<_, ApiError>((!known).then_some(t))
            })
            .buffered(16)
            .try_filter_map(|t| async move { Ok(t) })
            .try_collect()
            .await?;
        let key = |t: &crate::ids::UserId| format!("{}#{t}", self.key);
        let refuse = |t: &crate::ids::UserId, retry_after_secs: u64| {
            tracing::info!(limit = self.key, retry_after_secs, "stranger cap reached");
            ApiError::limit_exceeded(
                format!(
                    "{t} has had too many {} from people outside its contacts; retry in {retry_after_secs} s",
                    self.key
                ),
                retry_after_secs,
            )
        };
        let checked: Vec<(&crate::ids::UserId, Decision)> = stream::iter(strangers.iter().copied())
            .map(
                |t| async move { Ok::<_, ApiError>((t, self.throttle.check(&key(t), now).await?)) },
            )
            .buffered(16)
            .try_collect()
            .await?;
        if let Some((t, Decision::Limited { retry_after_secs })) = checked
            .iter()
            .find(|(_, d)| matches!(d, Decision::Limited { .. }))
        {
            return Err(refuse(t, *retry_after_secs));
        }
        let taken: Vec<(&crate::ids::UserId, Decision)> = stream::iter(strangers)
            .map(|t| async move {
                let d = self
                    .throttle
                    .limiter
                    .take(&key(t), self.throttle.rule, now)
                    .await?;
                Ok::<_, ApiError>((t, d))
            })
            .buffered(16)
            .try_collect()
            .await?;
        match taken
            .iter()
            .find(|(_, d)| matches!(d, Decision::Limited { .. }))
        {
            Some((t, Decision::Limited { retry_after_secs })) => Err(refuse(t, *retry_after_secs)),
            _ => Ok(()),
        }
    }
}

/// Takes from an optional throttle (`None`: unlimited, as in tests that are not about limits).
pub async fn take(
    throttle: Option<&Throttle<'_>>,
    key: &str,
    what: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    match throttle {
        Some(t) => t.take(key, what, now).await,
        None => Ok(()),
    }
}

/// Shared rate-limit state, the port (the rules and arithmetic are above): many function
/// instances take from the same buckets, so the state lives in a store, never in a process.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request for `key` under `rule` at `now`, unless that would exceed the limit;
    /// two concurrent takes never both get the last unit.
    async fn take(&self, key: &str, rule: Rule, now: DateTime<Utc>) -> Result<Decision, PortError>;
    /// What a take would answer now, without counting anything.
    async fn check(&self, key: &str, rule: Rule, now: DateTime<Utc>)
    -> Result<Decision, PortError>;
    /// Adds `amount` to `key`'s count in the window of `quota` that holds `now`, unless the
    /// count would pass `quota.max` (then nothing is added); concurrent takes never together
    /// pass it. An amount above `max` is always refused.
    async fn take_amount(
        &self,
        key: &str,
        amount: u64,
        quota: Quota,
        now: DateTime<Utc>,
    ) -> Result<Decision, PortError>;
    /// Takes one back from `key`'s count in the window of `window_secs` that holds `now` (a
    /// [`Rule::Window`] take that turned out not to count);
    /// never below zero.
    async fn give_back(
        &self,
        key: &str,
        window_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let (burst, iv) = (3, 1000);
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(burst, iv, tat, 0).unwrap());
        }
        assert_eq!(gcra(burst, iv, tat, 0), Err(1));
        assert_eq!(gcra(burst, iv, tat, 999), Err(1));
        let t = gcra(burst, iv, tat, 1000).unwrap();
        assert_eq!(gcra(burst, iv, Some(t), 1000), Err(1));
        // Long idle: the bucket is full again, not fuller.
        let mut tat = Some(t);
        for _ in 0..3 {
            tat = Some(gcra(burst, iv, tat, 60_000).unwrap());
        }
        assert!(gcra(burst, iv, tat, 60_000).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(1), 1);
        assert_eq!(retry_secs(1000), 1);
        assert_eq!(retry_secs(1001), 2);
        assert_eq!(retry_secs(-5), 1);
    }

    #[test]
    fn windows_align_to_the_epoch() {
        let t = DateTime::from_timestamp(3_725, 0).unwrap();
        assert_eq!(window_of(3600, t), (3600, 7200));
        assert_eq!(
            window_retry(3600, t),
            Decision::Limited {
                retry_after_secs: 3475
            }
        );
    }
}
