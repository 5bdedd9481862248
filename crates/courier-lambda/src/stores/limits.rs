//! The rate limits' stores: the shared limiter table (`RATE_LIMIT_TABLE`) under the rules the
//! settings configure, per device, per account, per target of strangers, and the SMS budgets.

use super::{Stores, leak, table};
use courier_aws::config;
use courier_aws::dynamo::DynamoRateLimiter;
use courier_core::clock::{Clock, SystemClock};
use courier_core::ports::DeviceCredential;
use courier_core::rate_limit::{Limits, Quota, QuotaThrottle, Rule, StrangerCap, Throttle};
use courier_core::{ApiError, rate_limit};
use lambda_runtime::Error;

impl Stores {
    fn limiter(&self) -> Result<&'static DynamoRateLimiter, Error> {
        Ok(leak(DynamoRateLimiter::new(
            self.dynamo.clone(),
            table("RATE_LIMIT_TABLE")?,
        )))
    }

    /// The shared rate-limit store (`RATE_LIMIT_TABLE`) under the configured rule `pick`s.
    pub fn throttle(&self, pick: fn(&Limits) -> Rule) -> Result<Throttle<'static>, Error> {
        Ok(Throttle {
            limiter: self.limiter()?,
            rule: pick(&config::limits()?),
        })
    }

    /// The shared rate-limit store under the configured quota `pick`s.
    pub fn quota(&self, pick: fn(&Limits) -> Quota) -> Result<QuotaThrottle<'static>, Error> {
        Ok(QuotaThrottle {
            limiter: self.limiter()?,
            quota: pick(&config::limits()?),
        })
    }

    /// The running operation's limit per calling device, under the rule `pick`s.
    pub fn per_device(&self, pick: fn(&Limits) -> Rule) -> Result<&'static PerDevice, Error> {
        Ok(leak(PerDevice {
            throttle: leak(self.throttle(pick)?),
            operation: crate::telemetry::operation(),
        }))
    }

    /// The running operation's limits on directory reads (`lookupUser`, `getProfile`): per
    /// device and per account.
    pub fn lookups(&self) -> Result<&'static Lookups, Error> {
        Ok(leak(Lookups {
            device: leak(self.throttle(|l| l.lookups)?),
            account: leak(self.throttle(|l| l.lookups_per_account)?),
            operation: crate::telemetry::operation(),
        }))
    }

    /// A cap per target on what strangers do to it (`key` names its counters).
    pub fn stranger_cap(
        &self,
        pick: fn(&Limits) -> Rule,
        key: &'static str,
    ) -> Result<StrangerCap<'static>, Error> {
        Ok(StrangerCap {
            settings: self.settings()?,
            throttle: self.throttle(pick)?,
            key,
        })
    }

    /// The country allow-list and the hourly SMS budgets of `registerAccount`.
    pub fn sms_guard(
        &self,
    ) -> Result<courier_core::usecases::register_account::SmsGuard<'static>, Error> {
        let (allowed_calling_codes, per_country, global) = config::sms_guard()?;
        let limiter = self.limiter()?;
        Ok(courier_core::usecases::register_account::SmsGuard {
            allowed_calling_codes,
            per_country: Throttle {
                limiter,
                rule: per_country,
            },
            global: Throttle {
                limiter,
                rule: global,
            },
        })
    }
}

/// One operation's limit per calling device.
pub struct PerDevice {
    throttle: &'static Throttle<'static>,
    operation: &'static str,
}

impl PerDevice {
    /// Takes one request from `who`'s bucket (`LIMIT_EXCEEDED` with `retryAfter` past it).
    pub async fn take(&self, who: &DeviceCredential) -> Result<(), ApiError> {
        rate_limit::take_per_device(Some(self.throttle), self.operation, who, SystemClock.now())
            .await
    }
}

/// An operation's limits on directory reads: per device and per account.
pub struct Lookups {
    device: &'static Throttle<'static>,
    account: &'static Throttle<'static>,
    operation: &'static str,
}

impl Lookups {
    /// Takes one lookup from `who`'s device and account buckets.
    pub async fn take(&self, who: &DeviceCredential) -> Result<(), ApiError> {
        rate_limit::take_per_device_and_account(
            Some(self.device),
            Some(self.account),
            self.operation,
            who,
            SystemClock.now(),
        )
        .await
    }
}
