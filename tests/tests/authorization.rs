//! The authorization matrix: one table of (action, role) -> the exact outcome, run on the local
//! cloud. Roles, around a group G that admin A created with member M:
//! - `admin` (A), `member` (M), `removed` (R: was a member, removed by A), `stranger` (N: never
//!   a member), and for per-user resources `other user` (N acting on M's things);
//! - `revoked device` (the old phone of a number moved to a new one) and `deleted account`: their
//!   keys no longer open a connection (401), so no action is reachable with them at all.
//!
//! Every cell names the expected result: `Ok` or the protocol error code. Read-only and refused
//! actions run first; the state-changing allowed ones (promote, remove, delete) run last, in an
//! order that keeps the others' preconditions.

use courier_client::{ClientError, ConnectError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::{Credentials, DeviceInfo, Platform};
use courier_tests::{TestCloud, connect, fresh_phone};
use serde_json::{Value, json};

/// What a cell expects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Ok,
    Err(ErrorCode),
}
use Outcome::*;

const FORBIDDEN: Outcome = Err(ErrorCode::Forbidden);
const NOT_FOUND: Outcome = Err(ErrorCode::NotFound);

fn outcome(r: &Result<Value, ClientError>) -> Option<Outcome> {
    match r {
        Result::Ok(_) => Some(Ok),
        Result::Err(e) => e.code().map(Err),
    }
}

async fn sign_up_with_phone(cloud: &TestCloud, phone: &str) -> Credentials {
    cloud
        .accounts()
        .register(phone)
        .await
        .expect("code requested");
    let code = cloud.code_for(phone).await.expect("code");
    cloud
        .accounts()
        .verify(
            phone,
            &code,
            DeviceInfo {
                name: "phone".into(),
                platform: Platform::Android,
            },
        )
        .await
        .expect("verified")
}

struct World {
    group: String,
    direct: String,
    group_msg: String,
    direct_msg: String,
    m_device: String,
    a_status: String,
    m_media: String,
}

async fn send(s: &Session, session: &str, cmid: &str) -> String {
    let data =
        json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": "eA=="});
    s.request("sendMessage", data).await.unwrap()["msgId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn check(
    failures: &mut Vec<String>,
    who: (&str, &Session),
    action: &str,
    data: Value,
    expected: Outcome,
) {
    let got = outcome(&who.1.request(action, data.clone()).await);
    if got != Some(expected) {
        failures.push(format!(
            "{action} {data} as {}: expected {expected:?}, got {got:?}",
            who.0
        ));
    }
}

#[tokio::test]
async fn every_action_gives_each_role_exactly_what_it_may() {
    let cloud = TestCloud::shared();
    let (a, m, r, n, x) = (
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
        cloud.sign_up().await,
    );
    let (sa, sm, sr, sn) = (
        connect(cloud, &a).await,
        connect(cloud, &m).await,
        connect(cloud, &r).await,
        connect(cloud, &n).await,
    );

    // The world the matrix acts on.
    let group = sa
        .request(
            "initiateGroupChatSession",
            json!({"name": "matrix", "members": [m.user_id, r.user_id]}),
        )
        .await
        .unwrap()["groupId"]
        .as_str()
        .unwrap()
        .to_owned();
    let direct = sa
        .request(
            "initiateDirectChatSession",
            json!({"peerUserId": m.user_id}),
        )
        .await
        .unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let group_msg = send(&sa, &group, "g-setup").await;
    let direct_msg = send(&sa, &direct, "d-setup").await;
    sa.request(
        "removeUserFromGroup",
        json!({"groupId": group, "userId": r.user_id}),
    )
    .await
    .expect("A removes R");
    let a_status = sa
        .request("postStatus", json!({"payload": "c3RhdHVz"}))
        .await
        .unwrap()["statusId"]
        .as_str()
        .unwrap()
        .to_owned();
    let m_media = sm
        .request(
            "createMediaUpload",
            json!({"contentType": "application/octet-stream", "size": 16}),
        )
        .await
        .unwrap()["mediaId"]
        .as_str()
        .unwrap()
        .to_owned();
    let w = World {
        group,
        direct,
        group_msg,
        direct_msg,
        m_device: m.device_id.clone(),
        a_status,
        m_media,
    };

    let roles: [(&str, &Session); 4] = [
        ("admin", &sa),
        ("member", &sm),
        ("removed", &sr),
        ("stranger", &sn),
    ];
    let mut failures = Vec::new();

    // Group and message actions that change nothing (or only the caller's own watermark):
    // members may, a removed member and a stranger may not.
    let member_only = [Ok, Ok, FORBIDDEN, FORBIDDEN];
    let group_reads: Vec<(&str, Value)> = vec![
        ("getGroup", json!({"groupId": w.group})),
        ("readNewMessages", json!({"sessionId": w.group})),
        (
            "ackMessages",
            json!({"sessionId": w.group, "msgId": w.group_msg, "status": "delivered"}),
        ),
        ("getMessageStatus", json!({"msgId": w.group_msg})),
    ];
    for (action, data) in &group_reads {
        for (role, expected) in roles.iter().zip(member_only) {
            check(&mut failures, *role, action, data.clone(), expected).await;
        }
    }
    for (i, (role, expected)) in roles.iter().zip(member_only).enumerate() {
        let data = json!({"sessionId": w.group, "clientMsgId": format!("m-{i}"), "type": "text", "payload": "eA=="});
        check(&mut failures, *role, "sendMessage", data, expected).await;
    }
    // Admin-only actions, as a member, a removed member and a stranger.
    let admin_only: Vec<(&str, Value)> = vec![
        (
            "addUserToGroup",
            json!({"groupId": w.group, "userId": x.user_id}),
        ),
        (
            "promoteUserToAdmin",
            json!({"groupId": w.group, "userId": m.user_id}),
        ),
        (
            "removeUserFromGroup",
            json!({"groupId": w.group, "userId": a.user_id}),
        ),
        ("deleteGroup", json!({"groupId": w.group})),
    ];
    for (action, data) in &admin_only {
        for role in &roles[1..] {
            check(&mut failures, *role, action, data.clone(), FORBIDDEN).await;
        }
    }
    // The direct chat of A and M: theirs alone.
    let direct_reads: Vec<(&str, Value)> = vec![
        ("readNewMessages", json!({"sessionId": w.direct})),
        (
            "ackMessages",
            json!({"sessionId": w.direct, "msgId": w.direct_msg, "status": "read"}),
        ),
        ("getMessageStatus", json!({"msgId": w.direct_msg})),
        (
            "sendMessage",
            json!({"sessionId": w.direct, "clientMsgId": "d-x", "type": "text", "payload": "eA=="}),
        ),
    ];
    for (action, data) in &direct_reads {
        for (role, expected) in [(roles[1], Ok), (roles[2], FORBIDDEN), (roles[3], FORBIDDEN)] {
            check(&mut failures, role, action, data.clone(), expected).await;
        }
    }
    // Other users' things: M's device, A's status viewers, M's media.
    check(
        &mut failures,
        roles[3],
        "removeDevice",
        json!({"deviceId": w.m_device}),
        FORBIDDEN,
    )
    .await;
    check(
        &mut failures,
        roles[1],
        "getStatusViewers",
        json!({"statusId": w.a_status}),
        NOT_FOUND,
    )
    .await;
    check(
        &mut failures,
        roles[0],
        "getStatusViewers",
        json!({"statusId": w.a_status}),
        Ok,
    )
    .await;
    check(
        &mut failures,
        roles[1],
        "removeStatus",
        json!({"statusId": w.a_status}),
        NOT_FOUND,
    )
    .await;
    check(
        &mut failures,
        roles[3],
        "getMediaDownload",
        json!({"mediaId": w.m_media}),
        FORBIDDEN,
    )
    .await;

    // The state-changing allowed cells, last: the admin adds X and promotes M; M, now admin,
    // removes X; a member leaves on its own; then A deletes the group, after which every role
    // gets NOT_FOUND.
    check(
        &mut failures,
        roles[0],
        "addUserToGroup",
        admin_only[0].1.clone(),
        Ok,
    )
    .await;
    check(
        &mut failures,
        roles[0],
        "promoteUserToAdmin",
        admin_only[1].1.clone(),
        Ok,
    )
    .await;
    check(
        &mut failures,
        roles[1],
        "removeUserFromGroup",
        json!({"groupId": w.group, "userId": x.user_id}),
        Ok,
    )
    .await;
    check(
        &mut failures,
        roles[0],
        "deleteGroup",
        admin_only[3].1.clone(),
        Ok,
    )
    .await;
    for role in &roles {
        check(
            &mut failures,
            *role,
            "getGroup",
            json!({"groupId": w.group}),
            NOT_FOUND,
        )
        .await;
    }

    // A revoked device (its number moved to a new phone) and a deleted account: their keys no
    // longer open a connection, so no action is reachable; the live connection of the deleted
    // account is closed.
    let phone = fresh_phone();
    let old = sign_up_with_phone(cloud, &phone).await;
    let _new = sign_up_with_phone(cloud, &phone).await;
    match Session::connect(&cloud.ws_url, &old.api_key).await {
        Result::Err(ConnectError::Refused(401)) => {}
        other => failures.push(format!("revoked device connects: {:?}", other.map(|_| ()))),
    }
    sn.request("deleteAccount", json!({}))
        .await
        .expect("N deletes its account");
    match Session::connect(&cloud.ws_url, &n.api_key).await {
        Result::Err(ConnectError::Refused(401)) => {}
        other => failures.push(format!("deleted account connects: {:?}", other.map(|_| ()))),
    }

    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
