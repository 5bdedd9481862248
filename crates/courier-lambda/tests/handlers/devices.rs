//! Keys and device messages (`uploadKeys`, `sendToDevice`).

use super::*;

#[tokio::test]
async fn upload_keys_and_send_to_device_through_the_route_handler() {
    use courier_core::ports::{AccountStore, DeviceQueueStore, KeyStore};
    use courier_core::usecases::{device_messages, keys};
    let p = Ports::default();
    let key_deps = keys::Deps {
        accounts: Some(&p.accounts),
        keys: &p.keys,
        one_time_keys_per_target: None,
        clock: &SystemClock,
    };
    let resp = routes::action(
        "uploadKeys",
        &ws_event("upload-keys.json"),
        |who, params| async move { keys::upload_keys(&key_deps, &who, params).await },
    )
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r4");
    assert_eq!(f["result"]["oneTimeKeyCount"], 2, "{f}");
    let me = UserId::from_trusted("u_test");
    let stored = p.keys.device_keys(&me).await.unwrap();
    assert_eq!(stored[0].fallback.as_ref().unwrap().key_id, "AAAAAAAAAAI");

    let deps = device_messages::Deps {
        accounts: Some(&p.accounts),
        queues: &p.queues,
        deliver: Some(courier_core::usecases::deliver::Deliverer {
            presence: &p.connections,
            connections: &p.connections,
            gateway: &p.gateway,
            push: None,
        }),
        clock: &SystemClock,
        throttle: None,
    };
    let event = ws_event("send-to-device.json");
    let send = || {
        routes::action("sendToDevice", &event, |who, params| async {
            let who = who;
            device_messages::send_to_device(&deps, &who, params).await
        })
    };
    // No such device yet: reported, nothing queued.
    let f = frame(&send().await);
    assert_eq!(f["result"]["queued"], serde_json::json!([]));
    assert_eq!(f["result"]["unknownDevices"][0]["deviceId"], "d_peer");
    // The peer exists and is online: queued and delivered.
    let peer = device_of("u_peer", "d_peer", true);
    p.accounts
        .create_account(
            &courier_core::ports::User {
                user_id: peer.user_id.clone(),
                phone: courier_core::PhoneNumber::parse("+14155550199").unwrap(),
                created_at: chrono::Utc::now(),
            },
            &peer,
        )
        .await
        .unwrap();
    let conn = ConnectionId::new("peer-conn");
    p.connections
        .add(&courier_core::ports::Connection {
            connection_id: conn.clone(),
            user_id: peer.user_id.clone(),
            device_id: peer.device_id.clone(),
            connected_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    p.gateway.open(&conn);
    let f = frame(&send().await);
    assert_eq!(f["result"]["queued"][0]["deviceId"], "d_peer", "{f}");
    let posted = p.gateway.posted();
    assert_eq!(posted.len(), 1);
    let event: Value = serde_json::from_str(&posted[0].1).unwrap();
    assert_eq!(event["event"], "deviceMessage");
    assert_eq!(event["message"]["payload"], "AwogCiphertextOnly");
    assert_eq!(event["message"]["sender"], "u_test");
    let (queued, _) = p
        .queues
        .read(&peer.user_id, &peer.device_id, chrono::Utc::now(), 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
}
