//! `deleteMessage`: its sender deletes a message for everyone, within
//! [`DELETE_FOR_EVERYONE_SECS`] of sending it.
//!
//! The stored ciphertext and the attachments' references go at once (the message stays as a
//! `deleted` tombstone, so sequence numbers keep no gaps), then a `system` message records the
//! deletion in the session ([`MessageDeletion`]): the members' live devices get it as
//! `messageDeleted` now, and devices that were offline read it when they sync past it, even
//! when they had read the message itself before.

use super::deliver::{Deliverer, Outbound};
use super::session_checks::{parse_session, require_member, send_key};
use crate::chat::{Appended, Draft, MessageKind};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::MsgId;
use crate::media::{MediaId, MediaRef, MediaStore};
use crate::ports::{DeliveryLog, DeviceCredential, MessageStore, SessionStore};
use crate::protocol::{DeleteMessageParams, MessageDeleted, MessageDeletion, SystemRecord};

/// How long after sending it a sender may delete a message for everyone (48 hours).
pub const DELETE_FOR_EVERYONE_SECS: i64 = 48 * 3600;

/// What `deleteMessage` needs.
pub struct Deps<'a> {
    /// Membership, and the members to tell.
    pub sessions: &'a dyn SessionStore,
    /// The message, its tombstone and the deletion's record.
    pub messages: &'a dyn MessageStore,
    /// The attachments' references.
    pub media: &'a dyn MediaStore,
    /// The time: the 48 hours, the rate limit.
    pub clock: &'a dyn Clock,
    /// The device's bucket for this operation (`None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
    /// Delivers the deletion to live devices (and pushes offline ones, as for any message).
    pub deliver: Deliverer<'a>,
    /// Where the inline delivery's outcome goes, so the fan-out finishes what it did not;
    /// `None`: the fan-out alone delivers the deletion.
    pub log: Option<&'a dyn DeliveryLog>,
}

/// Deletes the caller's message for everyone.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn delete_message(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: DeleteMessageParams,
) -> Result<MessageDeleted, ApiError> {
    let session = parse_session(&p.session_id)?;
    let id = MsgId::parse(&p.msg_id)
        .ok_or_else(|| ApiError::bad_request("msgId is not a message id"))?;
    if id.session != session {
        return Err(ApiError::bad_request("msgId belongs to another session"));
    }
    crate::rate_limit::take(
        deps.throttle.as_ref(),
        &send_key("deleteMessage", who),
        "deletions",
        deps.clock.now(),
    )
    .await?;
    let me = require_member(deps.sessions, &session, &who.user_id).await?;
    // A message from before the caller joined is not theirs to see, let alone delete; one that
    // has disappeared is gone.
    let message = match deps.messages.get(&id).await? {
        Some(m) if m.seq > me.joined_seq && !m.expired(deps.clock.now()) => m,
        _ => return Err(ApiError::new(ErrorCode::NotFound, "no such message")),
    };
    if message.sender != who.user_id {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only its sender may delete a message for everyone",
        ));
    }
    let done = MessageDeleted {
        msg_id: message.msg_id.clone(),
        deleted: true,
    };
    match message.kind {
        MessageKind::Text | MessageKind::Media | MessageKind::Other(_) => {}
        // Deleted already: the deletion's record is written below again (it is idempotent), in
        // case the first attempt died between the tombstone and the record.
        MessageKind::Deleted => {}
        MessageKind::Handshake | MessageKind::System => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only a text or media message can be deleted for everyone",
            ));
        }
    }
    let sent_at = chrono::DateTime::parse_from_rfc3339(&message.sent_at)
        .map_err(|_| ApiError::internal("a stored message has a malformed sentAt"))?
        .with_timezone(&chrono::Utc);
    if message.kind != MessageKind::Deleted
        && deps.clock.now() - sent_at > chrono::Duration::seconds(DELETE_FOR_EVERYONE_SECS)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a message can be deleted for everyone only within 48 hours of sending it",
        ));
    }
    deps.messages.erase(&id).await?;
    let place = MediaRef::Session {
        session: session.clone(),
        seq: Some(id.seq),
    };
    for media in message.attachments.iter().filter_map(|a| MediaId::parse(a)) {
        deps.media.remove_ref(&media, &place).await?;
    }
    let deletion = MessageDeletion {
        update: MessageDeletion::UPDATE.to_owned(),
        msg_id: message.msg_id.clone(),
        by: who.user_id.clone(),
    };
    let draft = Draft {
        sender: who.user_id.clone(),
        sender_device: who.device_id.clone(),
        // One record per message however often it is deleted: a retry finds the first.
        client_msg_id: format!("del-{}", message.msg_id),
        kind: MessageKind::System,
        payload: serde_json::to_string(&deletion).expect("a deletion serialises"),
        attachments: Vec::new(),
        // A deletion of a message withheld from a peer (who blocked the sender) is withheld
        // from that peer too: it must not learn that something it never saw was deleted.
        hidden_from: message.hidden_from.clone(),
        disappears: false,
        inline: deps.log.is_some(),
    };
    if let Appended::New(record) = deps
        .messages
        .append(&session, &draft, deps.clock.now())
        .await?
        && let Some(log) = deps.log
    {
        let out = Outbound {
            message: *record,
            members: None,
        };
        // Its outcome is recorded: the fan-out finishes what this did not.
        let _ = super::fan_out::deliver_inline(deps.sessions, &deps.deliver, log, &out).await;
    }
    tracing::info!(
        attachments = message.attachments.len(),
        "message deleted for everyone"
    );
    Ok(done)
}
