//! `RateLimitTable`: one item per bucket (`pk`), shared by every instance of every function.
//!
//! - Token buckets (GCRA, see `courier_core::rate_limit`): the item holds `tat`, the theoretical
//!   arrival time in epoch milliseconds. A take is one conditional `UpdateItem` and never a
//!   read-modify-write race: if the bucket is idle (`tat <= now`, or no item) it is
//!   `SET tat = now + interval` on that condition; otherwise `SET tat = tat + interval` on the
//!   condition `now < tat <= now + tolerance`. The second is an atomic increment, so concurrent
//!   takers serialise in DynamoDB and each sees the count the previous one left. When both
//!   conditions fail, a consistent read tells "over the limit" (and for how long) from "the
//!   bucket changed state between the two writes" (then it tries again).
//! - Fixed windows: the item `pk = <key>#<window start>` holds a counter `n`, taken with
//!   `ADD n 1` on the condition `n < max`.
//! - Quotas (bytes per day): the same window item, taken with `ADD n <amount>` on the condition
//!   `n <= max - amount`.
//! - Giving back a window's take (a right PIN under a budget of wrong ones): `ADD n -1` on the
//!   condition `n > 0`.
//!
//! Every item carries `ttl` (epoch seconds) just after it stops mattering, so DynamoDB TTL
//! removes idle buckets; reads ignore what TTL has not removed yet (an expired `tat` is in the
//! past, which counts as a full bucket; an old window is never read again).

use super::Conditional;
use super::backend;
use crate::capacity::SendRecorded;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::RateLimiter;
use courier_core::rate_limit::{
    Decision, Quota, Rule, gcra, millis, retry_secs, window_of, window_retry,
};

/// Rounds of "both conditions failed, the bucket changed in between" before giving up; each
/// round is a state change by another taker, so a few are plenty.
const ATTEMPTS: u32 = 8;

/// Rate-limit buckets in DynamoDB.
#[derive(Clone)]
pub struct DynamoRateLimiter {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoRateLimiter {
    /// A limiter over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn n(v: i64) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    /// The stored number `attr` of item `pk` (strongly consistent), if any.
    async fn read(&self, pk: &str, attr: &str) -> Result<Option<i64>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(out
            .item
            .and_then(|item| item.get(attr).cloned())
            .and_then(|v| v.as_n().ok().and_then(|n| n.parse().ok())))
    }

    /// One conditional update; `Ok(false)` when its condition failed.
    async fn conditional(
        &self,
        pk: &str,
        update: &str,
        condition: &str,
        values: &[(&str, i64)],
    ) -> Result<bool, PortError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#ttl", "ttl");
        for (name, v) in values {
            req = req.expression_attribute_values(*name, Self::n(*v));
        }
        match req.send_recorded().await.unless_condition_failed()? {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    async fn take_token(
        &self,
        key: &str,
        burst: u32,
        interval_ms: u64,
        now: DateTime<Utc>,
    ) -> Result<Decision, PortError> {
        let now_ms = millis(now);
        let interval = interval_ms as i64;
        let tolerance = i64::from(burst.max(1) - 1) * interval;
        // The item may go once the bucket is full again: tat in the past, plus a margin.
        let ttl_after = |tat_ms: i64| tat_ms.div_euclid(1000) + 60;
        for _ in 0..ATTEMPTS {
            // Idle bucket (or none): it is full, take one.
            if self
                .conditional(
                    key,
                    "SET tat = :next, #ttl = :ttl",
                    "attribute_not_exists(tat) OR tat <= :now",
                    &[
                        (":next", now_ms + interval),
                        (":now", now_ms),
                        (":ttl", ttl_after(now_ms + interval)),
                    ],
                )
                .await?
            {
                return Ok(Decision::Allowed);
            }
            // Busy bucket with a token left: one atomic step forward.
            if self
                .conditional(
                    key,
                    "SET tat = tat + :interval, #ttl = :ttl",
                    "tat > :now AND tat <= :limit",
                    &[
                        (":interval", interval),
                        (":now", now_ms),
                        (":limit", now_ms + tolerance),
                        // An upper bound: tat is at most now + tolerance + interval after this.
                        (":ttl", ttl_after(now_ms + tolerance + interval)),
                    ],
                )
                .await?
            {
                return Ok(Decision::Allowed);
            }
            match self.read(key, "tat").await? {
                Some(tat) if tat > now_ms + tolerance => {
                    return Ok(Decision::Limited {
                        retry_after_secs: retry_secs(tat - tolerance - now_ms),
                    });
                }
                // The bucket changed between the two writes (drained or refilled): again.
                _ => continue,
            }
        }
        Err(PortError::Conflict)
    }

    fn window_key(key: &str, window_secs: u64, now: DateTime<Utc>) -> (String, i64) {
        let (start, end) = window_of(window_secs, now);
        (format!("{key}#{start}"), end)
    }
}

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn take(&self, key: &str, rule: Rule, now: DateTime<Utc>) -> Result<Decision, PortError> {
        match rule {
            Rule::TokenBucket { burst, interval_ms } => {
                self.take_token(key, burst, interval_ms, now).await
            }
            Rule::Window { max, window_secs } => {
                let (pk, end) = Self::window_key(key, window_secs, now);
                let counted = self
                    .conditional(
                        &pk,
                        "ADD n :one SET #ttl = :ttl",
                        "attribute_not_exists(n) OR n < :max",
                        &[(":one", 1), (":max", i64::from(max)), (":ttl", end + 60)],
                    )
                    .await?;
                Ok(if counted {
                    Decision::Allowed
                } else {
                    window_retry(window_secs, now)
                })
            }
        }
    }

    async fn check(
        &self,
        key: &str,
        rule: Rule,
        now: DateTime<Utc>,
    ) -> Result<Decision, PortError> {
        match rule {
            Rule::TokenBucket { burst, interval_ms } => {
                let tat = self.read(key, "tat").await?;
                Ok(match gcra(burst, interval_ms, tat, millis(now)) {
                    Ok(_) => Decision::Allowed,
                    Err(retry_after_secs) => Decision::Limited { retry_after_secs },
                })
            }
            Rule::Window { max, window_secs } => {
                let (pk, _) = Self::window_key(key, window_secs, now);
                let n = self.read(&pk, "n").await?.unwrap_or(0);
                Ok(if n >= i64::from(max) {
                    window_retry(window_secs, now)
                } else {
                    Decision::Allowed
                })
            }
        }
    }
    async fn take_amount(
        &self,
        key: &str,
        amount: u64,
        quota: Quota,
        now: DateTime<Utc>,
    ) -> Result<Decision, PortError> {
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        let max = i64::try_from(quota.max).unwrap_or(i64::MAX);
        if amount > max {
            return Ok(window_retry(quota.window_secs, now));
        }
        let (pk, end) = Self::window_key(key, quota.window_secs, now);
        let counted = self
            .conditional(
                &pk,
                "ADD n :amount SET #ttl = :ttl",
                "attribute_not_exists(n) OR n <= :room",
                &[
                    (":amount", amount),
                    (":room", max - amount),
                    (":ttl", end + 60),
                ],
            )
            .await?;
        Ok(if counted {
            Decision::Allowed
        } else {
            window_retry(quota.window_secs, now)
        })
    }

    async fn give_back(
        &self,
        key: &str,
        window_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let (pk, _) = Self::window_key(key, window_secs, now);
        // The condition keeps the count from going below zero (nothing to give back: a window
        // that TTL removed, or a give-back without its take); that is not an error.
        let given = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .update_expression("ADD n :minus")
            .condition_expression("n > :zero")
            .expression_attribute_values(":minus", Self::n(-1))
            .expression_attribute_values(":zero", Self::n(0))
            .send_recorded()
            .await;
        given.unless_condition_failed()?;
        Ok(())
    }
}
