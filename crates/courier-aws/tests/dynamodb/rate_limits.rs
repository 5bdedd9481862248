//! `DynamoRateLimiter` over a `RateLimitTable`: concurrent takers never over-grant (token buckets
//! and windows), buckets refill with time, `check` counts nothing, keys are independent, every
//! item carries a TTL, and a window's take can be given back (never below zero).

use crate::support;
use chrono::{DateTime, Duration, TimeZone, Utc};
use courier_aws::dynamo::DynamoRateLimiter;
use courier_core::ports::RateLimiter;
use courier_core::rate_limit::{Decision, Rule};
use std::sync::Arc;
use tokio::sync::Barrier;

async fn limiter() -> (aws_sdk_dynamodb::Client, String, Arc<DynamoRateLimiter>) {
    let client = support::client();
    let table = support::create_table(&client, "RateLimitTable").await;
    let limiter = Arc::new(DynamoRateLimiter::new(client.clone(), table.clone()));
    (client, table, limiter)
}

/// `takers` takes of `key` that start together, as many Lambda instances would, all at one
/// instant (so that the retry hints are exact).
async fn race(
    limiter: &Arc<DynamoRateLimiter>,
    takers: usize,
    key: &str,
    rule: Rule,
) -> Vec<Decision> {
    let barrier = Arc::new(Barrier::new(takers));
    let now = Utc::now();
    let handles: Vec<_> = (0..takers)
        .map(|_| {
            let (barrier, limiter, key) = (barrier.clone(), limiter.clone(), key.to_owned());
            tokio::spawn(async move {
                barrier.wait().await;
                limiter.take(&key, rule, now).await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn allowed(decisions: &[Decision]) -> usize {
    decisions
        .iter()
        .filter(|d| **d == Decision::Allowed)
        .count()
}

#[tokio::test]
async fn twenty_concurrent_takes_from_a_bucket_of_ten_grant_exactly_ten() {
    let (_, _, limiter) = limiter().await;
    // One token an hour: nothing refills during the test.
    let rule = Rule::TokenBucket {
        burst: 10,
        interval_ms: 3_600_000,
    };
    let decisions = race(&limiter, 20, "send#u1#d1", rule).await;
    assert_eq!(allowed(&decisions), 10, "{decisions:?}");
    for d in decisions.iter().filter(|d| **d != Decision::Allowed) {
        let Decision::Limited { retry_after_secs } = d else {
            unreachable!()
        };
        assert_eq!(*retry_after_secs, 3600, "the next token is an hour away");
    }
    // And the next one too.
    assert!(matches!(
        limiter.take("send#u1#d1", rule, Utc::now()).await.unwrap(),
        Decision::Limited { .. }
    ));
}

#[tokio::test]
async fn twenty_concurrent_takes_from_a_window_of_ten_grant_exactly_ten() {
    let (_, _, limiter) = limiter().await;
    let rule = Rule::Window {
        max: 10,
        window_secs: 86_400,
    };
    let decisions = race(&limiter, 20, "codes-ip#198.51.100.1", rule).await;
    assert_eq!(allowed(&decisions), 10, "{decisions:?}");
}

/// `ms` after 09:00 UTC tomorrow: a fixed time of day (the retry hints are exact), and in the
/// future, since DynamoDB Local runs TTL deletion and would remove an item whose `ttl` is past
/// in the middle of a test (a bucket would then look full again).
fn at(ms: i64) -> DateTime<Utc> {
    let tomorrow = (Utc::now() + Duration::days(1)).date_naive();
    Utc.from_utc_datetime(&tomorrow.and_hms_opt(9, 0, 0).unwrap()) + Duration::milliseconds(ms)
}

#[tokio::test]
async fn a_bucket_refills_one_token_per_interval_up_to_its_burst() {
    let (client, table, limiter) = limiter().await;
    let rule = Rule::TokenBucket {
        burst: 2,
        interval_ms: 1000,
    };
    let take = |ms| {
        let limiter = limiter.clone();
        async move { limiter.take("k", rule, at(ms)).await.unwrap() }
    };
    assert_eq!(take(0).await, Decision::Allowed);
    assert_eq!(take(0).await, Decision::Allowed);
    assert_eq!(
        take(10).await,
        Decision::Limited {
            retry_after_secs: 1
        }
    );
    // check says the same and takes nothing.
    assert_eq!(
        limiter.check("k", rule, at(999)).await.unwrap(),
        Decision::Limited {
            retry_after_secs: 1
        }
    );
    assert_eq!(
        limiter.check("k", rule, at(1000)).await.unwrap(),
        Decision::Allowed
    );
    assert_eq!(take(1000).await, Decision::Allowed);
    assert!(matches!(take(1000).await, Decision::Limited { .. }));
    // Idle for a minute: a full bucket of 2, not 60.
    assert_eq!(take(61_000).await, Decision::Allowed);
    assert_eq!(take(61_000).await, Decision::Allowed);
    assert!(matches!(take(61_000).await, Decision::Limited { .. }));
    // Another key is untouched.
    assert_eq!(
        limiter.take("other", rule, at(61_000)).await.unwrap(),
        Decision::Allowed
    );
    // Every item can expire: ttl (epoch seconds) just after the bucket is full again.
    for item in support::scan(&client, &table).await {
        let ttl: i64 = item["ttl"].as_n().unwrap().parse().unwrap();
        assert!(
            ttl > at(61_000).timestamp() && ttl < at(61_000).timestamp() + 3600,
            "{item:?}"
        );
    }
}

#[tokio::test]
async fn a_window_counts_to_its_maximum_and_starts_again_in_the_next_window() {
    let (client, table, limiter) = limiter().await;
    let rule = Rule::Window {
        max: 2,
        window_secs: 60,
    };
    // 9:00:50, in the window [9:00, 9:01).
    let t = at(50_000);
    assert_eq!(limiter.take("w", rule, t).await.unwrap(), Decision::Allowed);
    assert_eq!(
        limiter.check("w", rule, t).await.unwrap(),
        Decision::Allowed
    );
    assert_eq!(limiter.take("w", rule, t).await.unwrap(), Decision::Allowed);
    let limited = Decision::Limited {
        retry_after_secs: 10,
    };
    assert_eq!(limiter.take("w", rule, t).await.unwrap(), limited);
    assert_eq!(limiter.check("w", rule, t).await.unwrap(), limited);
    assert_eq!(
        limiter.take("w", rule, at(60_000)).await.unwrap(),
        Decision::Allowed
    );
    let items = support::scan(&client, &table).await;
    assert_eq!(items.len(), 2, "one item per window");
    for item in items {
        let n: i64 = item["n"].as_n().unwrap().parse().unwrap();
        assert!(n <= 2, "a refused take is not counted: {item:?}");
        assert!(item.contains_key("ttl"));
    }
}

#[tokio::test]
async fn a_byte_quota_grants_amounts_up_to_its_total_under_concurrency_and_refuses_the_rest() {
    use courier_core::rate_limit::Quota;
    let (client, table, limiter) = limiter().await;
    let mib = 1024 * 1024;
    let quota = Quota {
        max: 10 * mib,
        window_secs: 86_400,
    };
    // Now, not a fixed date: DynamoDB Local runs TTL deletion, and a counter whose `ttl` is in
    // the past may vanish in the middle of the test.
    let now = Utc::now();
    // Twenty concurrent 1 MiB takes from a 10 MiB quota: exactly ten.
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (barrier, limiter) = (barrier.clone(), limiter.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                limiter
                    .take_amount("mediaUploadBytes#account#u1", mib, quota, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut decisions = Vec::new();
    for h in handles {
        decisions.push(h.await.unwrap());
    }
    assert_eq!(allowed(&decisions), 10, "{decisions:?}");
    // Refused until the UTC day ends.
    let refused = courier_core::rate_limit::window_retry(86_400, now);
    let Decision::Limited { retry_after_secs } = refused else {
        unreachable!()
    };
    assert!((1..=86_400).contains(&retry_after_secs));
    assert_eq!(
        limiter
            .take_amount("mediaUploadBytes#account#u1", 1, quota, now)
            .await
            .unwrap(),
        refused
    );
    // Another key has its own; an amount larger than the quota is never granted.
    let other = "mediaUploadBytes#account#u2";
    assert_eq!(
        limiter
            .take_amount(other, 11 * mib, quota, now)
            .await
            .unwrap(),
        refused
    );
    assert_eq!(
        limiter
            .take_amount(other, 10 * mib, quota, now)
            .await
            .unwrap(),
        Decision::Allowed
    );
    // The counter holds the bytes and goes with its window (TTL).
    let items = support::scan(&client, &table).await;
    let u1 = items
        .iter()
        .find(|i| support::s(i, "pk").starts_with("mediaUploadBytes#account#u1#"))
        .expect("the counter");
    assert_eq!(support::n(u1, "n"), (10 * mib) as i64);
    assert!(support::n(u1, "ttl") >= now.timestamp() + retry_after_secs as i64);
}

/// The wrong-PIN budget's pattern (registration_pin.rs): every try is taken first, so that
/// concurrent guesses cannot pass a check together, and a right one is given back. Racing tries
/// judge at most `max` of them; giving back makes room for exactly as many more; giving back
/// more than was taken (or in a window never used) leaves nothing negative.
#[tokio::test]
async fn a_window_take_given_back_makes_room_again_and_never_goes_below_zero() {
    let (client, table, limiter) = limiter().await;
    let rule = Rule::Window {
        max: 5,
        window_secs: 86_400,
    };
    let decisions = race(&limiter, 12, "registrationPinChecks#u1", rule).await;
    assert_eq!(allowed(&decisions), 5, "{decisions:?}");
    let now = Utc::now();
    for _ in 0..2 {
        limiter
            .give_back("registrationPinChecks#u1", 86_400, now)
            .await
            .unwrap();
    }
    let decisions = race(&limiter, 6, "registrationPinChecks#u1", rule).await;
    assert_eq!(
        allowed(&decisions),
        2,
        "two given back, two more: {decisions:?}"
    );
    // Back to zero, and further give-backs (or one for a key never taken) change nothing.
    for _ in 0..8 {
        limiter
            .give_back("registrationPinChecks#u1", 86_400, now)
            .await
            .unwrap();
    }
    limiter
        .give_back("registrationPinChecks#nobody", 86_400, now)
        .await
        .unwrap();
    let items = support::scan(&client, &table).await;
    assert_eq!(items.len(), 1, "no item made by a give-back: {items:?}");
    assert_eq!(items[0]["n"].as_n().unwrap(), "0");
    let decisions = race(&limiter, 7, "registrationPinChecks#u1", rule).await;
    assert_eq!(allowed(&decisions), 5, "{decisions:?}");
}
