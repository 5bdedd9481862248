//! `initiateDirectChatSession` and `listSessions`.

use super::deliver::Outbound;
use crate::chat::{Appended, Draft};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{SessionId, UserId};
use crate::ports::{DeviceCredential, MessageStore, SessionStore, UserDirectory};
use crate::protocol::{DirectChat, SessionSummary, SessionsPage};
use crate::protocol::{
    InitiateDirectChatParams, ListSessionsParams, REPLY_BUDGET_BYTES, fit_budget,
};

/// What these operations need.
pub struct Deps<'a> {
    /// To check the peer exists.
    pub accounts: &'a dyn UserDirectory,
    /// The two users' session and their memberships.
    pub sessions: &'a dyn SessionStore,
    /// Messages (the handshake is stored as one).
    pub messages: &'a dyn MessageStore,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The daily cap on direct chats (and their handshakes) strangers open with one user
    /// (`None`: no cap).
    pub handshakes_per_target: Option<crate::rate_limit::StrangerCap<'a>>,
    /// Who blocked whom: the handshake of someone the peer blocked is withheld from the peer
    /// (`None`: no block is looked up).
    pub blocks: Option<&'a dyn crate::ports::BlockList>,
}

/// What [`initiate`] did.
#[derive(Debug)]
pub struct Initiated {
    /// The reply.
    pub reply: DirectChat,
    /// The handshake it stored, for the caller to deliver at once (as `sendMessage` delivers its
    /// message: live devices by post, offline ones by push, the outcome recorded for the stream
    /// consumer). `None` without a handshake, or for a retry that stored nothing new.
    pub outbound: Option<Outbound>,
}

/// Opens (or finds) the caller's direct session with a peer; stores the handshake, if any, as the
/// session's `handshake` message, delivered as `sessionStarted`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn initiate(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    params: InitiateDirectChatParams,
) -> Result<Initiated, ApiError> {
    let peer = UserId::from_trusted(params.peer_user_id);
    if peer == who.user_id {
        return Err(ApiError::bad_request("a direct chat needs another user"));
    }
    if let Some(h) = &params.handshake {
        super::session_checks::check_payload(h)?;
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
    let mut outbound = None;
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
            // Someone the peer blocked may open the chat (so the block is not revealed), but
            // their handshake never reaches the peer.
            hidden_from: match deps.blocks {
                Some(b) if b.has_blocked(&peer, &who.user_id).await? => Some(peer.clone()),
                _ => None,
            },
            // Delivered by the caller of `initiate`; the stream consumer delivers it only if that
            // did not finish.
            disappears: false,
            inline: true,
        };
        let appended = deps
            .messages
            .append(&session, &draft, deps.clock.now())
            .await?;
        if let Appended::New(message) = appended {
            outbound = Some(Outbound {
                message: *message,
                // Read after the write, as for a group: the two items were written a moment ago.
                members: None,
            });
        }
    }
    Ok(Initiated {
        reply: DirectChat {
            session_id: session.to_string(),
            created,
        },
        outbound,
    })
}

/// Default `listSessions` page size.
pub const DEFAULT_SESSIONS_PAGE: u32 = 50;
/// Largest `listSessions` page.
pub const MAX_SESSIONS_PAGE: u32 = 100;

/// `listSessions`: `{sessions, hasMore}`, the caller's sessions by session id after `after`,
/// with their latest message and the caller's watermarks: at most `limit`, and as many as fit
/// [`REPLY_BUDGET_BYTES`] (continue with `after` = the last `sessionId`).
///
/// The memberships are read whole and consistently (a chat opened a moment ago is listed), and
/// only the page's sessions are looked into (members, last message): that is where the time
/// went, 150 unsolicited groups made one 36.7 KB reply that took 1.14 s.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn list_sessions(
    sessions_store: &dyn SessionStore,
    messages: &dyn MessageStore,
    who: &DeviceCredential,
    p: ListSessionsParams,
) -> Result<SessionsPage, ApiError> {
    let after = p
        .after
        .as_deref()
        .map(|a| {
            SessionId::parse(a).ok_or_else(|| ApiError::bad_request("after is not a session id"))
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(DEFAULT_SESSIONS_PAGE);
    if !(1..=MAX_SESSIONS_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_SESSIONS_PAGE}"
        )));
    }
    let mut memberships = sessions_store.sessions_of(&who.user_id).await?;
    memberships.retain(|m| after.as_ref().is_none_or(|a| &m.session_id > a));
    memberships.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    let more = memberships.len() > limit as usize;
    memberships.truncate(limit as usize);
    let mut sessions = Vec::with_capacity(memberships.len());
    for m in memberships {
        let members: Vec<_> = sessions_store
            .members(&m.session_id)
            .await?
            .into_iter()
            .map(|x| x.user_id)
            .collect();
        let last = messages.last(&m.session_id).await?;
        sessions.push(SessionSummary {
            session_id: m.session_id.to_string(),
            kind: m.kind,
            members: members.iter().map(ToString::to_string).collect(),
            last_seq: last.as_ref().map_or(0, |l| l.seq),
            last_msg_id: last.as_ref().map(|l| l.msg_id.clone()),
            delivered_seq: m.delivered.seq,
            read_seq: m.read.seq,
        });
    }
    // A group of 257 members lists about 10 KB of user ids: 100 of them would pass the frame.
    let (sessions, cut) = fit_budget(sessions, REPLY_BUDGET_BYTES);
    Ok(SessionsPage {
        sessions,
        has_more: more || cut,
    })
}
