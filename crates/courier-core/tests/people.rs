//! What the server tells one person about another: `getProfile`'s phone number only to someone
//! who shares a chat (direct or group) with its owner.

mod support;

use courier_core::UserId;
use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::usecases::{groups, profile};
use serde_json::{Value, json};
use support::{Wire, World, who};

async fn profile_of(w: &World, by: &DeviceCredential, user: &UserId) -> Value {
    let p = GetProfileParams {
        user_id: user.to_string(),
    };
    profile::get_profile(&w.profile_deps(), by, p)
        .await
        .unwrap()
        .json()
}

#[tokio::test]
async fn a_phone_number_is_shown_only_to_those_who_share_a_chat() {
    let w = World::new();
    let a = w.user("+14155550100", "d_0").await;
    let b = w.user("+14155550101", "d_1").await;
    let c = w.user("+14155550102", "d_2").await;
    let d = w.user("+14155550103", "d_3").await;
    let (da, db, dc, dd) = (
        who(&a, "d_0"),
        who(&b, "d_1"),
        who(&c, "d_2"),
        who(&d, "d_3"),
    );

    assert_eq!(
        profile_of(&w, &da, &a).await["phone"],
        "+14155550100",
        "one's own"
    );
    assert!(
        profile_of(&w, &db, &a).await.get("phone").is_none(),
        "a stranger's"
    );

    w.open(&da, &b).await;
    assert_eq!(profile_of(&w, &db, &a).await["phone"], "+14155550100");
    assert_eq!(profile_of(&w, &da, &b).await["phone"], "+14155550101");

    // A group of A and C: they see each other's numbers; D, outside it, sees neither.
    let g = w.group_deps();
    let p: InitiateGroupParams =
        serde_json::from_value(json!({"name": "g", "members": [&c]})).unwrap();
    groups::initiate(&g, &da, p).await.unwrap();
    assert_eq!(profile_of(&w, &dc, &a).await["phone"], "+14155550100");
    assert_eq!(profile_of(&w, &da, &c).await["phone"], "+14155550102");
    assert!(profile_of(&w, &dd, &a).await.get("phone").is_none());
    assert!(
        profile_of(&w, &dc, &b).await.get("phone").is_none(),
        "B and C share no chat"
    );
}
