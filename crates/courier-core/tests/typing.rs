//! `sendTyping` on in-memory ports: live devices of the other members only, never stored or
//! pushed, hidden as the sender's `lastSeen` setting hides presence, rate-limited.

mod support;

use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::rate_limit::{Rule, Throttle};
use courier_core::settings::{Audience, Settings};
use courier_core::usecases::typing;
use courier_core::{ErrorCode, SessionId, UserId};
use serde_json::json;
use support::{World, who};

impl World {
    fn typing_deps(&self) -> typing::Deps<'_> {
        typing::Deps {
            sessions: &self.sessions,
            settings: &self.settings,
            deliver: self.deliverer(),
            clock: &self.clock,
            throttle: None,
        }
    }

    async fn type_in(&self, by: &DeviceCredential, session: &str) -> Result<(), ErrorCode> {
        let p = SendTypingParams {
            session_id: session.into(),
            typing: true,
        };
        typing::send_typing(&self.typing_deps(), by, p)
            .await
            .map(|r| assert_eq!(r, TypingSent {}))
            .map_err(|e| e.code)
    }

    async fn last_seen_to(&self, user: &UserId, audience: Audience) {
        let mut s = Settings::default();
        s.privacy.last_seen = audience;
        self.settings.put_settings(user, &s).await.unwrap();
    }
}

#[tokio::test]
async fn typing_reaches_the_other_members_live_devices_and_nothing_else() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let s = w.open(&da, &b).await;
    let a_laptop = w.connect(&who(&a, "d_0b"), "ca2").await;
    let b_phone = w.connect(&db, "cb1").await;
    w.offline_with_push(&who(&b, "d_1b")).await;

    w.type_in(&da, &s).await.unwrap();
    let frames = w.frames_to(&b_phone);
    assert_eq!(
        frames,
        vec![
            json!({"type": "event", "event": "typing", "sessionId": s, "userId": a.to_string(),
            "typing": true})
        ]
    );
    assert!(
        w.frames_to(&a_laptop).is_empty(),
        "not to the typist's own devices"
    );
    assert!(w.push.sent().is_empty(), "never pushed");
    assert!(
        w.messages.all(&SessionId::from_trusted(&s)).is_empty(),
        "never stored"
    );

    let outsider = w.user("+14155550102", "d_2").await;
    assert_eq!(
        w.type_in(&who(&outsider, "d_2"), &s).await,
        Err(ErrorCode::NotFound),
        "a non-member reaches no one"
    );
    assert_eq!(w.frames_to(&b_phone).len(), 1);
}

#[tokio::test]
async fn typing_is_hidden_as_the_senders_last_seen_setting_hides_presence() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let c = w.user("+14155550102", "d_2").await;
    let da = who(&a, "d_0");
    let (sb, sc) = (w.open(&da, &b).await, w.open(&da, &c).await);
    let b_phone = w.connect(&who(&b, "d_1"), "cb1").await;
    let c_phone = w.connect(&who(&c, "d_2"), "cc1").await;
    // Alice has Bob (not Carol) in her contacts and shows her presence to contacts only.
    w.settings
        .update_contacts(&a, std::slice::from_ref(&b), &[], chrono::Utc::now())
        .await
        .unwrap();
    w.last_seen_to(&a, Audience::Contacts).await;
    w.type_in(&da, &sb).await.unwrap();
    w.type_in(&da, &sc).await.unwrap();
    assert_eq!(w.frames_to(&b_phone).len(), 1, "a contact sees it");
    assert!(w.frames_to(&c_phone).is_empty(), "a stranger does not");

    w.last_seen_to(&a, Audience::Nobody).await;
    w.type_in(&da, &sb).await.unwrap();
    assert_eq!(w.frames_to(&b_phone).len(), 1, "nobody sees it now");
}

#[tokio::test]
async fn typing_notices_are_rate_limited_per_device() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let da = who(&a, "d_0");
    let s = w.open(&da, &b).await;
    let b_phone = w.connect(&who(&b, "d_1"), "cb1").await;
    let limiter = courier_core::memory::MemoryRateLimiter::default();
    let deps = typing::Deps {
        throttle: Some(Throttle {
            limiter: &limiter,
            rule: Rule::TokenBucket {
                burst: 3,
                interval_ms: 60_000,
            },
        }),
        ..w.typing_deps()
    };
    let mut codes = Vec::new();
    for _ in 0..5 {
        let p = SendTypingParams {
            session_id: s.clone(),
            typing: true,
        };
        codes.push(
            typing::send_typing(&deps, &da, p)
                .await
                .err()
                .map(|e| e.code),
        );
    }
    assert_eq!(
        codes,
        [
            None,
            None,
            None,
            Some(ErrorCode::LimitExceeded),
            Some(ErrorCode::LimitExceeded)
        ]
    );
    assert_eq!(
        w.frames_to(&b_phone).len(),
        3,
        "a refused notice reaches no one"
    );
}

#[tokio::test]
async fn in_a_large_group_typing_reaches_only_the_contacts_a_contacts_setting_allows() {
    let w = World::new();
    let a = w.user("+14155550100", "d_a").await;
    let mut others = Vec::new();
    for i in 0..10 {
        others.push(w.user(&format!("+141555502{i:02}"), "d_m").await);
    }
    let p: InitiateGroupParams =
        serde_json::from_value(json!({"name": "big", "members": others})).unwrap();
    let g = courier_core::usecases::groups::initiate(&w.group_deps(), &who(&a, "d_a"), p)
        .await
        .unwrap()
        .group_id;
    let mut phones = Vec::new();
    for (i, u) in others.iter().enumerate() {
        phones.push(w.connect(&who(u, "d_m"), &format!("c{i}")).await);
    }
    w.settings
        .update_contacts(
            &a,
            std::slice::from_ref(&others[3]),
            &[],
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    w.last_seen_to(&a, Audience::Contacts).await;
    w.type_in(&who(&a, "d_a"), &g).await.unwrap();
    let reached: Vec<usize> = phones
        .iter()
        .enumerate()
        .filter(|(_, c)| w.frames_to(c).iter().any(|f| f["event"] == "typing"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(reached, [3], "only the contact, of 10 members");
}
