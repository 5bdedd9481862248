//! Groups end to end: real WebSocket clients -> the local gateway -> the `groups`, `messages`
//! and `fanout` function binaries -> DynamoDB Local; pushes read back from the SNS emulator.

use courier_client::{ClientError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::Credentials;
use courier_tests::{TestCloud, WAIT, connect, eventually, is_message, next, until_marker};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Option<ErrorCode> {
    r.unwrap_err().code()
}

async fn users(cloud: &TestCloud, n: usize) -> Vec<Credentials> {
    stream::iter(0..n)
        .map(|_| cloud.sign_up())
        .buffered(8)
        .collect()
        .await
}

async fn create(s: &Session, name: &str, members: &[&Credentials]) -> Result<String, ClientError> {
    let ids: Vec<_> = members.iter().map(|m| m.user_id.as_str()).collect();
    let r = s
        .request(
            "initiateGroupChatSession",
            json!({ "name": name, "description": "e2e", "members": ids }),
        )
        .await?;
    assert_eq!(r["groupId"], r["sessionId"]);
    Ok(r["groupId"].as_str().unwrap().to_owned())
}

async fn member_op(
    s: &Session,
    action: &str,
    group: &str,
    user: &Credentials,
) -> Result<Value, ClientError> {
    s.request(action, json!({ "groupId": group, "userId": user.user_id }))
        .await
}

async fn send(s: &Session, group: &str, cmid: &str, payload: &str) -> Result<Value, ClientError> {
    s.request(
        "sendMessage",
        json!({"sessionId": group, "clientMsgId": cmid, "type": "text", "payload": payload}),
    )
    .await
}

async fn read_all(s: &Session, group: &str) -> Result<Vec<Value>, ClientError> {
    let r = s
        .request(
            "readNewMessages",
            json!({ "sessionId": group, "limit": 100 }),
        )
        .await?;
    Ok(r["messages"].as_array().unwrap().clone())
}

fn roles(group: &Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_group_of_257_gets_every_message_once_in_order_and_refuses_the_258th() {
    let cloud = TestCloud::shared();
    let people = users(cloud, 258).await;
    let (members, extra) = people.split_at(257);
    let sessions: Vec<Session> = stream::iter(members)
        .map(|m| connect(cloud, m))
        .buffered(16)
        .collect()
        .await;
    let others: Vec<&Credentials> = members[1..].iter().collect();
    let group = create(&sessions[0], "everyone", &others).await.unwrap();

    // Everyone hears about the group (the creator's other devices would; this device asked).
    for s in &sessions[1..] {
        let e = next(s, "groupUpdate").await;
        assert_eq!(
            (e["groupId"].as_str(), e["update"].as_str()),
            (Some(group.as_str()), Some("created"))
        );
    }
    let info = sessions[100]
        .request("getGroup", json!({ "groupId": group }))
        .await
        .unwrap();
    assert_eq!(info["members"].as_array().unwrap().len(), 257);

    // Three senders, interleaved.
    let senders = [0usize, 128, 256];
    let mut sent: Vec<(usize, u64)> = vec![];
    for round in 0..3 {
        for &i in &senders {
            let r = send(
                &sessions[i],
                &group,
                &format!("r{round}-{i}"),
                &format!("ct-{round}-{i}"),
            )
            .await
            .unwrap();
            sent.push((i, r["seq"].as_u64().unwrap()));
        }
    }
    // Then a marker from member 0 and one from member 256: every member gets one that is not
    // its own, after everything above.
    send(&sessions[0], &group, "end-0", "end-0").await.unwrap();
    send(&sessions[256], &group, "end-256", "end-256")
        .await
        .unwrap();
    // Each member gets every message but its own, once.
    let checks = stream::iter(sessions.iter().enumerate())
        .map(|(i, s)| {
            let expected: Vec<u64> = sent
                .iter()
                .filter(|(by, _)| *by != i)
                .map(|(_, q)| *q)
                .collect();
            let marker = if i == 0 { "end-256" } else { "end-0" };
            async move {
                // Each send delivers its own message, side by side with its reply, so a later
                // message (the marker too) can overtake the last posts of one before it: live
                // events are not in seq order across sends (docs/protocol.md). So this collects
                // until the marker and every expected message are in, and compares them sorted.
                let mut got = Vec::new();
                let mut marker_seen = false;
                tokio::time::timeout(WAIT, async {
                    while !marker_seen || got.len() < expected.len() {
                        let e = s.next_event().await.expect("connection open");
                        if is_message(&e, marker) {
                            marker_seen = true;
                        } else if is_message(&e, "end-0") || is_message(&e, "end-256") {
                            // The other marker (member 0 has only end-256; 1..=255 both): it may
                            // come before the last expected message, and is not one of them.
                        } else if e["event"] == "message" {
                            got.push(e["message"]["seq"].as_u64().unwrap());
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("member {i}: got {got:?} of {expected:?}"));
                got.sort_unstable();
                (i, got, expected)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for (i, got, expected) in checks {
        assert_eq!(
            got, expected,
            "member {i}: every message once, nothing twice"
        );
    }

    // The 258th member is refused, and nothing about the group changed.
    assert_eq!(
        code(member_op(&sessions[0], "addUserToGroup", &group, &extra[0]).await),
        Some(ErrorCode::LimitExceeded)
    );
    let info = sessions[0]
        .request("getGroup", json!({ "groupId": group }))
        .await
        .unwrap();
    assert_eq!(info["members"].as_array().unwrap().len(), 257);
    let e = connect(cloud, &extra[0]).await;
    assert_eq!(code(read_all(&e, &group).await), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn admin_rules_removal_hand_over_and_deletion() {
    let cloud = TestCloud::shared();
    let p = users(cloud, 5).await;
    let (alice, bob, carol, dave, erin) = (&p[0], &p[1], &p[2], &p[3], &p[4]);
    let a = connect(cloud, alice).await;
    let b = connect(cloud, bob).await;
    let c = connect(cloud, carol).await;
    let d = connect(cloud, dave).await;
    let e = connect(cloud, erin).await;
    let group = create(&a, "rules", &[bob, carol]).await.unwrap();
    send(&a, &group, "before-dave-1", "ct-1").await.unwrap();
    send(&b, &group, "before-dave-2", "ct-2").await.unwrap();

    // A member who is not an admin may not add, remove others, promote or delete.
    for (action, target) in [
        ("addUserToGroup", dave),
        ("removeUserFromGroup", carol),
        ("promoteUserToAdmin", carol),
    ] {
        assert_eq!(
            code(member_op(&b, action, &group, target).await),
            Some(ErrorCode::Forbidden),
            "{action} by a non-admin"
        );
    }
    assert_eq!(
        code(b.request("deleteGroup", json!({ "groupId": group })).await),
        Some(ErrorCode::Forbidden)
    );
    // An outsider sees nothing, not even that the group exists.
    assert_eq!(
        code(e.request("getGroup", json!({ "groupId": group })).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(send(&e, &group, "x", "ct").await),
        Some(ErrorCode::NotFound)
    );

    // Dave, added later, reads from his join point: the change that added him and what follows.
    let added = member_op(&a, "addUserToGroup", &group, dave).await.unwrap();
    assert_eq!(added["added"], true);
    assert_eq!(next(&d, "groupUpdate").await["update"], "memberAdded");
    let after = send(&b, &group, "after-dave", "ct-3").await.unwrap();
    assert_eq!(next(&d, "message").await["message"]["payload"], "ct-3");
    let seen: Vec<_> = read_all(&d, &group)
        .await
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("system".to_owned(), added["seq"].as_u64().unwrap()),
            ("text".to_owned(), after["seq"].as_u64().unwrap())
        ]
    );
    // Adding him again changes nothing.
    assert_eq!(
        member_op(&a, "addUserToGroup", &group, dave).await.unwrap()["added"],
        false
    );

    // Alice removes Carol: Carol hears it, then can neither send nor read.
    member_op(&a, "removeUserFromGroup", &group, carol)
        .await
        .unwrap();
    let mut notice = next(&c, "groupUpdate").await;
    while notice["update"] != "memberRemoved" {
        assert!(["created", "memberAdded"].contains(&notice["update"].as_str().unwrap()));
        notice = next(&c, "groupUpdate").await;
    }
    assert_eq!(
        (notice["update"].as_str(), notice["userId"].as_str()),
        (Some("memberRemoved"), Some(carol.user_id.as_str()))
    );
    assert_eq!(
        code(send(&c, &group, "y", "ct").await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(code(read_all(&c, &group).await), Some(ErrorCode::NotFound));
    let after_carol = send(&b, &group, "after-carol", "ct-4").await.unwrap()["seq"]
        .as_u64()
        .unwrap();
    // Its fan-out ran (Dave, a member, got it); then a direct message to Carol, sent after,
    // reaches her with nothing from the group before it.
    // (Dave's groupUpdates before it, Carol's removal, are counted below.)
    let dave_early: std::collections::VecDeque<Value> = until_marker(&d, |e| is_message(e, "ct-4"))
        .await
        .into_iter()
        .filter(|e| e["event"] == "groupUpdate")
        .collect();
    let to_carol = b
        .request(
            "initiateDirectChatSession",
            json!({"peerUserId": carol.user_id}),
        )
        .await
        .unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    send(&b, &to_carol, "carol-marker", "carol-marker")
        .await
        .unwrap();
    let got = until_marker(&c, |e| is_message(e, "carol-marker")).await;
    let from_group: Vec<_> = got
        .iter()
        .filter(|e| {
            e["event"] == "message"
                && e["message"]["sessionId"] == group.as_str()
                && e["message"]["seq"].as_u64() >= Some(after_carol)
        })
        .collect();
    assert!(
        from_group.is_empty(),
        "nothing new for Carol: {from_group:?}"
    );

    // The last admin leaves: the longest-standing member (Bob, there from the start) takes over.
    let left = member_op(&a, "removeUserFromGroup", &group, alice)
        .await
        .unwrap();
    assert_eq!(left["newAdmin"], bob.user_id.as_str());
    let info = b
        .request("getGroup", json!({ "groupId": group }))
        .await
        .unwrap();
    let mut want = vec![
        (bob.user_id.to_string(), "admin".to_owned()),
        (dave.user_id.to_string(), "member".to_owned()),
    ];
    want.sort();
    assert_eq!(roles(&info), want);
    // The new admin can promote.
    member_op(&b, "promoteUserToAdmin", &group, dave)
        .await
        .unwrap();

    // Deleted: every member's device hears it; then everything answers NOT_FOUND.
    b.request("deleteGroup", json!({ "groupId": group }))
        .await
        .unwrap();
    // Dave saw every change since he joined, in order. `deleted` is a direct notice, posted at
    // once, so it may overtake the last updates still in the stream fan-out (docs/protocol.md):
    // the others keep their order among themselves.
    let mut updates = vec![];
    let mut deleted = 0;
    let mut dave_early = dave_early;
    while updates.len() < 4 || deleted == 0 {
        let e = match dave_early.pop_front() {
            Some(e) => e,
            None => next(&d, "groupUpdate").await,
        };
        let u = e["update"].as_str().unwrap().to_owned();
        if u == "deleted" {
            deleted += 1;
        } else {
            updates.push(u);
        }
    }
    assert_eq!(
        updates,
        ["memberRemoved", "memberRemoved", "promoted", "promoted"]
    );
    // A direct message to Dave, sent after: no update and no second deletion notice before it.
    let to_dave = b
        .request(
            "initiateDirectChatSession",
            json!({"peerUserId": dave.user_id}),
        )
        .await
        .unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    send(&b, &to_dave, "dave-marker", "dave-marker")
        .await
        .unwrap();
    let got = until_marker(&d, |e| is_message(e, "dave-marker")).await;
    let late: Vec<_> = got.iter().filter(|e| e["event"] == "groupUpdate").collect();
    assert!(
        late.is_empty(),
        "no update after the deletion and no second deletion notice: {late:?}"
    );
    assert_eq!(deleted, 1);
    assert_eq!(
        code(b.request("getGroup", json!({ "groupId": group })).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(send(&d, &group, "z", "ct").await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(code(read_all(&d, &group).await), Some(ErrorCode::NotFound));
    assert_eq!(
        code(member_op(&b, "addUserToGroup", &group, erin).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(b.request("deleteGroup", json!({ "groupId": group })).await),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn offline_members_get_pushes_without_content_and_catch_up_by_sync() {
    let cloud = TestCloud::shared();
    let p = users(cloud, 3).await;
    let (alice, bob, carol) = (&p[0], &p[1], &p[2]);
    let a = connect(cloud, alice).await;
    let b = connect(cloud, bob).await;
    let c = connect(cloud, carol).await;
    let token = format!("fcm-token-{}", uuid::Uuid::new_v4().simple());
    c.request(
        "registerPushToken",
        json!({"platform": "fcm", "token": token}),
    )
    .await
    .unwrap();
    let group = create(&a, "mixed", &[bob, carol]).await.unwrap();
    next(&c, "groupUpdate").await;
    c.close().await;
    cloud.wait_offline(&carol.user_id, &carol.device_id).await;

    let mut seqs = vec![];
    for i in 0..3 {
        seqs.push(
            send(&a, &group, &format!("m{i}"), &format!("secret-{i}"))
                .await
                .unwrap()["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    for _ in 0..3 {
        next(&b, "message").await;
    }
    let pushes = eventually("three pushes for the offline member", WAIT, async || {
        let mine = cloud.pushes_mentioning(&group).await;
        (mine.len() >= 3).then_some(mine)
    })
    .await;
    assert_eq!(
        pushes.len(),
        3,
        "one per message, none for the online member"
    );
    for p in &pushes {
        assert!(
            !p["message"].as_str().unwrap().contains("secret"),
            "no content in a push"
        );
    }

    // Back: listSessions shows the group and how far it goes; readNewMessages returns it all.
    let c = connect(cloud, carol).await;
    let listed = c.request("listSessions", json!({})).await.unwrap();
    let entry = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == group.as_str())
        .expect("the group is listed")
        .clone();
    assert_eq!(entry["type"], "group");
    assert_eq!(entry["lastSeq"].as_u64(), seqs.last().copied());
    let texts: Vec<_> = read_all(&c, &group)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m["type"] == "text")
        .map(|m| m["payload"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, vec!["secret-0", "secret-1", "secret-2"]);
}

#[tokio::test]
async fn the_aggregate_status_moves_only_when_the_last_member_acks() {
    let cloud = TestCloud::shared();
    let p = users(cloud, 4).await;
    let s: Vec<Session> = stream::iter(&p)
        .map(|m| connect(cloud, m))
        .buffered(4)
        .collect()
        .await;
    let group = create(&s[0], "ticks", &[&p[1], &p[2], &p[3]])
        .await
        .unwrap();
    let msg = send(&s[0], &group, "tick", "ct").await.unwrap();
    let id = msg["msgId"].as_str().unwrap().to_owned();
    let status = || async {
        s[0].request("getMessageStatus", json!({ "msgId": id }))
            .await
            .unwrap()
    };
    assert_eq!(status().await["status"], "sent");
    for kind in ["delivered", "read"] {
        for (i, member) in s.iter().enumerate().skip(1) {
            let before = status().await["status"].clone();
            member
                .request(
                    "ackMessages",
                    json!({"sessionId": group, "msgId": id, "status": kind}),
                )
                .await
                .unwrap();
            let now = status().await;
            let mine = now["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["userId"] == p[i].user_id.as_str())
                .unwrap()
                .clone();
            assert_eq!(mine["status"], kind);
            if i < 3 {
                assert_eq!(now["status"], before, "not every member has acked {kind}");
            } else {
                assert_eq!(
                    now["status"], kind,
                    "the last member's ack moves the aggregate"
                );
            }
            // The sender's device sees each member's receipt live.
            let e = next(&s[0], "status").await;
            assert_eq!(
                (e["userId"].as_str(), e["status"].as_str()),
                (Some(p[i].user_id.as_str()), Some(kind))
            );
        }
    }
    assert_eq!(status().await["recipients"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_group_requests_get_clear_errors() {
    let cloud = TestCloud::shared();
    let p = users(cloud, 2).await;
    let a = connect(cloud, &p[0]).await;
    let create_raw = |v: Value| a.request("initiateGroupChatSession", v);
    assert_eq!(
        code(create_raw(json!({"name": "solo", "members": []})).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(create_raw(json!({"name": "me", "members": [p[0].user_id]})).await),
        Some(ErrorCode::BadRequest),
        "the creator alone is not a group"
    );
    assert_eq!(
        code(create_raw(json!({"name": " ", "members": [p[1].user_id]})).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(create_raw(json!({"name": "x", "members": "nope"})).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(create_raw(json!({"name": "ghost", "members": ["u_doesnotexist"]})).await),
        Some(ErrorCode::NotFound)
    );
    let too_many: Vec<String> = (0..257).map(|i| format!("u_fake{i}")).collect();
    assert_eq!(
        code(create_raw(json!({"name": "big", "members": too_many})).await),
        Some(ErrorCode::LimitExceeded),
        "258 members in all"
    );
    let group = create(&a, "ok", &[&p[1]]).await.unwrap();
    assert_eq!(
        code(
            a.request(
                "sendMessage",
                json!({"sessionId": group, "clientMsgId": "s", "type": "system", "payload": "{}"})
            )
            .await
        ),
        Some(ErrorCode::BadRequest),
        "only the server writes system messages"
    );
    assert_eq!(
        code(
            a.request("getGroup", json!({"groupId": "g_doesnotexist"}))
                .await
        ),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(a.request("getGroup", json!({"groupId": 5})).await),
        Some(ErrorCode::BadRequest)
    );
    // The connection is still usable.
    assert_eq!(
        a.request("getGroup", json!({"groupId": group}))
            .await
            .unwrap()["name"],
        "ok"
    );
}

#[tokio::test]
async fn a_member_who_moves_to_a_new_phone_gets_its_groups_back() {
    use courier_core::protocol::{DeviceInfo, Platform};
    let cloud = TestCloud::shared();
    let phone = courier_tests::fresh_phone();
    let device = || DeviceInfo {
        name: "phone".into(),
        platform: Platform::Android,
    };
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let old = cloud
        .accounts()
        .verify(&phone, &code, device())
        .await
        .unwrap();
    let p = users(cloud, 2).await;
    let a = connect(cloud, &p[0]).await;
    let g1 = create(&a, "one", &[&old, &p[1]]).await.unwrap();
    let g2 = create(&a, "two", &[&old]).await.unwrap();
    send(&a, &g2, "hello-again", "ct").await.unwrap();

    // The same number verified on a new phone: same user, new device and key.
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let new = cloud
        .accounts()
        .verify(&phone, &code, device())
        .await
        .unwrap();
    assert_eq!(new.user_id, old.user_id);
    let s = connect(cloud, &new).await;
    let listed = s.request("listSessions", json!({})).await.unwrap();
    let mut groups: Vec<_> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["type"] == "group")
        .map(|x| x["sessionId"].as_str().unwrap().to_owned())
        .collect();
    groups.sort();
    let mut want = vec![g1, g2.clone()];
    want.sort();
    assert_eq!(groups, want, "both groups, found through the index by user");
    let texts: Vec<_> = read_all(&s, &g2)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m["type"] == "text")
        .collect();
    assert_eq!(texts.len(), 1);
}
