//! `sendMessage`: persist first (one transaction: the next sequence number, the message and the
//! idempotency record); the fan-out function delivers it from the messages table's stream.

use crate::chat::{
    Appended, Draft, MAX_ATTACHMENTS, MAX_CLIENT_MSG_ID_CHARS, MAX_PAYLOAD_CHARS, Membership,
};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{SessionId, UserId};
use crate::ports::{DeviceCredential, MessageStore, SessionStore};
use crate::protocol::SendMessageParams;
use serde_json::{Value, json};

/// Message kinds a client may send (the server never looks inside). `system` messages exist
/// too, but only the server writes them (group changes).
pub const KINDS: [&str; 3] = ["text", "media", "handshake"];

/// What `sendMessage` needs.
pub struct Deps<'a> {
    /// Memberships.
    pub sessions: &'a dyn SessionStore,
    /// Messages.
    pub messages: &'a dyn MessageStore,
    /// Time.
    pub clock: &'a dyn Clock,
    /// Media checks for `attachments`; without them, a message with attachments is refused.
    pub media: Option<super::media::AttachDeps<'a>>,
    /// The sending device's token bucket (`None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
}

/// The bucket of one device for one send operation: each device has its own, so one device over
/// its limit slows no one else (not even the same user's other devices).
pub fn send_key(operation: &str, who: &DeviceCredential) -> String {
    format!("{operation}#{}#{}", who.user_id, who.device_id)
}

/// `PAYLOAD_TOO_LARGE` above [`MAX_PAYLOAD_CHARS`].
pub fn check_payload(payload: &str) -> Result<(), ApiError> {
    // Bytes bound characters from above: count only when the byte length is over the limit.
    if payload.len() > MAX_PAYLOAD_CHARS && payload.chars().count() > MAX_PAYLOAD_CHARS {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("payload is longer than {MAX_PAYLOAD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Parses a session id from a request.
pub fn parse_session(s: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(s).ok_or_else(|| ApiError::bad_request("sessionId is not a session id"))
}

/// The caller's membership; `NOT_FOUND` for an unknown session, `FORBIDDEN` for someone else's.
pub async fn require_member(
    sessions: &dyn SessionStore,
    session: &SessionId,
    user: &UserId,
) -> Result<Membership, ApiError> {
    if let Some(m) = sessions.membership(session, user).await? {
        return Ok(m);
    }
    if sessions.exists(session).await? {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "not a member of this session",
        ))
    } else {
        Err(ApiError::new(ErrorCode::NotFound, "no such session"))
    }
}

/// Stores a message and returns its id, sequence number and time.
pub async fn send_message(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: SendMessageParams,
) -> Result<Value, ApiError> {
    send(deps, who, p).await.map(|sent| sent.reply)
}

/// What [`send`] did, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The reply: `{msgId, seq, sentAt}`.
    pub reply: Value,
    /// False when the `clientMsgId` was already used (a retry): nothing new was stored.
    pub new: bool,
    /// `"media"` with attachments, else `"direct"` or `"group"` by session.
    pub kind: &'static str,
}

/// [`send_message`], also saying whether the message is new and what kind it is.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn send(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: SendMessageParams,
) -> Result<Sent, ApiError> {
    let session = parse_session(&p.session_id)?;
    let kind = if !p.attachments.is_empty() {
        "media"
    } else if session.is_direct() {
        "direct"
    } else {
        "group"
    };
    let cmid = p.client_msg_id.trim();
    if cmid.is_empty() || cmid.chars().count() > MAX_CLIENT_MSG_ID_CHARS || cmid.contains('#') {
        return Err(ApiError::bad_request(format!(
            "clientMsgId must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters, without '#'"
        )));
    }
    if !KINDS.contains(&p.kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "type must be one of {}",
            KINDS.join(", ")
        )));
    }
    check_payload(&p.payload)?;
    if p.attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ATTACHMENTS} attachments"
        )));
    }
    // Before anything is read or written: a refused send stores, delivers and counts nothing.
    crate::rate_limit::take(
        deps.throttle.as_ref(),
        &send_key("sendMessage", who),
        "messages",
        deps.clock.now(),
    )
    .await?;
    require_member(deps.sessions, &session, &who.user_id).await?;
    let attach = if p.attachments.is_empty() {
        None
    } else {
        let Some(media) = deps.media else {
            return Err(ApiError::bad_request("this endpoint takes no attachments"));
        };
        let ids = super::media::check_attachments(media, &who.user_id, &p.attachments).await?;
        Some((media, ids))
    };
    let draft = Draft {
        sender: who.user_id.clone(),
        sender_device: who.device_id.clone(),
        client_msg_id: cmid.to_owned(),
        kind: p.kind,
        payload: p.payload,
        attachments: p.attachments,
    };
    let (msg_id, seq, sent_at, new) = match deps
        .messages
        .append(&session, &draft, deps.clock.now())
        .await?
    {
        Appended::New(m) => (m.msg_id, m.seq, m.sent_at, true),
        Appended::Duplicate {
            msg_id,
            seq,
            sent_at,
        } => {
            tracing::info!("duplicate clientMsgId: returning the first result");
            (msg_id, seq, sent_at, false)
        }
    };
    if let Some((media, ids)) = attach {
        // After the message, as the reference names it (only members there for it may download
        // the media); a retry after a failure here is a duplicate and records the same again.
        super::media::attach(
            media,
            &ids,
            &crate::media::MediaRef::Session {
                session: session.clone(),
                seq: Some(seq),
            },
        )
        .await?;
    }
    Ok(Sent {
        reply: json!({ "msgId": msg_id, "seq": seq, "sentAt": sent_at }),
        new,
        kind,
    })
}
