//! Profile, privacy settings and contacts end to end: real WebSocket clients -> the local
//! gateway -> the `accounts`, `connections`, `messages` and `groups` binaries -> DynamoDB Local.
//! Each privacy setting is shown to change what another user sees or may do.

use courier_client::{ClientError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::Credentials;
use courier_tests::{TestCloud, WAIT, connect, eventually, next, open_group, until_marker};
use serde_json::{Value, json};

fn err(r: Result<Value, ClientError>) -> (ErrorCode, String) {
    match r.unwrap_err() {
        ClientError::Api(d) => (d.code, d.message),
        other => panic!("not an API error: {other}"),
    }
}

async fn three(cloud: &TestCloud) -> (Credentials, Credentials, Credentials) {
    (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    )
}

async fn profile(s: &Session, of: &Credentials) -> Value {
    s.request("getProfile", json!({ "userId": of.user_id }))
        .await
        .unwrap()
}

async fn settings(s: &Session, body: Value) -> Value {
    s.request("updateSettings", body).await.unwrap()
}

async fn contacts(s: &Session, add: &[&Credentials], remove: &[&Credentials]) -> Value {
    let ids = |v: &[&Credentials]| v.iter().map(|c| c.user_id.clone()).collect::<Vec<_>>();
    s.request(
        "updateContacts",
        json!({ "add": ids(add), "remove": ids(remove) }),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_default_update_partially_and_every_bad_input_names_its_field() {
    let cloud = TestCloud::shared();
    let alice = cloud.sign_up().await;
    let a = connect(cloud, &alice).await;
    let s = a.request("getSettings", json!({})).await.unwrap();
    assert_eq!(
        s["privacy"],
        json!({"lastSeen": "everyone", "profilePhoto": "everyone", "about": "everyone",
               "status": "everyone", "readReceipts": true, "groupsAdd": "everyone"})
    );
    settings(
        &a,
        json!({"display": {"name": "Alice", "about": "hello", "avatar": "m_photo1"}}),
    )
    .await;
    // The status setting (status posts are not built yet): stored and returned.
    let s = settings(&a, json!({"privacy": {"status": "contacts"}})).await;
    assert_eq!(s["privacy"]["status"], "contacts");
    assert_eq!(
        s["display"]["name"], "Alice",
        "display untouched by a privacy update"
    );
    let s = a.request("getSettings", json!({})).await.unwrap();
    assert_eq!(s["privacy"]["status"], "contacts");
    assert_eq!(s["privacy"]["lastSeen"], "everyone");
    assert_eq!(s["display"]["avatar"], "m_photo1");

    for (body, field) in [
        (json!({"display": {"name": "x".repeat(26)}}), "display.name"),
        (
            json!({"display": {"about": "y".repeat(140)}}),
            "display.about",
        ),
        (
            json!({"privacy": {"lastSeen": "friends"}}),
            "privacy.lastSeen",
        ),
        (
            json!({"privacy": {"readReceipts": "no"}}),
            "privacy.readReceipts",
        ),
        (
            json!({"privacy": {"groupsAdd": "nobody"}}),
            "privacy.groupsAdd",
        ),
        (json!({"privacy": {"colour": "red"}}), "privacy"),
    ] {
        let (code, message) = err(a.request("updateSettings", body.clone()).await);
        assert_eq!(code, ErrorCode::BadRequest, "{body}");
        assert!(message.contains(field), "{body}: {message}");
    }
    let (code, message) = err(a.request("getProfile", json!({"userId": "bob"})).await);
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("userId"), "{message}");
    let (code, _) = err(a
        .request(
            "getProfile",
            json!({"userId": "u_0000000000000000000000000000dead"}),
        )
        .await);
    assert_eq!(code, ErrorCode::NotFound);
    // Nothing of the refused updates was stored.
    let after = a.request("getSettings", json!({})).await.unwrap();
    assert_eq!(after, s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contacts_add_remove_bad_ids_and_account_deletion_removes_them() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = three(cloud).await;
    let a = connect(cloud, &alice).await;
    assert_eq!(contacts(&a, &[&bob, &carol, &bob], &[]).await["count"], 2);
    assert_eq!(contacts(&a, &[], &[&carol]).await["count"], 1);
    let (code, message) = err(a
        .request("updateContacts", json!({"add": [bob.user_id, "carol"]}))
        .await);
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("add[1]"), "{message}");
    let (code, _) = err(a
        .request("updateContacts", json!({"add": [alice.user_id]}))
        .await);
    assert_eq!(code, ErrorCode::BadRequest);
    let (code, message) = err(a.request("updateContacts", json!({"add": "u_x"})).await);
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("add"), "{message}");
    assert_eq!(contacts(&a, &[], &[]).await["count"], 1, "nothing changed");
    settings(&a, json!({"display": {"name": "Alice"}})).await;

    // deleteAccount leaves nothing of the settings and contacts in the users table.
    a.request("deleteAccount", json!({})).await.unwrap();
    let db = cloud.dynamodb();
    let table = cloud.table("UsersTable");
    let left = db
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{}", alice.user_id)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(left.count, 0, "{:?}", left.items);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn about_and_profile_photo_follow_the_owners_choice_per_viewer() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = three(cloud).await;
    let (a, b, c) = (
        connect(cloud, &alice).await,
        connect(cloud, &bob).await,
        connect(cloud, &carol).await,
    );
    settings(
        &a,
        json!({"display": {"name": "Alice", "about": "at work", "avatar": "m_a1"}}),
    )
    .await;
    // Everyone (the default): Carol, a stranger, sees both.
    let p = profile(&c, &alice).await;
    assert_eq!(
        (p["about"].clone(), p["avatar"].clone()),
        (json!("at work"), json!("m_a1"))
    );
    // Contacts: Bob (a contact) sees both, Carol neither.
    contacts(&a, &[&bob], &[]).await;
    settings(
        &a,
        json!({"privacy": {"about": "contacts", "profilePhoto": "contacts"}}),
    )
    .await;
    let p = profile(&b, &alice).await;
    assert_eq!(
        (p["about"].clone(), p["avatar"].clone()),
        (json!("at work"), json!("m_a1"))
    );
    let p = profile(&c, &alice).await;
    assert!(p.get("about").is_none() && p.get("avatar").is_none(), "{p}");
    assert_eq!(p["name"], "Alice");
    // Nobody: not even Bob; the photo alone hidden leaves about visible.
    settings(&a, json!({"privacy": {"profilePhoto": "nobody"}})).await;
    let p = profile(&b, &alice).await;
    assert_eq!(p["about"], "at work");
    assert!(p.get("avatar").is_none(), "{p}");
    settings(&a, json!({"privacy": {"about": "nobody"}})).await;
    assert!(profile(&b, &alice).await.get("about").is_none());
    // The owner always sees her own.
    assert_eq!(profile(&a, &alice).await["avatar"], "m_a1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_seen_is_kept_at_disconnect_and_shown_only_to_those_allowed() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = three(cloud).await;
    let (b, c) = (connect(cloud, &bob).await, connect(cloud, &carol).await);
    let a = connect(cloud, &alice).await;
    let p = profile(&c, &alice).await;
    assert_eq!(
        (p["online"].clone(), p["lastSeen"].clone()),
        (json!(true), Value::Null)
    );
    contacts(&a, &[&bob], &[]).await;
    settings(&a, json!({"privacy": {"lastSeen": "contacts"}})).await;
    let before = chrono::Utc::now();
    a.close().await;
    // $disconnect runs after the socket closes (it forgets the connection, then records the
    // time): wait for both.
    let p = eventually("offline with a last seen time", WAIT, async || {
        let p = profile(&b, &alice).await;
        (p["online"] == false && p["lastSeen"].is_string()).then_some(p)
    })
    .await;
    assert_eq!(p["online"], false, "{p}");
    let at: chrono::DateTime<chrono::Utc> = p["lastSeen"].as_str().unwrap().parse().unwrap();
    assert!(
        at >= before - chrono::Duration::seconds(1) && at <= chrono::Utc::now(),
        "{at}"
    );
    // Carol is not a contact: no online, no last seen.
    let p = profile(&c, &alice).await;
    assert!(
        p.get("lastSeen").is_none() && p.get("online").is_none(),
        "{p}"
    );
    // Nobody: Bob loses it too.
    let a = connect(cloud, &alice).await;
    settings(&a, json!({"privacy": {"lastSeen": "nobody"}})).await;
    assert!(profile(&b, &alice).await.get("lastSeen").is_none());
}

async fn direct(s: &Session, peer: &Credentials) -> String {
    s.initiate_direct_chat(&peer.user_id, None)
        .await
        .unwrap()
        .session_id
}

async fn send(s: &Session, session: &str, cmid: &str) -> String {
    s.request(
        "sendMessage",
        json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": "ciphertext"}),
    )
    .await
    .unwrap()["msgId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn ack(s: &Session, session: &str, msg: &str, status: &str) -> Value {
    s.request(
        "ackMessages",
        json!({"sessionId": session, "msgId": msg, "status": status}),
    )
    .await
    .unwrap()
}

async fn status(s: &Session, msg: &str) -> Value {
    s.request("getMessageStatus", json!({ "msgId": msg }))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_receipts_off_sends_none_and_sees_none_while_delivered_still_works() {
    let cloud = TestCloud::shared();
    let (alice, bob, _) = three(cloud).await;
    let (a, b) = (connect(cloud, &alice).await, connect(cloud, &bob).await);
    let s = direct(&a, &bob).await;
    settings(&b, json!({"privacy": {"readReceipts": false}})).await;

    // Bob reads Alice's message: his read is stored (his listSessions shows it) but Alice gets
    // only the delivered event and sees delivered.
    let m1 = send(&a, &s, "m1").await;
    assert_eq!(ack(&b, &s, &m1, "delivered").await["moved"], true);
    let e = next(&a, "status").await;
    assert_eq!(e["status"], "delivered");
    assert_eq!(ack(&b, &s, &m1, "read").await["moved"], true);
    // A message from Bob, sent after his read: no status event before it.
    let marker = send(&b, &s, "marker-1").await;
    let more = until_marker(&a, |e| {
        e["event"] == "message" && e["message"]["msgId"] == marker.as_str()
    })
    .await;
    let more: Vec<_> = more.iter().filter(|e| e["event"] == "status").collect();
    assert!(more.is_empty(), "no read event: {more:?}");
    let st = status(&a, &m1).await;
    assert_eq!(st["status"], "delivered", "{st}");
    let listed = b.request("listSessions", json!({})).await.unwrap();
    let mine = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["sessionId"] == s.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["readSeq"], 1, "Bob's own devices stay in sync");

    // The other direction: Alice reads Bob's message; Bob, receipts off, sees no read.
    let m2 = send(&b, &s, "m2").await;
    assert_eq!(ack(&a, &s, &m2, "read").await["moved"], true);
    let marker = send(&a, &s, "marker-2").await;
    let events = until_marker(&b, |e| {
        e["event"] == "message" && e["message"]["msgId"] == marker.as_str()
    })
    .await;
    assert!(
        events
            .iter()
            .all(|e| e["event"] != "status" || e["status"] != "read"),
        "{events:?}"
    );
    assert_eq!(status(&b, &m2).await["status"], "delivered");

    // With receipts on again, both reads show.
    settings(&b, json!({"privacy": {"readReceipts": true}})).await;
    assert_eq!(status(&b, &m2).await["status"], "read");
    assert_eq!(status(&a, &m1).await["status"], "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_add_contacts_refuses_others_with_forbidden_and_changes_nothing() {
    let cloud = TestCloud::shared();
    let (alice, bob, carol) = three(cloud).await;
    let (a, b, c) = (
        connect(cloud, &alice).await,
        connect(cloud, &bob).await,
        connect(cloud, &carol).await,
    );
    settings(&c, json!({"privacy": {"groupsAdd": "contacts"}})).await;
    contacts(&c, &[&bob], &[]).await;
    // Alice is not in Carol's contacts: she cannot create a group with her...
    let (code, message) = err(a
        .request(
            "initiateGroupChatSession",
            json!({"name": "g", "members": [bob.user_id, carol.user_id]}),
        )
        .await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains(&carol.user_id), "{message}");
    let listed = b.request("listSessions", json!({})).await.unwrap();
    assert!(
        listed["sessions"].as_array().unwrap().is_empty(),
        "no group was made"
    );
    // ...nor add her to one.
    let g = open_group(&a, "g", &[&bob.user_id]).await;
    let (code, message) = err(a
        .request(
            "addUserToGroup",
            json!({"groupId": g, "userId": carol.user_id}),
        )
        .await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains(&carol.user_id), "{message}");
    let group = a.request("getGroup", json!({"groupId": g})).await.unwrap();
    assert_eq!(group["members"].as_array().unwrap().len(), 2);
    // Bob is her contact: once admin he may add her, and she gets the group.
    a.request(
        "promoteUserToAdmin",
        json!({"groupId": g, "userId": bob.user_id}),
    )
    .await
    .unwrap();
    let r = b
        .request(
            "addUserToGroup",
            json!({"groupId": g, "userId": carol.user_id}),
        )
        .await
        .unwrap();
    assert_eq!(r["added"], true);
    let e = next(&c, "groupUpdate").await;
    assert_eq!(e["groupId"], g.as_str());
    // Everyone (the default) again: Alice may add people who never chose otherwise.
    settings(&c, json!({"privacy": {"groupsAdd": "everyone"}})).await;
    a.request(
        "initiateGroupChatSession",
        json!({"name": "h", "members": [carol.user_id]}),
    )
    .await
    .unwrap();
}
