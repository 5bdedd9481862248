//! Status posts on in-memory ports: privacy, events, viewers, expiry, removal, limits.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use courier_core::ports::{Connection, ConnectionStore, DeviceCredential, SettingsStore};
use courier_core::protocol::{
    GetStatusAudienceParams, GetStatusViewersParams, PostStatusParams, RemoveStatusParams,
    ViewStatusParams,
};
use courier_core::settings::{Audience, Settings};
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::status::{self, Deps};
use courier_core::{ConnectionId, DeviceId, ErrorCode, UserId};
use serde_json::Value;
use support::{Wire, World};

/// When every test here starts.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

impl World {
    fn deps(&self) -> Deps<'_> {
        Deps {
            statuses: Some(&self.statuses),
            settings: Some(&self.settings),
            deliver: Some(Deliverer {
                push: None,
                ..self.deliverer()
            }),
            media: None,
            clock: &self.clock,
            ttl_secs: 86_400,
            throttle: None,
        }
    }

    async fn online(&self, who: &DeviceCredential, conn: &str) {
        let c = ConnectionId::new(conn);
        self.gateway.open(&c);
        self.connections
            .add(&Connection {
                connection_id: c,
                user_id: who.user_id.clone(),
                device_id: who.device_id.clone(),
                connected_at: Utc::now(),
            })
            .await
            .unwrap();
    }

    async fn privacy(&self, who: &DeviceCredential, status: Audience) {
        let mut s = Settings::default();
        s.privacy.status = status;
        self.settings.put_settings(&who.user_id, &s).await.unwrap();
    }

    async fn contact(&self, owner: &DeviceCredential, contact: &DeviceCredential) {
        self.settings
            .update_contacts(
                &owner.user_id,
                std::slice::from_ref(&contact.user_id),
                &[],
                Utc::now(),
            )
            .await
            .unwrap();
    }

    async fn post(&self, who: &DeviceCredential, payload: &str) -> Value {
        status::post_status(&self.deps(), who, post_params(payload, &[]))
            .await
            .unwrap()
            .json()
    }

    async fn view(&self, who: &DeviceCredential, poster: &DeviceCredential) -> Value {
        status::view_status(
            &self.deps(),
            who,
            ViewStatusParams {
                user_id: poster.user_id.to_string(),
                after: None,
            },
        )
        .await
        .unwrap()
        .json()
    }

    /// The id of the status `who` posts.
    async fn post_id(&self, who: &DeviceCredential, payload: &str) -> String {
        self.post(who, payload).await["statusId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `removeStatus` of status `id` by `who`.
    async fn remove(&self, who: &DeviceCredential, id: &str) -> Result<(), ErrorCode> {
        let params = RemoveStatusParams {
            status_id: id.to_owned(),
        };
        status::remove_status(&self.deps(), who, params)
            .await
            .map(drop)
            .map_err(|e| e.code)
    }

    /// The first page of `poster`'s status audience: its `userIds`.
    async fn audience(&self, poster: &DeviceCredential) -> Value {
        let page = status::get_status_audience(
            &self.deps(),
            poster,
            GetStatusAudienceParams { after: None },
        )
        .await
        .unwrap();
        page.json()["userIds"].clone()
    }

    fn events_to(&self, conn: &str) -> Vec<Value> {
        self.frames_to(&ConnectionId::new(conn))
    }
}

fn user(n: &str) -> DeviceCredential {
    DeviceCredential {
        user_id: UserId::from_trusted(format!("u_{n}")),
        device_id: DeviceId::from_trusted(format!("d_{n}1")),
    }
}

/// A World at [`start`] and the two users most tests need.
fn alice_and_bob() -> (World, DeviceCredential, DeviceCredential) {
    (World::at(start()), user("alice"), user("bob"))
}

fn post_params(payload: &str, attachments: &[&str]) -> PostStatusParams {
    PostStatusParams {
        payload: payload.to_owned(),
        attachments: attachments.iter().map(|a| a.to_string()).collect(),
    }
}

fn payloads(view: &Value) -> Vec<&str> {
    view["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["payload"].as_str().unwrap())
        .collect()
}

fn viewers_params(id: &str) -> GetStatusViewersParams {
    GetStatusViewersParams {
        status_id: id.to_owned(),
        after: None,
        limit: None,
    }
}

#[tokio::test]
async fn contacts_privacy_shows_statuses_to_contacts_only_and_records_their_views() {
    let w = World::at(start());
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    w.privacy(&alice, Audience::Contacts).await;
    w.contact(&alice, &bob).await;
    let posted = w.post(&alice, "ciphertext-1").await;
    let id = posted["statusId"].as_str().unwrap().to_owned();
    assert_eq!(posted["expiresAt"], "2026-01-02T12:00:00.000Z");

    let seen = w.view(&bob, &alice).await;
    assert_eq!(payloads(&seen), vec!["ciphertext-1"]);
    assert_eq!(seen["statuses"][0]["statusId"], id.as_str());
    assert_eq!(seen["statuses"][0]["deviceId"], "d_alice1");
    assert_eq!(seen["hasMore"], false);
    assert!(payloads(&w.view(&carol, &alice).await).is_empty());
    assert_eq!(
        payloads(&w.view(&alice, &alice).await),
        vec!["ciphertext-1"]
    );

    w.clock.advance(Duration::minutes(5));
    w.view(&bob, &alice).await; // a second view keeps the first time
    let viewers = status::get_status_viewers(&w.deps(), &alice, viewers_params(&id))
        .await
        .unwrap();
    let viewers = viewers.json();
    let list = viewers["viewers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "bob only: not carol, not the poster");
    assert_eq!(list[0]["userId"], "u_bob");
    assert_eq!(list[0]["viewedAt"], "2026-01-01T12:00:00.000Z");

    let e = status::get_status_viewers(&w.deps(), &bob, viewers_params(&id))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "only the poster sees viewers");
}

#[tokio::test]
async fn nobody_privacy_hides_from_everyone_but_the_poster_and_notifies_no_one() {
    let (w, alice, bob) = alice_and_bob();
    w.privacy(&alice, Audience::Nobody).await;
    w.contact(&alice, &bob).await;
    w.online(&bob, "c-bob").await;
    w.post(&alice, "secret").await;
    assert!(payloads(&w.view(&bob, &alice).await).is_empty());
    assert_eq!(payloads(&w.view(&alice, &alice).await), vec!["secret"]);
    assert!(w.events_to("c-bob").is_empty());
    assert_eq!(w.audience(&alice).await, serde_json::json!([]));
}

#[tokio::test]
async fn everyone_privacy_shows_to_strangers_but_notifies_contacts_and_own_devices() {
    let w = World::at(start());
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let alice_laptop = DeviceCredential {
        user_id: alice.user_id.clone(),
        device_id: DeviceId::from_trusted("d_alice2"),
    };
    w.contact(&alice, &bob).await;
    w.online(&alice, "c-alice").await;
    w.online(&alice_laptop, "c-alice2").await;
    w.online(&bob, "c-bob").await;
    w.online(&carol, "c-carol").await;
    let posted = w.post(&alice, "hello").await;

    let to_bob = w.events_to("c-bob");
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0]["event"], "statusPosted");
    assert_eq!(to_bob[0]["userId"], "u_alice");
    assert_eq!(to_bob[0]["statusId"], posted["statusId"]);
    assert_eq!(to_bob[0]["expiresAt"], posted["expiresAt"]);
    assert!(
        to_bob[0].get("payload").is_none(),
        "fetched with viewStatus"
    );
    assert_eq!(
        w.events_to("c-alice2").len(),
        1,
        "the poster's other device"
    );
    assert!(w.events_to("c-alice").is_empty(), "not the posting device");
    assert!(w.events_to("c-carol").is_empty(), "not a stranger");
    assert_eq!(payloads(&w.view(&carol, &alice).await), vec!["hello"]);

    assert_eq!(w.audience(&alice).await, serde_json::json!(["u_bob"]));
}

#[tokio::test]
async fn an_expired_status_is_gone_even_before_storage_deletes_it() {
    let (w, alice, bob) = alice_and_bob();
    let id = w.post_id(&alice, "short-lived").await;
    w.clock.advance(Duration::hours(23));
    assert_eq!(payloads(&w.view(&bob, &alice).await), vec!["short-lived"]);
    w.clock.advance(Duration::hours(1));
    assert!(payloads(&w.view(&bob, &alice).await).is_empty());
    assert!(payloads(&w.view(&alice, &alice).await).is_empty());
    let e = status::get_status_viewers(&w.deps(), &alice, viewers_params(&id))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(w.remove(&alice, &id).await, Err(ErrorCode::NotFound));
}

#[tokio::test]
async fn removing_a_status_hides_it_and_only_the_poster_can() {
    let (w, alice, bob) = alice_and_bob();
    let id = w.post_id(&alice, "oops").await;
    w.post(&alice, "keep").await;
    assert_eq!(w.remove(&bob, &id).await, Err(ErrorCode::NotFound));
    w.remove(&alice, &id).await.unwrap();
    assert_eq!(payloads(&w.view(&bob, &alice).await), vec!["keep"]);
    assert_eq!(w.remove(&alice, &id).await, Err(ErrorCode::NotFound));
}

#[tokio::test]
async fn bad_input_gets_its_code_and_nothing_is_stored() {
    let (w, alice, bob) = alice_and_bob();
    let deps = w.deps();
    let post = |p| status::post_status(&deps, &alice, p);
    let big = "x".repeat(65_537);
    assert_eq!(
        post(post_params(&big, &[])).await.unwrap_err().code,
        ErrorCode::PayloadTooLarge
    );
    assert_eq!(
        post(post_params("", &[])).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    let five = ["m1", "m2", "m3", "m4", "m5"];
    assert_eq!(
        post(post_params("x", &five)).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    let long = "m".repeat(129);
    assert_eq!(
        post(post_params("x", &[&long])).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert!(payloads(&w.view(&alice, &alice).await).is_empty());
    post(post_params(&"x".repeat(65_536), &["m1", "m2", "m3", "m4"]))
        .await
        .unwrap();

    let view = |user_id: &str, after: Option<&str>| {
        status::view_status(
            &deps,
            &bob,
            ViewStatusParams {
                user_id: user_id.to_owned(),
                after: after.map(str::to_owned),
            },
        )
    };
    assert_eq!(
        view("alice", None).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        view("u_alice", Some("nope")).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    let e = status::get_status_viewers(&w.deps(), &alice, viewers_params("not-an-id"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[tokio::test]
async fn thirty_live_statuses_at_most_and_big_ones_come_in_pages() {
    let (w, alice, bob) = alice_and_bob();
    let big = "y".repeat(40_000);
    for i in 0..30 {
        w.post(&alice, &format!("{i}{big}")).await;
        w.clock.advance(Duration::milliseconds(1));
    }
    let e = status::post_status(&w.deps(), &alice, post_params("one more", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = status::view_status(
            &w.deps(),
            &bob,
            ViewStatusParams {
                user_id: "u_alice".into(),
                after: after.clone(),
            },
        )
        .await
        .unwrap();
        let page = page.json();
        let list = page["statuses"].as_array().unwrap();
        assert!(serde_json::to_string(&page).unwrap().len() < 100 * 1024);
        assert!(!list.is_empty());
        seen.extend(
            list.iter()
                .map(|s| s["payload"].as_str().unwrap()[..2].to_owned()),
        );
        after = list.last().unwrap()["statusId"].as_str().map(str::to_owned);
        if page.json()["hasMore"] == false {
            break;
        }
    }
    let expected: Vec<String> = (0..30)
        .map(|i| format!("{i}{big}")[..2].to_owned())
        .collect();
    assert_eq!(seen, expected, "every status once, oldest first");

    // Once one expires, there is room again.
    w.clock
        .advance(Duration::hours(24) - Duration::milliseconds(29));
    status::post_status(&w.deps(), &alice, post_params("one more", &[]))
        .await
        .unwrap();
}
