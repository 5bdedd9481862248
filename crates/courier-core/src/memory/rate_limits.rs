//! Rate-limit state.

use crate::error::PortError;
use crate::ports::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// Rate-limit state in a map, with the arithmetic of the DynamoDB adapter.
#[derive(Default)]
pub struct MemoryRateLimiter(Mutex<HashMap<String, i64>>);

impl MemoryRateLimiter {
    fn decide(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
        count: bool,
    ) -> crate::rate_limit::Decision {
        use crate::rate_limit::{Decision, Rule, gcra, millis, window_of, window_retry};
        let mut map = self.0.lock().unwrap();
        match rule {
            Rule::TokenBucket { burst, interval_ms } => {
                let slot = format!("{key}#tat");
                match gcra(burst, interval_ms, map.get(&slot).copied(), millis(now)) {
                    Ok(tat) => {
                        if count {
                            map.insert(slot, tat);
                        }
                        Decision::Allowed
                    }
                    Err(retry_after_secs) => Decision::Limited { retry_after_secs },
                }
            }
            Rule::Window { max, window_secs } => {
                let (start, _) = window_of(window_secs, now);
                let n = map.entry(format!("{key}#{start}")).or_insert(0);
                if *n >= i64::from(max) {
                    return window_retry(window_secs, now);
                }
                if count {
                    *n += 1;
                }
                Decision::Allowed
            }
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn take(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError> {
        Ok(self.decide(key, rule, now, true))
    }

    async fn check(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError> {
        Ok(self.decide(key, rule, now, false))
    }

    async fn take_amount(
        &self,
        key: &str,
        amount: u64,
        quota: crate::rate_limit::Quota,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError> {
        use crate::rate_limit::{Decision, window_of, window_retry};
        let (start, _) = window_of(quota.window_secs, now);
        let mut map = self.0.lock().unwrap();
        let n = map.entry(format!("{key}#{start}")).or_insert(0);
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        let max = i64::try_from(quota.max).unwrap_or(i64::MAX);
        if amount > max || *n > max - amount {
            return Ok(window_retry(quota.window_secs, now));
        }
        *n += amount;
        Ok(Decision::Allowed)
    }

    async fn give_back(
        &self,
        key: &str,
        window_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let (start, _) = crate::rate_limit::window_of(window_secs, now);
        let mut map = self.0.lock().unwrap();
        if let Some(n) = map.get_mut(&format!("{key}#{start}")) {
            *n = (*n - 1).max(0);
        }
        Ok(())
    }
}
