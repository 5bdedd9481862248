//! `postStatus`.

use super::*;

#[tokio::test]
async fn post_status_stores_it_tells_a_contacts_live_device_and_answers_its_id() {
    use courier_core::ports::{Connection, StatusStore};
    use courier_core::usecases::{deliver::Deliverer, status};
    let statuses = MemoryStatuses::default();
    let settings = MemorySettings::default();
    let connections = MemoryConnections::default();
    let gateway = RecordingGateway::default();
    let (poster, friend) = (
        UserId::from_trusted("u_test"),
        UserId::from_trusted("u_friend"),
    );
    settings
        .update_contacts(
            &poster,
            std::slice::from_ref(&friend),
            &[],
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let conn = ConnectionId::new("c-friend");
    gateway.open(&conn);
    connections
        .add(&Connection {
            connection_id: conn.clone(),
            user_id: friend.clone(),
            device_id: courier_core::DeviceId::from_trusted("d_friend"),
            connected_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let deps = status::Deps {
        statuses: Some(&statuses),
        settings: Some(&settings),
        deliver: Some(Deliverer {
            presence: &connections,
            connections: &connections,
            gateway: &gateway,
            push: None,
        }),
        media: None,
        clock: &SystemClock,
        ttl_secs: 60,
        throttle: None,
    };
    let deps = &deps;
    let event = ws_event("post-status.json");
    let resp = routes::action("postStatus", &event, |who, params| async move {
        status::post_status(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r7");
    assert_eq!(f["ok"], true, "{f}");
    let id = f["result"]["statusId"].as_str().unwrap();
    assert!(f["result"]["expiresAt"].as_str().is_some());
    let stored = statuses
        .status(&poster, id, chrono::Utc::now())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.device_id.as_str(), "d_test");
    assert_eq!(stored.attachments, vec!["m_01JDX7Q9V6T4ZK3M2N8P5R1S0A"]);
    let posted = gateway.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, conn);
    let event: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(event["event"], "statusPosted");
    assert_eq!(event["statusId"], id);

    let mut bad = ws_event("post-status.json");
    bad.body = Some(r#"{"action":"postStatus","requestId":"r8","payload":42}"#.into());
    let resp = routes::action("postStatus", &bad, |who, params| async move {
        status::post_status(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
    assert!(f["error"]["message"].as_str().unwrap().contains("payload"));
}
