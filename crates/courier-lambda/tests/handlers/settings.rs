//! `updateSettings`.

use super::*;

#[tokio::test]
async fn update_settings_replies_with_the_settings_and_names_a_bad_field() {
    use courier_core::usecases::profile;
    let p = Ports::default();
    let settings = MemorySettings::default();
    let deps = profile::Deps {
        settings: &settings,
        accounts: &p.accounts,
        last_seen: Some(&p.connections),
        sessions: None,
        clock: &SystemClock,
    };
    let deps = &deps;
    let event = ws_event("update-settings.json");
    let resp = routes::action("updateSettings", &event, |who, params| async move {
        profile::update_settings(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r5");
    assert_eq!(f["ok"], true, "{f}");
    assert_eq!(f["result"]["display"]["name"], "Test");
    assert_eq!(f["result"]["privacy"]["lastSeen"], "contacts");
    assert_eq!(f["result"]["privacy"]["readReceipts"], false);
    assert_eq!(f["result"]["privacy"]["groupsAdd"], "everyone");

    let mut bad = ws_event("update-settings.json");
    bad.body = Some(
        r#"{"action":"updateSettings","requestId":"r6","privacy":{"lastSeen":"friends"}}"#.into(),
    );
    let resp = routes::action("updateSettings", &bad, |who, params| async move {
        profile::update_settings(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
    let message = f["error"]["message"].as_str().unwrap();
    assert!(message.contains("privacy.lastSeen"), "{message}");
    // Nothing changed.
    let s = settings
        .settings(&UserId::from_trusted("u_test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.privacy.last_seen,
        courier_core::settings::Audience::Contacts
    );
}
