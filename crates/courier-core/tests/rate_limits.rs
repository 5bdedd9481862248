//! Rate limits on in-memory ports with a manual clock: the token bucket of sends (burst, refill,
//! per-device isolation, nothing stored when refused), codes per phone and per address, link
//! attempts, and failed connections per address.

mod support;

use chrono::{Duration, TimeZone, Utc};
use courier_core::clock::Clock;
use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::rate_limit::{Decision, Rule, Throttle};
use courier_core::secrets::ApiKey;
use courier_core::usecases::{
    authorize, link_device, read_messages, register_account, send_message,
};
use courier_core::{ApiError, ErrorCode, UserId};
use serde_json::{Value, json};
use support::{Wire, World, who};

const BURST: u32 = 5;

fn sends() -> Rule {
    Rule::TokenBucket {
        burst: BURST,
        interval_ms: 1000,
    }
}

impl World {
    /// Alice and Bob, each with one primary device `d_phone`, at 09:00 UTC.
    async fn with_two_users() -> (Self, UserId, UserId) {
        let w = World::at(Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap());
        let alice = w.user("+14155550100", "d_phone").await;
        let bob = w.user("+14155550101", "d_phone").await;
        (w, alice, bob)
    }

    /// Sending limited by [`sends`].
    fn limited_send_deps(&self) -> send_message::Deps<'_> {
        send_message::Deps {
            throttle: Some(Throttle {
                limiter: &self.limiter,
                rule: sends(),
            }),
            ..self.send_deps()
        }
    }

    async fn send(
        &self,
        from: &DeviceCredential,
        session: &str,
        cmid: &str,
    ) -> Result<Value, ApiError> {
        let p: SendMessageParams = serde_json::from_value(
            json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": cmid}),
        )
        .unwrap();
        send_message::send_message(&self.limited_send_deps(), from, p)
            .await
            .map(|r| r.json())
    }

    /// The payloads stored in a session, in order.
    async fn stored(&self, reader: &DeviceCredential, session: &str) -> Vec<String> {
        let p: ReadNewMessagesParams =
            serde_json::from_value(json!({"sessionId": session, "limit": 100})).unwrap();
        let page = read_messages::read_new_messages(
            &self.sessions,
            &self.messages,
            &self.clock,
            reader,
            p,
        )
        .await
        .unwrap();
        page.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["payload"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn a_device_sends_its_burst_then_is_refused_with_retry_after_and_nothing_is_stored() {
    let (w, alice, bob) = World::with_two_users().await;
    let phone = who(&alice, "d_phone");
    let session = w.open(&phone, &bob).await;
    for i in 0..BURST {
        w.send(&phone, &session, &format!("m{i}")).await.unwrap();
    }
    let e = w.send(&phone, &session, "over").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(e.retry_after_secs, Some(1), "one token per second");
    let all: Vec<String> = (0..BURST).map(|i| format!("m{i}")).collect();
    assert_eq!(w.stored(&who(&bob, "d_phone"), &session).await, all);

    // Half a second later: still nothing; after retryAfter: exactly one more, not a new burst.
    w.clock.advance(Duration::milliseconds(500));
    assert_eq!(
        w.send(&phone, &session, "early").await.unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    w.clock.advance(Duration::milliseconds(500));
    w.send(&phone, &session, "after").await.unwrap();
    assert_eq!(
        w.send(&phone, &session, "again").await.unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    // A long pause refills the bucket to its burst, no more.
    w.clock.advance(Duration::minutes(10));
    for i in 0..BURST {
        w.send(&phone, &session, &format!("later{i}"))
            .await
            .unwrap();
    }
    assert_eq!(
        w.send(&phone, &session, "too many").await.unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    let stored = w.stored(&who(&bob, "d_phone"), &session).await;
    assert_eq!(stored.len(), 2 * BURST as usize + 1);
    assert!(
        !stored
            .iter()
            .any(|p| ["over", "early", "again", "too many"].contains(&p.as_str()))
    );
}

#[tokio::test]
async fn one_device_over_its_limit_slows_no_other_device_or_user() {
    let (w, alice, bob) = World::with_two_users().await;
    let alice_phone = who(&alice, "d_phone");
    let alice_laptop = who(&alice, "d_laptop");
    let bob_phone = who(&bob, "d_phone");
    let session = w.open(&alice_phone, &bob).await;
    for i in 0..BURST {
        w.send(&alice_phone, &session, &format!("a{i}"))
            .await
            .unwrap();
    }
    assert_eq!(
        w.send(&alice_phone, &session, "a-over")
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    // Same user, another device; and the other user: full buckets of their own.
    for i in 0..BURST {
        w.send(&alice_laptop, &session, &format!("l{i}"))
            .await
            .unwrap();
        w.send(&bob_phone, &session, &format!("b{i}"))
            .await
            .unwrap();
    }
    assert_eq!(
        w.stored(&bob_phone, &session).await.len(),
        3 * BURST as usize
    );
}

#[tokio::test]
async fn a_retry_of_a_stored_message_within_the_limit_still_returns_the_first_result() {
    let (w, alice, bob) = World::with_two_users().await;
    let phone = who(&alice, "d_phone");
    let session = w.open(&phone, &bob).await;
    let first = w.send(&phone, &session, "same").await.unwrap();
    let retry = w.send(&phone, &session, "same").await.unwrap();
    assert_eq!(first, retry);
    assert_eq!(w.stored(&who(&bob, "d_phone"), &session).await.len(), 1);
}

fn window(max: u32, window_secs: u64) -> Rule {
    Rule::Window { max, window_secs }
}

#[tokio::test]
async fn codes_are_limited_per_phone_and_per_address_and_refusals_send_no_sms() {
    let w = World::at(Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap());
    let deps = register_account::Deps {
        limits: Some(register_account::CodeLimits {
            per_phone: Throttle {
                limiter: &w.limiter,
                rule: window(2, 3600),
            },
            per_ip: Throttle {
                limiter: &w.limiter,
                rule: window(4, 3600),
            },
        }),
        ..w.register_deps()
    };
    let register = |phone: &'static str, ip: &'static str| {
        let deps = &deps;
        async move { register_account::register_account(deps, phone, Some(ip)).await }
    };
    register("+14155550100", "198.51.100.1").await.unwrap();
    register("+14155550100", "198.51.100.2").await.unwrap();
    // A third code for the number, from any address, is refused until the hour is over.
    let e = register("+14155550100", "198.51.100.3").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(e.retry_after_secs, Some(3600));
    assert_eq!(w.sms.sent().len(), 2, "the refused request sent no SMS");
    // Another number is not affected.
    register("+14155550101", "198.51.100.1").await.unwrap();

    // One address asking for many numbers: its fifth request is refused.
    register("+14155550102", "198.51.100.1").await.unwrap();
    register("+14155550103", "198.51.100.1").await.unwrap();
    let e = register("+14155550104", "198.51.100.1").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(w.sms.sent().len(), 5);
    // Another address still gets codes for that number.
    register("+14155550104", "198.51.100.9").await.unwrap();

    // The next hour, the number may have codes again (the per-number 3-in-15-minutes rule and
    // the hourly limit both allow it).
    w.clock.advance(Duration::minutes(60));
    register("+14155550100", "198.51.100.1").await.unwrap();
    assert_eq!(w.sms.sent().len(), 7);
}

#[tokio::test]
async fn link_requests_per_address_and_approvals_per_account_are_limited() {
    // Two minutes before the 10-minute window ends (link codes live 5 minutes).
    let w = World::at(Utc.with_ymd_and_hms(2026, 11, 29, 9, 8, 0).unwrap());
    let who = w.account("+14155550100", 0).await.primary;
    let deps = link_device::Deps {
        links: &w.accounts,
        accounts: Some(&w.accounts),
        clock: &w.clock,
        throttle: Some(Throttle {
            limiter: &w.limiter,
            rule: window(3, 600),
        }),
    };
    let web = || DeviceInfo {
        name: "web".into(),
        platform: Platform::Web,
    };
    for _ in 0..3 {
        link_device::request_link(&deps, web(), Some("203.0.113.7"))
            .await
            .unwrap();
    }
    let e = link_device::request_link(&deps, web(), Some("203.0.113.7"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.retry_after_secs.is_some_and(|s| (1..=600).contains(&s)));
    let req = link_device::request_link(&deps, web(), Some("203.0.113.8"))
        .await
        .unwrap();

    // Guessing codes: three wrong approvals, then even the right code waits.
    for _ in 0..3 {
        let e = link_device::approve(&deps, &who, "0000000000")
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
    }
    let e = link_device::approve(&deps, &who, req.json()["code"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(e.retry_after_secs, Some(120));
    w.clock.advance(Duration::seconds(120));
    link_device::approve(&deps, &who, req.json()["code"].as_str().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn failed_connections_lock_out_the_address_and_key_prefix_not_a_neighbours_right_key() {
    let w = World::at(Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 30).unwrap());
    let account = w.account("+14155550100", 0).await;
    let key = &account.keys[0];
    let failures = Throttle {
        limiter: &w.limiter,
        rule: window(3, 60),
    };
    let connect = |k: &str, ip: &'static str| {
        let key = ApiKey::presented(k);
        let (accounts, failures, now) = (&w.accounts, &failures, w.clock.now());
        async move {
            authorize::authorize_connection(
                accounts,
                None,
                Some(authorize::Presented::Key(key)),
                Some(ip),
                Some(failures),
                now,
            )
            .await
        }
    };
    // Right keys count nothing.
    for _ in 0..10 {
        connect(key.expose(), "192.0.2.1").await.unwrap();
    }
    for _ in 0..3 {
        let e = connect("wrong", "192.0.2.1").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
    }
    let e = connect("wrong", "192.0.2.1").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(e.retry_after_secs, Some(30), "until the minute is over");
    // A neighbour behind the same address (a shared NAT) with its right key is not locked out.
    connect(key.expose(), "192.0.2.1").await.unwrap();
    // Another address is not affected either.
    assert_eq!(
        connect("wrong", "192.0.2.2").await.unwrap_err().code,
        ErrorCode::Unauthorized
    );
    // Once the window is over, the prefix is counted afresh.
    w.clock.advance(Duration::seconds(30));
    assert_eq!(
        w.limiter
            .check(
                "connect-failures#192.0.2.1#wrong",
                failures.rule,
                w.clock.now()
            )
            .await
            .unwrap(),
        Decision::Allowed
    );
}

#[tokio::test]
async fn the_sms_guard_refuses_other_countries_and_spent_budgets_and_sends_nothing() {
    let w = World::at(Utc.with_ymd_and_hms(2026, 12, 7, 9, 10, 0).unwrap());
    let deps = register_account::Deps {
        test_numbers: register_account::TestNumbers::from_config("+1415555019", "123456").unwrap(),
        sms_guard: Some(register_account::SmsGuard {
            allowed_calling_codes: vec![1, 44],
            per_country: Throttle {
                limiter: &w.limiter,
                rule: window(2, 3600),
            },
            global: Throttle {
                limiter: &w.limiter,
                rule: window(3, 3600),
            },
        }),
        ..w.register_deps()
    };
    let register = |phone: &'static str| {
        let deps = &deps;
        async move { register_account::register_account(deps, phone, None).await }
    };
    // Not on the allow-list: refused, nothing sent, nothing counted.
    let e = register("+4915123456789").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::CountryNotSupported);
    assert_eq!(e.retry_after_secs, None);
    // +1 has two; the third is refused until the hour ends (50 minutes from now).
    register("+14155550100").await.unwrap();
    register("+14155550101").await.unwrap();
    let e = register("+14155550102").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::SmsBudgetExhausted);
    assert_eq!(e.retry_after_secs, Some(3000));
    // Test numbers send no SMS and use no budget.
    register("+14155550199").await.unwrap();
    // +44 has its own budget; the global one (3) is spent after its first.
    register("+442071838750").await.unwrap();
    let e = register("+442071838751").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::SmsBudgetExhausted);
    assert!(e.message.contains("all numbers"), "{}", e.message);
    assert_eq!(w.sms.sent().len(), 3, "three SMS, no more");
    // The next hour, codes go out again.
    w.clock.advance(Duration::seconds(3000));
    register("+14155550102").await.unwrap();
    assert_eq!(w.sms.sent().len(), 4);
}

/// Issue 21, item 7: lookups are limited per device (a bucket) and per account (a daily window
/// over all its devices), so neither one busy device nor many devices scrape far.
#[tokio::test]
async fn lookups_are_limited_per_device_and_per_account() {
    use courier_core::rate_limit::take_per_device_and_account;
    let (w, a, b) = World::with_two_users().await;
    let per_device = Throttle {
        limiter: &w.limiter,
        rule: Rule::TokenBucket {
            burst: 3,
            interval_ms: 60_000,
        },
    };
    let per_account = Throttle {
        limiter: &w.limiter,
        rule: Rule::Window {
            max: 5,
            window_secs: 86_400,
        },
    };
    let take = |who: DeviceCredential| {
        let (d, acc) = (&per_device, &per_account);
        let now = w.clock.now();
        async move { take_per_device_and_account(Some(d), Some(acc), "lookupUser", &who, now).await }
    };
    for _ in 0..3 {
        take(who(&a, "d_1")).await.unwrap();
    }
    let e = take(who(&a, "d_1")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.retry_after_secs.is_some_and(|s| s <= 60), "{e:?}");
    // Another device of the account: its own bucket, the account's window (2 left).
    take(who(&a, "d_2")).await.unwrap();
    take(who(&a, "d_2")).await.unwrap();
    let e = take(who(&a, "d_2")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.retry_after_secs.is_some_and(|s| s > 60), "{e:?}");
    // Another account is not affected; getProfile has buckets of its own.
    take(who(&b, "d_1")).await.unwrap();
    take_per_device_and_account(
        Some(&per_device),
        Some(&per_account),
        "getProfile",
        &who(&a, "d_1"),
        w.clock.now(),
    )
    .await
    .unwrap();
}

/// Issue 21, item 7: `discoverContacts` answers which numbers have an account, a few calls a
/// day per account.
#[tokio::test]
async fn contact_discovery_finds_registered_numbers_within_a_daily_budget() {
    use courier_core::usecases::discover_contacts;
    let (w, a, b) = World::with_two_users().await;
    let deps = discover_contacts::Deps {
        accounts: &w.accounts,
        budget: Some(Throttle {
            limiter: &w.limiter,
            rule: Rule::Window {
                max: 2,
                window_secs: 86_400,
            },
        }),
        clock: &w.clock,
    };
    let book = || DiscoverContactsParams {
        phones: vec![
            "+14155550199".into(),
            "+14155550101".into(),
            "not a number".into(),
            "+14155550101".into(),
        ],
    };
    let me = who(&a, "d_phone");
    for _ in 0..2 {
        let r = discover_contacts::discover_contacts(&deps, &me, book())
            .await
            .unwrap();
        assert_eq!(
            r.json()["registered"],
            json!([{"phone": "+14155550101", "userId": b}])
        );
    }
    let e = discover_contacts::discover_contacts(&deps, &me, book())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    // 09:00 UTC: the budget comes back at midnight.
    assert_eq!(e.retry_after_secs, Some(15 * 3600));
    // Too many numbers at once: refused whatever the budget (another account's).
    let huge = DiscoverContactsParams {
        phones: (0..1001).map(|i| format!("+1415555{i:04}")).collect(),
    };
    let e = discover_contacts::discover_contacts(&deps, &who(&b, "d_phone"), huge)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    // The next day, again.
    w.clock.advance(Duration::hours(15));
    discover_contacts::discover_contacts(&deps, &me, book())
        .await
        .unwrap();
}
