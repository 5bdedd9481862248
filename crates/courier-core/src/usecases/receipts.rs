//! `ackMessages` and `getMessageStatus`: receipts as per-member watermarks.

use super::deliver::Deliverer;
use super::session_checks::{parse_session, require_member};
use crate::chat::{Receipt, Watermark, timestamp};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::MsgId;
use crate::ids::UserId;
use crate::ports::{DeviceCredential, MessageStore, SessionStore, SettingsStore};
use crate::protocol::{AckMessagesParams, GetMessageStatusParams, status_event};
use crate::protocol::{AckReply, MessageStatus, RecipientStatus};
use std::collections::HashSet;

/// What `ackMessages` needs.
pub struct AckDeps<'a> {
    /// Memberships and watermarks.
    pub sessions: &'a dyn SessionStore,
    /// To check the message exists.
    pub messages: &'a dyn MessageStore,
    /// To tell the other members' devices.
    pub deliver: Deliverer<'a>,
    /// Who turned read receipts off.
    pub settings: &'a dyn SettingsStore,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
}

/// The users among `users` who turned read receipts off: they send none and see none.
pub async fn read_receipts_off(
    settings: &dyn SettingsStore,
    users: &[UserId],
) -> Result<HashSet<UserId>, ApiError> {
    Ok(settings
        .settings_of(users)
        .await?
        .into_iter()
        .filter(|(_, s)| !s.privacy.read_receipts)
        .map(|(u, _)| u)
        .collect())
}

/// Moves the caller's watermark up to `msgId` (never backwards) and tells the other members.
pub async fn ack_messages(
    deps: &AckDeps<'_>,
    who: &DeviceCredential,
    p: AckMessagesParams,
) -> Result<AckReply, ApiError> {
    Ok(ack_messages_measured(deps, who, p).await?.reply)
}

/// What [`ack_messages_measured`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    /// The reply.
    pub reply: AckReply,
    /// For a delivered ack that moved a recipient's watermark: how long after the server stored
    /// the acknowledged message its recipient acknowledged it (the delivery latency).
    pub delivery_latency: Option<std::time::Duration>,
}

/// [`ack_messages`], also measuring the delivery latency for the analytics.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn ack_messages_measured(
    deps: &AckDeps<'_>,
    who: &DeviceCredential,
    p: AckMessagesParams,
) -> Result<Acked, ApiError> {
    let session = parse_session(&p.session_id)?;
    let id = MsgId::parse(&p.msg_id)
        .ok_or_else(|| ApiError::bad_request("msgId is not a message id"))?;
    if id.session != session {
        return Err(ApiError::bad_request("msgId belongs to another session"));
    }
    if p.status == Receipt::Sent {
        return Err(ApiError::bad_request("status must be delivered or read"));
    }
    // The fast path is one read and one conditional write: the message (which must exist, and
    // says whom to tell) and the watermark update, which only a member's item accepts. Who is
    // asking is looked up only when one of them says no.
    let Some(message) = deps.messages.get(&id).await? else {
        require_member(deps.sessions, &session, &who.user_id).await?;
        return Err(ApiError::new(ErrorCode::NotFound, "no such message"));
    };
    let now = deps.clock.now();
    let moved = deps
        .sessions
        .advance(&session, &who.user_id, p.status, id.seq, now)
        .await?;
    if !moved {
        // Not a member, or the watermark is already there (a backwards ack is not an error).
        require_member(deps.sessions, &session, &who.user_id).await?;
    }
    if moved {
        // The status event goes to the acknowledged message's sender (who shows the ticks); when
        // the caller acknowledges up to its own message, to the other members.
        let mut others: Vec<_> = if message.sender != who.user_id {
            vec![message.sender.clone()]
        } else {
            deps.sessions
                .members(&session)
                .await?
                .into_iter()
                .map(|m| m.user_id)
                .filter(|u| u != &who.user_id)
                .collect()
        };
        if p.status == Receipt::Read {
            // A read watermark is stored either way (it keeps the caller's own devices in
            // sync through listSessions), but with read receipts off on either side nobody
            // else is told.
            let mut both = others.clone();
            both.push(who.user_id.clone());
            let off = read_receipts_off(deps.settings, &both).await?;
            if off.contains(&who.user_id) {
                others.clear();
            }
            others.retain(|u| !off.contains(u));
        }
        let frame = status_event(
            session.as_str(),
            who.user_id.as_str(),
            p.status,
            &p.msg_id,
            id.seq,
            &timestamp(now),
        );
        // Receipts are best effort live; getMessageStatus is the source of truth.
        if !others.is_empty()
            && let Err(e) = deps.deliver.deliver(&others, None, &frame, None).await
        {
            tracing::warn!(error = %e, "status event not delivered everywhere");
        }
    }
    let delivery_latency =
        (moved && p.status == Receipt::Delivered && message.sender != who.user_id)
            .then(|| super::analytics::latency(&message.sent_at, now))
            .flatten();
    Ok(Acked {
        reply: AckReply { moved },
        delivery_latency,
    })
}

fn receipt_of(delivered: Watermark, read: Watermark, seq: u64) -> (Receipt, Option<String>) {
    if read.seq >= seq {
        (Receipt::Read, read.at.map(timestamp))
    } else if delivered.seq >= seq {
        (Receipt::Delivered, delivered.at.map(timestamp))
    } else {
        (Receipt::Sent, None)
    }
}

/// A message's status per recipient and in aggregate (the weakest recipient's). A recipient
/// with read receipts off shows at most delivered; a caller with read receipts off sees at most
/// delivered from everyone.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get_message_status(
    sessions: &dyn SessionStore,
    messages: &dyn MessageStore,
    settings: &dyn SettingsStore,
    clock: &dyn Clock,
    who: &DeviceCredential,
    p: GetMessageStatusParams,
) -> Result<MessageStatus, ApiError> {
    let id = MsgId::parse(&p.msg_id)
        .ok_or_else(|| ApiError::bad_request("msgId is not a message id"))?;
    let me = require_member(sessions, &id.session, &who.user_id).await?;
    if id.seq <= me.joined_seq {
        return Err(ApiError::new(ErrorCode::NotFound, "no such message"));
    }
    let message = messages
        .get(&id)
        .await?
        // A message that has disappeared is gone for its sender too.
        .filter(|m| m.hidden_from.as_ref() != Some(&who.user_id) && !m.expired(clock.now()))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such message"))?;
    let mut aggregate = Receipt::Read;
    let mut recipients = Vec::new();
    // The sender, and group members who joined after the message, are not recipients.
    let members: Vec<_> = sessions
        .members(&id.session)
        .await?
        .into_iter()
        .filter(|m| m.user_id != message.sender && m.joined_seq < id.seq)
        .collect();
    let mut asked: Vec<UserId> = members.iter().map(|m| m.user_id.clone()).collect();
    asked.push(who.user_id.clone());
    let off = read_receipts_off(settings, &asked).await?;
    let caller_off = off.contains(&who.user_id);
    for m in members {
        let (status, at) = if message.hidden_from.as_ref() == Some(&m.user_id) {
            // Withheld from a peer who blocked the sender: one tick for ever, as on WhatsApp,
            // whatever the peer read after it.
            (Receipt::Sent, None)
        } else if caller_off || off.contains(&m.user_id) {
            // Read implies delivered: a hidden read watermark still counts as delivered.
            let delivered = if m.read.seq > m.delivered.seq {
                m.read
            } else {
                m.delivered
            };
            receipt_of(delivered, Watermark::default(), id.seq)
        } else {
            receipt_of(m.delivered, m.read, id.seq)
        };
        aggregate = aggregate.min(status);
        recipients.push(RecipientStatus {
            user_id: m.user_id.to_string(),
            status,
            at,
        });
    }
    if recipients.is_empty() {
        aggregate = Receipt::Sent;
    }
    Ok(MessageStatus {
        msg_id: p.msg_id,
        status: aggregate,
        recipients,
    })
}
