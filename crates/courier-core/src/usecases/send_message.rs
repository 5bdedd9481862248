//! `sendMessage`: persist first (an idempotency claim, then the message at the next sequence
//! number), then hand the stored message to its delivery. The function that serves this action
//! delivers it itself, right after the reply ([`Sent::outbound`], `fan_out::deliver_inline`);
//! the fan-out function reading the messages table's stream delivers only what that delivery did
//! not finish (docs/architecture.md, "Messages").

use super::deliver::Outbound;
use super::session_checks::{check_payload, parse_session, require_member, send_key};
use crate::chat::{
    Appended, Draft, MAX_ATTACHMENTS, MAX_CLIENT_MSG_ID_CHARS, Membership, MessageKind,
};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::ids::{SessionId, UserId};
use crate::ports::{DeviceCredential, MessageStore, SessionStore};
use crate::protocol::SendMessageParams;
use crate::protocol::SentMessage;

/// What `sendMessage` needs.
pub struct Deps<'a> {
    /// Memberships and watermarks: is the sender a member, where do the others stand.
    pub sessions: &'a dyn SessionStore,
    /// Where the message is stored, once per `clientMsgId`.
    pub messages: &'a dyn MessageStore,
    /// The server's time: the message's `sentAt`, the rate limit.
    pub clock: &'a dyn Clock,
    /// Media checks for `attachments`; without them, a message with attachments is refused.
    pub media: Option<super::media::AttachDeps<'a>>,
    /// The sending device's token bucket (`None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
    /// Who blocked whom: a direct message to a peer who blocked the sender is stored withheld
    /// from that peer (`None`: no block is looked up).
    pub blocks: Option<&'a dyn crate::ports::BlockList>,
}

/// Stores a message and returns its id, sequence number and time.
pub async fn send_message(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: SendMessageParams,
) -> Result<SentMessage, ApiError> {
    send(deps, who, p).await.map(|sent| sent.reply)
}

/// What [`send`] did: the reply, and what is left to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The reply.
    pub reply: SentMessage,
    /// False when the `clientMsgId` was already used (a retry): nothing new was stored.
    pub new: bool,
    /// `"media"` with attachments, else `"direct"` or `"group"` by session.
    pub kind: &'static str,
    /// The message just stored, for the caller to deliver (`None` for a retry: the first
    /// attempt's delivery, or the stream consumer after it, has it).
    pub outbound: Option<Outbound>,
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
    if !p.kind.is_sendable() {
        let kinds: Vec<&str> = MessageKind::SENDABLE
            .iter()
            .map(MessageKind::as_str)
            .collect();
        return Err(ApiError::bad_request(format!(
            "type must be one of {}",
            kinds.join(", ")
        )));
    }
    check_payload(&p.payload)?;
    if p.attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ATTACHMENTS} attachments"
        )));
    }
    // The rate limit, the membership and the session's tail (its last sequence number and its
    // disappearing timer) side by side: all three are needed before the first write, none
    // depends on another, and a refused send still stores, delivers and counts nothing (the
    // reads change nothing). This keeps the
    // critical path of a one-to-one message at three sequential DynamoDB calls before the
    // delivery's presence read (docs/benchmarks.md, "critical path").
    let bucket = send_key("sendMessage", who);
    let (taken, members, tail) = futures_util::future::join3(
        crate::rate_limit::take(
            deps.throttle.as_ref(),
            &bucket,
            "messages",
            deps.clock.now(),
        ),
        known_members(deps.sessions, &session, &who.user_id),
        deps.messages.tail(&session),
    )
    .await;
    taken?;
    let members = members?;
    let tail = tail?;
    let attach = if p.attachments.is_empty() {
        None
    } else {
        let Some(media) = deps.media else {
            return Err(ApiError::bad_request("this endpoint takes no attachments"));
        };
        let ids = super::media::check_attachments(media, &who.user_id, &p.attachments).await?;
        Some((media, ids))
    };
    let hidden_from = withheld_from(deps.blocks, members.as_deref(), &who.user_id).await?;
    let draft = Draft {
        sender: who.user_id.clone(),
        sender_device: who.device_id.clone(),
        client_msg_id: cmid.to_owned(),
        disappears: matches!(p.kind, MessageKind::Text | MessageKind::Media),
        kind: p.kind,
        payload: p.payload,
        attachments: p.attachments,
        hidden_from,
        inline: true,
    };
    let appended = deps
        .messages
        .append_after(&session, &draft, tail, deps.clock.now())
        .await?;
    let (seq, reply, outbound) = match appended {
        Appended::New(m) => (
            m.seq,
            SentMessage {
                msg_id: m.msg_id.clone(),
                seq: m.seq,
                sent_at: m.sent_at.clone(),
                expires_at: m.expires_at.clone(),
            },
            Some(Outbound {
                message: *m,
                members,
            }),
        ),
        Appended::Duplicate {
            msg_id,
            seq,
            sent_at,
        } => {
            tracing::info!("duplicate clientMsgId: returning the first result");
            (
                seq,
                SentMessage {
                    msg_id,
                    seq,
                    sent_at,
                    expires_at: None,
                },
                None,
            )
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
        reply,
        new: outbound.is_some(),
        kind,
        outbound,
    })
}

/// The peer of a direct chat who blocked `sender`, if one did: the message is accepted and
/// stored, so the block is not revealed, but withheld from that peer (never delivered, pushed or
/// read). Groups are not affected, as on WhatsApp. One GetItem, for direct messages only.
pub async fn withheld_from(
    blocks: Option<&dyn crate::ports::BlockList>,
    direct_members: Option<&[Membership]>,
    sender: &UserId,
) -> Result<Option<UserId>, ApiError> {
    let (Some(blocks), Some(members)) = (blocks, direct_members) else {
        return Ok(None);
    };
    let Some(peer) = members.iter().map(|m| &m.user_id).find(|u| *u != sender) else {
        return Ok(None);
    };
    Ok(blocks
        .has_blocked(peer, sender)
        .await?
        .then(|| peer.clone()))
}

/// Checks that `user` is a member of `session` (`NOT_FOUND`/`FORBIDDEN` as [`require_member`]).
/// For a direct session it reads all (both) members at once, which the delivery then reuses:
/// one Query instead of a GetItem now and a Query after the write. A group's membership is one
/// GetItem; its members are read after the write ([`Outbound::members`]).
async fn known_members(
    sessions: &dyn SessionStore,
    session: &SessionId,
    user: &UserId,
) -> Result<Option<Vec<Membership>>, ApiError> {
    if !session.is_direct() {
        require_member(sessions, session, user).await?;
        return Ok(None);
    }
    let members = sessions.members(session).await?;
    if members.iter().any(|m| &m.user_id == user) {
        return Ok(Some(members));
    }
    // Not among them: answered exactly as `require_member` answers; a member after all (a
    // session a moment old, read before its write was visible) reads them again.
    require_member(sessions, session, user).await?;
    Ok(Some(sessions.members(session).await?))
}
