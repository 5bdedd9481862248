//! The authorization matrix: one table of (action, role) -> the exact outcome, run on the local
//! cloud, covering every WebSocket action of the protocol (and the link poll). Roles, around a
//! group G that admin A created with member M:
//! - `admin` (A), `member` (M), `removed` (R: was a member, removed by A), `stranger` (N: never
//!   a member, in nobody's contacts), `late member` (X: added to G after its first messages),
//!   and for per-user resources `other user` (anyone acting on M's things: its devices, device
//!   queue, keys, settings, profile, media, backups);
//! - `M's companion`: a device linked to M's account (not its primary); `R's companion` likewise;
//! - contacts: M lists A (so A sees what M shows to `contacts`), A lists M (A's statuses are for
//!   contacts), X lists A and lets only contacts add it to groups;
//! - `revoked device` (the old phone of a number moved to a new one), a removed companion and a
//!   `deleted account`: their open connection is closed and their key no longer opens one
//!   (401), so no action is reachable with them at all.
//!
//! Every cell names the expected result: `Ok`, the protocol error code, `Ok` with a check of
//! what the result shows (`Has` a value, `Lacks` a withheld field, `Hides` another user's id or
//! data), or `Gone` (the connection was closed). Per-user actions take no owner in their
//! request: the server acts on the caller's own account and device, so a request naming another
//! user's ids (extra fields) must still touch only the caller's own things; those cells check
//! exactly that. Cells marked LOOSE assert what the server does today where a stricter answer
//! is arguable. Read-only and refused actions run first; the state-changing allowed ones run
//! last, in an order that keeps the others' preconditions. Every wrong cell is reported at once.

use courier_client::accounts::LinkPoll;
use courier_client::{ClientError, ConnectError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::{Credentials, DeviceInfo, Platform};
use courier_tests::{TestCloud, connect, fresh_phone, open_group};
use serde_json::{Value, json};

/// What a cell expects.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok,
    Err(ErrorCode),
    /// Ok, and the result holds this value at this JSON pointer.
    Has(&'static str, Value),
    /// Ok, and the result has nothing at this JSON pointer (a field withheld from the caller).
    Lacks(&'static str),
    /// Ok, and the result nowhere mentions this string (another user's id or data).
    Hides(String),
    /// No reply: the server closed the caller's connection (its device or account is gone).
    Gone,
}
use Outcome::*;

const FORBIDDEN: Outcome = Err(ErrorCode::Forbidden);
const NOT_FOUND: Outcome = Err(ErrorCode::NotFound);
const BAD_REQUEST: Outcome = Err(ErrorCode::BadRequest);
/// How long a connection that must be closed is given to close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a cell waits for its reply.
const REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// What is wrong with a reply, if anything.
fn judge(r: &Result<Value, ClientError>, expected: &Outcome) -> Option<String> {
    let v = match (r, expected) {
        (Result::Err(e), Err(code)) if e.code() == Some(*code) => return None,
        (Result::Err(ClientError::Transport(_) | ClientError::Closed), Gone) => return None,
        (Result::Err(e), _) => return Some(format!("got {:?} ({e})", e.code())),
        (Result::Ok(v), Err(_)) => return Some(format!("got Ok {v}")),
        (Result::Ok(v), _) => v,
    };
    let wrong = match expected {
        Has(p, want) => v.pointer(p) != Some(want),
        Lacks(p) => v.pointer(p).is_some(),
        Hides(s) => v.to_string().contains(s.as_str()),
        Gone => true,
        Ok | Err(_) => false,
    };
    wrong.then(|| format!("got Ok {v}"))
}

/// One cell of the table: who (a role and its connection), the action, its params, and the
/// outcome expected.
type Row<'a> = ((&'a str, &'a Session), &'a str, Value, Outcome);

/// The table's run: every wrong cell, and how many cells were checked.
#[derive(Default)]
struct Matrix {
    failures: Vec<String>,
    cells: usize,
}

impl Matrix {
    /// One cell: `who` does `action`; returns the result, when there is one.
    async fn check(
        &mut self,
        who: (&str, &Session),
        action: &str,
        data: Value,
        expected: Outcome,
    ) -> Option<Value> {
        self.cells += 1;
        if expected == Gone {
            // The server may close it just after its last reply: give it a moment.
            let _ = tokio::time::timeout(CLOSE_WAIT, who.1.closed()).await;
        }
        let r = who
            .1
            .request_with_timeout(action, data.clone(), REPLY_WAIT)
            .await;
        if let Some(wrong) = judge(&r, &expected) {
            self.failures.push(format!(
                "{action} {data} as {}: expected {expected:?}, {wrong}",
                who.0
            ));
        }
        r.ok()
    }

    /// Cells run in order, one row each: (who, action, params, expected outcome).
    async fn rows(&mut self, rows: Vec<Row<'_>>) {
        for (who, action, data, expected) in rows {
            self.check(who, action, data, expected).await;
        }
    }

    /// A cell that is a fact about stored state, read back after an action.
    fn fact(&mut self, what: &str, holds: bool) {
        self.cells += 1;
        if !holds {
            self.failures.push(format!("expected: {what}"));
        }
    }

    /// A key that must not open a connection (any more).
    async fn refused(&mut self, cloud: &TestCloud, what: &str, api_key: &str) {
        self.cells += 1;
        match Session::connect(&cloud.ws_url, api_key).await {
            Result::Err(ConnectError::Refused(401)) => {}
            other => self
                .failures
                .push(format!("{what} connects: {:?}", other.map(|_| ()))),
        }
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
    /// M's upload that never happened (created, not uploaded, sent nowhere).
    m_media: String,
    /// M's media sent in the group (before R was removed).
    m_group_media: String,
    /// M's media sent in A and M's direct chat.
    m_direct_media: String,
    /// A's media on A's status (for A's contacts).
    a_status_media: String,
    /// M's uploaded backup.
    m_backup: String,
}

async fn send(s: &Session, session: &str, cmid: &str) -> String {
    let data =
        json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": "eA=="});
    s.request("sendMessage", data).await.unwrap()["msgId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// PUTs `size` bytes to a presigned upload (`uploadUrl`, `uploadHeaders`).
async fn put(target: &Value, size: usize) {
    let mut req = reqwest::Client::new()
        .put(target["uploadUrl"].as_str().unwrap())
        .body(vec![7u8; size]);
    for (k, v) in target["uploadHeaders"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "upload: {}", res.status());
}

/// Uploaded media of `s`'s user (16 bytes).
async fn media(s: &Session) -> String {
    let up = s
        .request(
            "createMediaUpload",
            json!({"contentType": "application/octet-stream", "size": 16}),
        )
        .await
        .unwrap();
    put(&up, 16).await;
    up["mediaId"].as_str().unwrap().to_owned()
}

/// A public key's shape: 43 characters of unpadded base64.
fn key(c: char) -> String {
    c.to_string().repeat(43)
}

fn signed(id: &str, c: char) -> Value {
    json!({"keyId": id, "key": key(c), "signature": "S".repeat(86)})
}

/// A link request of a new device: `(linkId, code)`.
async fn link_request(cloud: &TestCloud, name: &str) -> (String, String) {
    let l = cloud
        .accounts()
        .request_link(DeviceInfo {
            name: name.into(),
            platform: Platform::Web,
        })
        .await
        .expect("link requested");
    (l.link_id, l.code)
}

/// The credentials an approved link hands out.
async fn linked(cloud: &TestCloud, link_id: &str) -> Credentials {
    match cloud.accounts().poll_link(link_id).await {
        Result::Ok(LinkPoll::Approved(c)) => c,
        other => panic!("link {link_id} not approved: {other:?}"),
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
    let (sa, sm, sr, sn, sx) = (
        connect(cloud, &a).await,
        connect(cloud, &m).await,
        connect(cloud, &r).await,
        connect(cloud, &n).await,
        connect(cloud, &x).await,
    );

    // Privacy and contacts: M shows its photo and last seen to contacts (A), its about to
    // nobody; A's statuses are for contacts (M); X may be added to groups by contacts (A) only.
    sm.request(
        "updateSettings",
        json!({"display": {"name": "Em", "about": "about m", "avatar": "m_avatar"},
               "privacy": {"about": "nobody", "profilePhoto": "contacts", "lastSeen": "contacts"}}),
    )
    .await
    .unwrap();
    sm.request("updateContacts", json!({"add": [a.user_id]}))
        .await
        .unwrap();
    sa.request("updateSettings", json!({"privacy": {"status": "contacts"}}))
        .await
        .unwrap();
    sa.request("updateContacts", json!({"add": [m.user_id]}))
        .await
        .unwrap();
    sx.request(
        "updateSettings",
        json!({"privacy": {"groupsAdd": "contacts"}}),
    )
    .await
    .unwrap();
    sx.request("updateContacts", json!({"add": [a.user_id]}))
        .await
        .unwrap();

    // The world the matrix acts on.
    let group = open_group(&sa, "matrix", &[&m.user_id, &r.user_id]).await;
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
    let m_group_media = media(&sm).await;
    let m_direct_media = media(&sm).await;
    for (session, id, cmid) in [
        (&group, &m_group_media, "g-media"),
        (&direct, &m_direct_media, "d-media"),
    ] {
        sm.request(
            "sendMessage",
            json!({"sessionId": session, "clientMsgId": cmid, "type": "media",
                   "payload": "eA==", "attachments": [id]}),
        )
        .await
        .expect("M sends its media");
    }
    sa.request(
        "removeUserFromGroup",
        json!({"groupId": group, "userId": r.user_id}),
    )
    .await
    .expect("A removes R");
    let a_status_media = media(&sa).await;
    let a_status = sa
        .request(
            "postStatus",
            json!({"payload": "c3RhdHVz", "attachments": [a_status_media]}),
        )
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
    let backup = sm
        .request("createBackup", json!({"size": 16}))
        .await
        .unwrap();
    put(&backup, 16).await;
    let w = World {
        group,
        direct,
        group_msg,
        direct_msg,
        m_device: m.device_id.clone(),
        a_status,
        m_media,
        m_group_media,
        m_direct_media,
        a_status_media,
        m_backup: backup["backupId"].as_str().unwrap().to_owned(),
    };

    let roles: [(&str, &Session); 4] = [
        ("admin", &sa),
        ("member", &sm),
        ("removed", &sr),
        ("stranger", &sn),
    ];
    let [admin, member, removed, stranger] = roles;
    let mut t = Matrix::default();

    // Group and message actions that change nothing (or only the caller's own watermark):
    // members may, a removed member and a stranger may not. Outsiders get NOT_FOUND, as for a
    // session that does not exist: no answer tells them the session is there (issue 21, item 6).
    let member_only = [Ok, Ok, NOT_FOUND, NOT_FOUND];
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
        for (role, expected) in roles.iter().zip(member_only.clone()) {
            t.check(*role, action, data.clone(), expected).await;
        }
    }
    for (i, (role, expected)) in roles.iter().zip(member_only.clone()).enumerate() {
        let data = json!({"sessionId": w.group, "clientMsgId": format!("m-{i}"), "type": "text", "payload": "eA=="});
        t.check(*role, "sendMessage", data, expected).await;
    }
    // Typing notices: members only. Deleting for everyone: the sender only (A sent the group's
    // message: M, who can read it, is refused; outsiders are told nothing).
    for (role, expected) in roles.iter().zip(member_only.clone()) {
        let data = json!({"sessionId": w.group, "typing": true});
        t.check(*role, "sendTyping", data, expected).await;
    }
    for (role, expected) in [
        (member, FORBIDDEN),
        (removed, NOT_FOUND),
        (stranger, NOT_FOUND),
    ] {
        let data = json!({"sessionId": w.group, "msgId": w.group_msg});
        t.check(role, "deleteMessage", data, expected).await;
    }
    // Reports carry only the reported user's own messages in the reporter's chats: M may not
    // pin A's group message on R, and N, outside the group, cannot attach it at all. Blocking
    // oneself is refused. (These refusals change nothing; a report that is filed blocks, so the
    // allowed case is in blocking.rs.)
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "reportUser", json!({"userId": r.user_id, "messages": [{"msgId": w.group_msg, "text": "x"}]}), BAD_REQUEST),
        (stranger, "reportUser", json!({"userId": a.user_id, "messages": [{"msgId": w.group_msg, "text": "x"}]}), NOT_FOUND),
        (removed, "reportUser", json!({"userId": a.user_id, "messages": [{"msgId": w.group_msg, "text": "x"}]}), NOT_FOUND),
        (member, "blockUser", json!({"userId": m.user_id}), BAD_REQUEST),
        (member, "listBlocked", json!({}), Has("/userIds", json!([]))),
    ];
    t.rows(rows).await;
    // Only members are in a session's list: the group and A and M's chat are not in R's or N's.
    t.check(member, "listSessions", json!({}), Ok).await;
    for role in [removed, stranger] {
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (role, "listSessions", json!({}), Hides(w.group.clone())),
            (role, "listSessions", json!({}), Hides(w.direct.clone())),
        ];
        t.rows(rows).await;
    }
    // Admin-only actions, as a member (FORBIDDEN: it knows the group), a removed member and a
    // stranger (NOT_FOUND, as for any session they are not in).
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
        (
            "setDisappearingTimer",
            json!({"sessionId": w.group, "seconds": 86_400}),
        ),
    ];
    for (action, data) in &admin_only {
        for (role, expected) in [
            (member, FORBIDDEN),
            (removed, NOT_FOUND),
            (stranger, NOT_FOUND),
        ] {
            t.check(role, action, data.clone(), expected).await;
        }
    }
    // Outsiders can neither join nor "leave" (leaving is for members).
    for (role, user) in [(removed, &r.user_id), (stranger, &n.user_id)] {
        let data = json!({"groupId": w.group, "userId": user});
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (role, "addUserToGroup", data.clone(), NOT_FOUND),
            (role, "removeUserFromGroup", data, NOT_FOUND),
        ];
        t.rows(rows).await;
    }
    // Who may put X (groupsAdd: contacts, contacts [A]) in a group: A only.
    for (role, expected) in [(admin, Ok), (member, FORBIDDEN), (stranger, FORBIDDEN)] {
        let data = json!({"name": "with x", "members": [x.user_id]});
        t.check(role, "initiateGroupChatSession", data, expected)
            .await;
    }
    // M (groupsAdd: everyone) may be put in a group, or sent a direct chat, by anyone.
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (stranger, "initiateGroupChatSession", json!({"name": "with m", "members": [m.user_id]}), Ok),
        (stranger, "initiateDirectChatSession", json!({"peerUserId": m.user_id}), Ok),
        (stranger, "initiateDirectChatSession", json!({"peerUserId": n.user_id}), BAD_REQUEST),
        (stranger, "initiateDirectChatSession", json!({"peerUserId": "u_nobody"}), NOT_FOUND),
        (stranger, "lookupUser", json!({"phone": fresh_phone()}), NOT_FOUND),
    ];
    t.rows(rows).await;
    // The direct chat of A and M: theirs alone.
    let direct_reads: Vec<(&str, Value)> = vec![
        ("readNewMessages", json!({"sessionId": w.direct})),
        (
            "ackMessages",
            json!({"sessionId": w.direct, "msgId": w.direct_msg, "status": "read"}),
        ),
        ("getMessageStatus", json!({"msgId": w.direct_msg})),
        (
            "sendTyping",
            json!({"sessionId": w.direct, "typing": false}),
        ),
        (
            "sendMessage",
            json!({"sessionId": w.direct, "clientMsgId": "d-x", "type": "text", "payload": "eA=="}),
        ),
        // Either member of a direct chat sets its timer (0: as it is, so nothing changes).
        (
            "setDisappearingTimer",
            json!({"sessionId": w.direct, "seconds": 0}),
        ),
    ];
    for (action, data) in &direct_reads {
        for (role, expected) in [(member, Ok), (removed, NOT_FOUND), (stranger, NOT_FOUND)] {
            t.check(role, action, data.clone(), expected).await;
        }
    }
    for (role, expected) in [
        (member, FORBIDDEN),
        (removed, NOT_FOUND),
        (stranger, NOT_FOUND),
    ] {
        let data = json!({"sessionId": w.direct, "msgId": w.direct_msg});
        t.check(role, "deleteMessage", data, expected).await;
    }

    // Statuses: A's (privacy.status: contacts) are visible to A and its contact M only; a
    // status id names only the caller's own.
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (admin, "viewStatus", json!({"userId": a.user_id}), Has("/statuses/0/statusId", json!(w.a_status))),
        (member, "viewStatus", json!({"userId": a.user_id}), Has("/statuses/0/statusId", json!(w.a_status))),
    ];
    t.rows(rows).await;
    for role in [removed, stranger] {
        let data = json!({"userId": a.user_id});
        t.check(role, "viewStatus", data, Has("/statuses", json!([])))
            .await;
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "getStatusViewers", json!({"statusId": w.a_status}), NOT_FOUND),
        (admin, "getStatusViewers", json!({"statusId": w.a_status}), Has("/viewers/0/userId", json!(m.user_id))),
        (member, "removeStatus", json!({"statusId": w.a_status}), NOT_FOUND),
        (admin, "getStatusAudience", json!({}), Has("/userIds", json!([m.user_id]))),
        (stranger, "getStatusAudience", json!({"userId": a.user_id}), Has("/userIds", json!([]))),
    ];
    t.rows(rows).await;

    // Media: the uploader, members of a session it was sent to, and those who may see a live
    // status it is on; nobody else. Attaching is for the uploader only.
    let downloads: Vec<(&String, [Outcome; 4])> = vec![
        (&w.m_group_media, [Ok, Ok, FORBIDDEN, FORBIDDEN]),
        (&w.m_direct_media, [Ok, Ok, FORBIDDEN, FORBIDDEN]),
        (&w.a_status_media, [Ok, Ok, FORBIDDEN, FORBIDDEN]),
        (&w.m_media, [FORBIDDEN, NOT_FOUND, FORBIDDEN, FORBIDDEN]),
    ];
    for (id, expected) in downloads {
        for (role, expected) in roles.iter().zip(expected) {
            let data = json!({"mediaId": id});
            t.check(*role, "getMediaDownload", data, expected).await;
        }
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (admin, "sendMessage", json!({"sessionId": w.group, "clientMsgId": "fwd", "type": "media", "payload": "eA==", "attachments": [w.m_group_media]}), FORBIDDEN),
        (admin, "postStatus", json!({"payload": "eA==", "attachments": [w.m_group_media]}), FORBIDDEN),
    ];
    t.rows(rows).await;
    // Uploading and posting are the caller's own: a status naming A is the stranger's.
    let upload = json!({"contentType": "application/octet-stream", "size": 16});
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (stranger, "createMediaUpload", upload, Ok),
        (stranger, "postStatus", json!({"payload": "eA==", "userId": a.user_id}), Ok),
        (admin, "viewStatus", json!({"userId": a.user_id}), Lacks("/statuses/1")),
    ];
    t.rows(rows).await;

    // The key directory. Keys go to the caller's own device whatever ids the request names;
    // any user may list devices and claim one-time keys (each once), only the owner sees its
    // one-time key count.
    let m_keys = json!({"identityKey": key('M'), "signingKey": key('m'),
        "oneTimeKeys": [signed("m1", 'a'), signed("m2", 'b')], "fallbackKey": signed("mf", 'c')});
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "uploadKeys", m_keys, Has("/oneTimeKeyCount", json!(2))),
        (stranger, "uploadKeys", json!({"userId": m.user_id, "deviceId": w.m_device, "identityKey": key('N'), "signingKey": key('n'), "oneTimeKeys": [signed("n1", 'd')]}), Has("/oneTimeKeyCount", json!(1))),
    ];
    t.rows(rows).await;
    let m_list = json!({"userIds": [m.user_id]});
    for role in [admin, stranger] {
        let id_key = Has("/devices/0/identityKey", json!(key('M')));
        t.check(role, "listDevices", m_list.clone(), id_key).await;
        let count = Lacks("/devices/0/oneTimeKeyCount");
        t.check(role, "listDevices", m_list.clone(), count).await;
        // A device's name is its owner's (issue 21, item 8).
        let name = Lacks("/devices/0/name");
        t.check(role, "listDevices", m_list.clone(), name).await;
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "listDevices", m_list.clone(), Has("/devices/0/oneTimeKeyCount", json!(2))),
        (stranger, "listDevices", json!({"userIds": [n.user_id]}), Has("/devices/0/identityKey", json!(key('N')))),
    ];
    t.rows(rows).await;
    let claim = json!({"userId": m.user_id});
    let mut claimed = Vec::new();
    for role in [stranger, removed] {
        let got = t
            .check(
                role,
                "claimKeys",
                claim.clone(),
                Has("/devices/0/fallback", json!(false)),
            )
            .await;
        claimed.push(got.and_then(|v| v.pointer("/devices/0/oneTimeKey/keyId").cloned()));
    }
    t.cells += 1;
    if claimed[0].is_none() || claimed[0] == claimed[1] {
        t.failures
            .push(format!("claimKeys: one-time keys handed out {claimed:?}"));
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (admin, "claimKeys", claim.clone(), Has("/devices/0/oneTimeKey/keyId", json!("mf"))),
        (member, "listDevices", m_list.clone(), Has("/devices/0/oneTimeKeyCount", json!(0))),
        (stranger, "claimKeys", json!({"userId": m.user_id, "deviceIds": [n.device_id]}), Has("/devices", json!([]))),
        (stranger, "claimKeys", json!({"userId": "u_nobody"}), NOT_FOUND),
    ];
    t.rows(rows).await;

    // Linking: only a primary approves, a code once. A code names no account: the account
    // whose primary approves it gets the device.
    let (m_link, m_code) = link_request(cloud, "m companion").await;
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "approveDeviceLink", json!({"code": m_code}), Has("/name", json!("m companion"))),
        (stranger, "approveDeviceLink", json!({"code": m_code}), NOT_FOUND),
    ];
    t.rows(rows).await;
    let mc = linked(cloud, &m_link).await;
    t.cells += 1;
    if mc.user_id != m.user_id {
        t.failures
            .push(format!("M's approved link joined {} instead", mc.user_id));
    }
    t.cells += 1;
    match cloud.accounts().poll_link(&m_link).await {
        Result::Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
        other => t
            .failures
            .push(format!("second poll of an approved link: {other:?}")),
    }
    let smc = connect(cloud, &mc).await;
    let companion = ("M's companion", &smc);
    // A companion has its account's rights.
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (companion, "getGroup", json!({"groupId": w.group}), Ok),
        (companion, "readNewMessages", json!({"sessionId": w.direct}), Ok),
        // Only the phone deletes the account (as in WhatsApp); M's account lives on below.
        (companion, "deleteAccount", json!({}), FORBIDDEN),
    ];
    t.rows(rows).await;
    let (r_link, r_code) = link_request(cloud, "r companion").await;
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (companion, "approveDeviceLink", json!({"code": r_code}), FORBIDDEN),
        (removed, "approveDeviceLink", json!({"code": r_code}), Ok),
    ];
    t.rows(rows).await;
    let rc = linked(cloud, &r_link).await;
    t.cells += 1;
    if rc.user_id != r.user_id {
        t.failures
            .push(format!("R's approved link joined {} instead", rc.user_id));
    }
    let src = connect(cloud, &rc).await;
    let r_companion = ("R's companion", &src);
    t.check(
        r_companion,
        "getGroup",
        json!({"groupId": w.group}),
        // Not a member: told what a stranger is told.
        NOT_FOUND,
    )
    .await;

    // Device queues: anyone may queue for an existing device of anyone (a pair that does not
    // match is unknown); a device reads and acknowledges its own queue only.
    let queued = t
        .check(
            stranger,
            "sendToDevice",
            json!({"messages": [{"userId": m.user_id, "deviceId": w.m_device, "payload": "x"}]}),
            Has("/queued/0/deviceId", json!(w.m_device)),
        )
        .await;
    let q = queued
        .and_then(|v| v["queued"][0]["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "00000000000000000000000000".into());
    t.check(
        stranger,
        "sendToDevice",
        json!({"messages": [{"userId": m.user_id, "deviceId": a.device_id, "payload": "x"}]}),
        Has("/unknownDevices/0/deviceId", json!(a.device_id)),
    )
    .await;
    let other_queue = json!({"userId": m.user_id, "deviceId": w.m_device});
    for role in [admin, stranger, companion] {
        let data = other_queue.clone();
        t.check(role, "readDeviceMessages", data, Hides(q.clone()))
            .await;
        let ack = json!({"ids": [q], "userId": m.user_id, "deviceId": w.m_device});
        t.check(role, "ackDeviceMessages", ack, Has("/acked", json!(0)))
            .await;
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "readDeviceMessages", json!({}), Has("/messages/0/id", json!(q))),
        (member, "ackDeviceMessages", json!({"ids": [q]}), Has("/acked", json!(1))),
        // Settings and profile: a request naming M changes and shows the caller's own settings;
        // M's profile shows each field to whom its privacy allows (M: about nobody, photo and last
        // seen contacts; A is a contact).
        (stranger, "getSettings", json!({"userId": m.user_id}), Has("/display/name", Value::Null)),
        (stranger, "updateSettings", json!({"userId": m.user_id, "display": {"name": "pwned"}}), Has("/display/name", json!("pwned"))),
    ];
    t.rows(rows).await;
    // Two-step verification: the PIN actions act on the caller's own account whatever user a
    // request names; a companion never sets the first PIN, and changes or removes one only
    // with the current PIN (M has none: FORBIDDEN); checking needs a PIN to check.
    for (role, action, data, expected) in [
        (
            companion,
            "setRegistrationPin",
            json!({"pin": "135790"}),
            FORBIDDEN,
        ),
        (
            companion,
            "setRegistrationPin",
            json!({"pin": "135790", "currentPin": "246801"}),
            FORBIDDEN,
        ),
        (
            companion,
            "removeRegistrationPin",
            json!({"currentPin": "246801"}),
            FORBIDDEN,
        ),
        (
            companion,
            "checkRegistrationPin",
            json!({"pin": "246801"}),
            NOT_FOUND,
        ),
        (
            stranger,
            "checkRegistrationPin",
            json!({"pin": "246801", "userId": m.user_id}),
            NOT_FOUND,
        ),
        (
            stranger,
            "setRegistrationPin",
            json!({"pin": "135790", "userId": m.user_id}),
            Has("/pinEnabled", json!(true)),
        ),
        (
            stranger,
            "checkRegistrationPin",
            json!({"pin": "135790", "userId": m.user_id}),
            Has("/correct", json!(true)),
        ),
        (
            member,
            "getSettings",
            json!({}),
            Has("/registrationPin", json!(false)),
        ),
        (
            stranger,
            "removeRegistrationPin",
            json!({"userId": m.user_id}),
            Has("/pinEnabled", json!(false)),
        ),
    ] {
        t.check(role, action, data, expected).await;
    }
    // An avatar is an opaque reference: naming someone else's media shares nothing.
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (stranger, "updateSettings", json!({"display": {"avatar": w.m_group_media}}), Has("/display/avatar", json!(w.m_group_media))),
        (removed, "getProfile", json!({"userId": n.user_id}), Has("/avatar", json!(w.m_group_media))),
        (removed, "getMediaDownload", json!({"mediaId": w.m_group_media}), FORBIDDEN),
        (stranger, "updateContacts", json!({"userId": m.user_id, "add": [n.user_id]}), BAD_REQUEST),
    ];
    t.rows(rows).await;
    // A push token naming M's device registers the caller's own device: M's endpoint stays.
    member
        .1
        .request(
            "registerPushToken",
            json!({"platform": "apns", "token": format!("m-token-{}", m.device_id)}),
        )
        .await
        .expect("M registers a push token");
    let m_endpoint = cloud.push_endpoint(&m.user_id, &m.device_id).await;
    assert!(m_endpoint.is_some(), "M's device has a push endpoint");
    t.check(
        stranger,
        "registerPushToken",
        json!({"userId": m.user_id, "deviceId": w.m_device, "platform": "apns",
               "token": format!("n-token-{}", n.device_id)}),
        Ok,
    )
    .await;
    t.fact(
        "M's push endpoint is unchanged after N's registerPushToken naming it",
        cloud.push_endpoint(&m.user_id, &m.device_id).await == m_endpoint,
    );
    let n_endpoint = cloud.push_endpoint(&n.user_id, &n.device_id).await;
    t.fact(
        "N's registerPushToken registered N's own device",
        n_endpoint.is_some() && n_endpoint != m_endpoint,
    );
    if let Some(arn) = &m_endpoint {
        let token = cloud
            .sns()
            .get_endpoint_attributes()
            .endpoint_arn(arn)
            .send()
            .await
            .expect("M's endpoint exists")
            .attributes
            .unwrap_or_default()
            .remove("Token");
        t.fact(
            "M's SNS endpoint still carries M's token",
            token == Some(format!("m-token-{}", m.device_id)),
        );
    }
    let profile = json!({"userId": m.user_id});
    let profile_cells: Vec<((&str, &Session), Outcome)> = vec![
        (member, Has("/about", json!("about m"))),
        (member, Has("/online", json!(true))),
        (admin, Has("/name", json!("Em"))),
        (admin, Lacks("/about")),
        (admin, Has("/avatar", json!("m_avatar"))),
        (admin, Has("/online", json!(true))),
        (stranger, Has("/name", json!("Em"))),
        (stranger, Lacks("/about")),
        (stranger, Lacks("/avatar")),
        (stranger, Lacks("/online")),
        (stranger, Lacks("/lastSeen")),
        (removed, Lacks("/avatar")),
    ];
    for (role, expected) in profile_cells {
        t.check(role, "getProfile", profile.clone(), expected).await;
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (stranger, "getProfile", json!({"userId": "u_nobody"}), NOT_FOUND),
        // Backups: only the owner's account lists and downloads its backups; there is no action
        // that deletes one (deleteAccount deletes the caller's own).
        (member, "listBackups", json!({}), Has("/backups/0/backupId", json!(w.m_backup))),
        (stranger, "listBackups", json!({"userId": m.user_id}), Has("/backups", json!([]))),
    ];
    t.rows(rows).await;
    let m_backup = json!({"backupId": w.m_backup, "userId": m.user_id});
    for (role, expected) in [
        (member, Has("/backupId", json!(w.m_backup))),
        (companion, Has("/backupId", json!(w.m_backup))),
        (admin, NOT_FOUND),
        (removed, NOT_FOUND),
        (stranger, NOT_FOUND),
    ] {
        t.check(role, "getBackupDownload", m_backup.clone(), expected)
            .await;
    }
    let n_backup = t
        .check(
            stranger,
            "createBackup",
            json!({"userId": m.user_id, "size": 16}),
            Ok,
        )
        .await;
    if let Some(b) = &n_backup {
        put(b, 16).await;
        let n_backup = json!({"backupId": b["backupId"]});
        let id = b["backupId"].as_str().unwrap().to_owned();
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (member, "listBackups", json!({}), Hides(id.clone())),
            (member, "getBackupDownload", n_backup.clone(), NOT_FOUND),
            (stranger, "getBackupDownload", n_backup, Has("/backupId", json!(id))),
        ];
        t.rows(rows).await;
    }
    t.check(
        stranger,
        "deleteBackup",
        m_backup.clone(),
        Err(ErrorCode::UnknownAction),
    )
    .await;

    // Devices: only M's primary removes M's companion, a companion removes only itself, nobody
    // removes a primary.
    let mc_device = json!({"deviceId": mc.device_id});
    let m_primary = json!({"deviceId": w.m_device});
    for (role, data, expected) in [
        (stranger, m_primary.clone(), FORBIDDEN),
        (stranger, mc_device.clone(), FORBIDDEN),
        (admin, mc_device.clone(), FORBIDDEN),
        (r_companion, mc_device.clone(), FORBIDDEN),
        (companion, m_primary.clone(), FORBIDDEN),
        (member, m_primary.clone(), FORBIDDEN),
        (stranger, json!({"deviceId": "d_nobody"}), NOT_FOUND),
    ] {
        t.check(role, "removeDevice", data, expected).await;
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (r_companion, "removeDevice", json!({"deviceId": rc.device_id}), Ok),
        (member, "removeDevice", mc_device, Ok),
        (companion, "getSettings", json!({}), Gone),
    ];
    t.rows(rows).await;
    t.refused(cloud, "M's removed companion", &mc.api_key).await;
    t.refused(cloud, "R's removed companion", &rc.api_key).await;

    // A removed status: gone for everyone, its media with it.
    let status = json!({"statusId": w.a_status});
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (admin, "removeStatus", status.clone(), Ok),
        (admin, "getStatusViewers", status, NOT_FOUND),
        (member, "getMediaDownload", json!({"mediaId": w.a_status_media}), FORBIDDEN),
        (member, "viewStatus", json!({"userId": a.user_id}), Has("/statuses", json!([]))),
        // The state-changing allowed cells, last: the admin adds X and promotes M; M, now admin,
        // removes X; M leaves on its own; then A deletes the group, after which every role gets
        // NOT_FOUND.
        (admin, "addUserToGroup", admin_only[0].1.clone(), Ok),
        (admin, "promoteUserToAdmin", admin_only[1].1.clone(), Ok),
    ];
    t.rows(rows).await;
    // X, added now, is a member from its join point on: what came before is not its.
    let late = ("late member", &sx);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (late, "getGroup", json!({"groupId": w.group}), Ok),
        (late, "readNewMessages", json!({"sessionId": w.group}), Hides(w.group_msg.clone())),
        (late, "getMessageStatus", json!({"msgId": w.group_msg}), NOT_FOUND),
        (late, "deleteMessage", json!({"sessionId": w.group, "msgId": w.group_msg}), NOT_FOUND),
    ];
    t.rows(rows).await;
    t.check(
        late,
        "ackMessages",
        json!({"sessionId": w.group, "msgId": w.group_msg, "status": "read"}),
        // A message from before X joined is not X's to acknowledge: nothing moves and the
        // sender is told nothing (getMessageStatus calls it NOT_FOUND for X, above).
        Has("/moved", json!(false)),
    )
    .await;
    t.check(
        late,
        "getMediaDownload",
        json!({"mediaId": w.m_group_media}),
        // Sent before X joined: X cannot read that message (nor the media's key in it), and
        // may not download its media either.
        FORBIDDEN,
    )
    .await;
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "removeUserFromGroup", json!({"groupId": w.group, "userId": x.user_id}), Ok),
        (member, "removeUserFromGroup", json!({"groupId": w.group, "userId": m.user_id}), Ok),
        (admin, "deleteGroup", admin_only[3].1.clone(), Ok),
    ];
    t.rows(rows).await;
    for role in &roles {
        let data = json!({"groupId": w.group});
        t.check(*role, "getGroup", data, NOT_FOUND).await;
    }

    // A revoked device (its number moved to a new phone) and a deleted account: their keys no
    // longer open a connection, so no action is reachable; the number still finds the account.
    // Deleting takes only the caller's account, whatever user the request names.
    let phone = fresh_phone();
    let old = sign_up_with_phone(cloud, &phone).await;
    let s_old = connect(cloud, &old).await;
    let _new = sign_up_with_phone(cloud, &phone).await;
    t.check(("revoked device", &s_old), "getSettings", json!({}), Gone)
        .await;
    t.refused(cloud, "revoked device", &old.api_key).await;
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (admin, "lookupUser", json!({"phone": phone}), Has("/userId", json!(old.user_id))),
        (stranger, "deleteAccount", json!({"userId": m.user_id}), Ok),
        (stranger, "getSettings", json!({}), Gone),
    ];
    t.rows(rows).await;
    t.refused(cloud, "deleted account", &n.api_key).await;
    // What is left of them for others: nothing to reach.
    t.check(admin, "getProfile", json!({"userId": n.user_id}), NOT_FOUND)
        .await;
    let n_id = json!({"userId": n.user_id});
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (admin, "claimKeys", n_id.clone(), NOT_FOUND),
        (admin, "viewStatus", n_id, Has("/statuses", json!([]))),
        (admin, "listDevices", json!({"userIds": [n.user_id]}), Has("/devices", json!([]))),
        (admin, "initiateDirectChatSession", json!({"peerUserId": n.user_id}), NOT_FOUND),
    ];
    t.rows(rows).await;
    for who in [&n, &old] {
        let data = json!({"messages": [{"userId": who.user_id, "deviceId": who.device_id, "payload": "x"}]});
        let expected = Has("/unknownDevices/0/deviceId", json!(who.device_id));
        t.check(admin, "sendToDevice", data, expected).await;
    }
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (member, "listBackups", json!({}), Has("/backups/0/backupId", json!(w.m_backup))),
        (admin, "getProfile", profile, Has("/name", json!("Em"))),
    ];
    t.rows(rows).await;

    println!("{} cells checked", t.cells);
    assert!(
        t.failures.is_empty(),
        "{} of {} cells wrong:\n{}",
        t.failures.len(),
        t.cells,
        t.failures.join("\n")
    );
}
