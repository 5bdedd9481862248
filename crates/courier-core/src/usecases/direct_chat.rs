//! `initiateDirectChatSession` and `listSessions`.

use crate::chat::Draft;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{SessionId, UserId};
use crate::ports::{AccountStore, DeviceCredential, MessageStore, SessionStore};
use crate::protocol::InitiateDirectChatParams;
use serde_json::{Value, json};

/// What these operations need.
pub struct Deps<'a> {
    /// To check the peer exists.
    pub accounts: &'a dyn AccountStore,
    /// Sessions.
    pub sessions: &'a dyn SessionStore,
    /// Messages (the handshake is stored as one).
    pub messages: &'a dyn MessageStore,
    /// Time.
    pub clock: &'a dyn Clock,
    /// The daily cap on direct chats (and their handshakes) strangers open with one user
    /// (`None`: no cap).
    pub handshakes_per_target: Option<crate::rate_limit::StrangerCap<'a>>,
}

/// Opens (or finds) the caller's direct session with a peer; stores the handshake, if any, as the
/// session's `handshake` message, which the fan-out delivers as `sessionStarted`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn initiate(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    params: InitiateDirectChatParams,
) -> Result<Value, ApiError> {
    let peer = UserId::from_trusted(params.peer_user_id);
    if peer == who.user_id {
        return Err(ApiError::bad_request("a direct chat needs another user"));
    }
    if let Some(h) = &params.handshake {
        super::send_message::check_payload(h)?;
    }
    if deps.accounts.user(&peer).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, "no such user"));
    }
    // Counted even when the chat exists: each call may deliver a handshake to the peer.
    if let Some(cap) = &deps.handshakes_per_target {
        cap.take(&who.user_id, std::slice::from_ref(&peer), deps.clock.now())
            .await?;
    }
    let session = SessionId::direct(&who.user_id, &peer);
    let created = deps
        .sessions
        .create_direct(&session, &who.user_id, &peer, deps.clock.now())
        .await?;
    if let Some(handshake) = params.handshake {
        use sha2::{Digest, Sha256};
        // Derived from the session and the content, so a retried initiate stores the handshake
        // once, and the same handshake text sent to two peers is two messages.
        let digest = Sha256::digest(format!("{session}\n{handshake}").as_bytes());
        let client_msg_id = format!("hs-{}", &hex::encode(digest)[..24]);
        let draft = Draft {
            sender: who.user_id.clone(),
            sender_device: who.device_id.clone(),
            client_msg_id,
            kind: "handshake".into(),
            payload: handshake,
            attachments: vec![],
            // Delivered from the stream (initiateDirectChatSession posts nothing itself).
            inline: false,
        };
        deps.messages
            .append(&session, &draft, deps.clock.now())
            .await?;
    }
    Ok(json!({ "sessionId": session, "created": created }))
}

/// The caller's sessions with their latest message and the caller's watermarks.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn list_sessions(
    sessions_store: &dyn SessionStore,
    messages: &dyn MessageStore,
    who: &DeviceCredential,
) -> Result<Value, ApiError> {
    let memberships = sessions_store.sessions_of(&who.user_id).await?;
    let mut sessions = Vec::with_capacity(memberships.len());
    for m in memberships {
        // The index by user carries no watermarks (so receipts do not write it): the caller's
        // come from its member item, read with the others.
        let all = sessions_store.members(&m.session_id).await?;
        let mine = all.iter().find(|x| x.user_id == who.user_id);
        let (delivered, read) = mine.map_or((m.delivered.seq, m.read.seq), |x| {
            (x.delivered.seq, x.read.seq)
        });
        let members: Vec<_> = all.iter().map(|x| x.user_id.clone()).collect();
        let last = messages.last(&m.session_id).await?;
        sessions.push(json!({
            "sessionId": m.session_id,
            "type": m.kind,
            "members": members,
            "lastSeq": last.as_ref().map_or(0, |l| l.seq),
            "lastMsgId": last.as_ref().map(|l| l.msg_id.clone()),
            "deliveredSeq": delivered,
            "readSeq": read,
        }));
    }
    Ok(json!({ "sessions": sessions }))
}
