//! Shared rate-limit state.

use crate::error::PortError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Shared rate-limit state (see [`crate::rate_limit`]): many function instances take from the
/// same buckets, so the state lives in a store, never in a process.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request for `key` under `rule` at `now`, unless that would exceed the limit;
    /// two concurrent takes never both get the last unit.
    async fn take(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError>;
    /// What a take would answer now, without counting anything.
    async fn check(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError>;
    /// Adds `amount` to `key`'s count in the window of `quota` that holds `now`, unless the
    /// count would pass `quota.max` (then nothing is added); concurrent takes never together
    /// pass it. An amount above `max` is always refused.
    async fn take_amount(
        &self,
        key: &str,
        amount: u64,
        quota: crate::rate_limit::Quota,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError>;
    /// Takes one back from `key`'s count in the window of `window_secs` that holds `now` (a
    /// [`Rule::Window`](crate::rate_limit::Rule::Window) take that turned out not to count);
    /// never below zero.
    async fn give_back(
        &self,
        key: &str,
        window_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
}
