//! The fan-out: a stored message goes to every device of every member but the sending device,
//! live where connected, by push where not.
//!
//! Two callers deliver. `sendMessage` delivers the message it just stored, in the same
//! invocation ([`deliver_inline`]), and records how that ended in the [`DeliveryLog`]. The
//! messages table's stream is the safety net: its consumer delivers what no invocation delivered
//! (messages written by other actions), what an invocation asked it to retry, and what an
//! invocation that died or timed out left undone ([`stream_action`]). Delivery is at-least-once
//! and clients de-duplicate by `msgId`.

use super::deliver::Outbound;
use super::deliver::{Deliverer, DeliveryReport};
use crate::chat::{InlineOutcome, Membership, Message};
use crate::error::PortError;
use crate::ports::{DeliveryLog, PushNote, SessionStore};
use crate::protocol::{SystemRecord, event_for};

/// Delivers a message `sendMessage` just stored, then records the outcome: [`InlineOutcome::Done`]
/// when every post and push went through (or was refused for good, or found its connection
/// gone), [`InlineOutcome::Retry`] when one failed in a way worth retrying. A failure to record
/// is logged and ignored: the stream consumer then delivers the message after its grace, as for
/// an invocation that died here.
#[tracing::instrument(skip_all, fields(session_id = %out.message.session_id, seq = out.message.seq))]
pub async fn deliver_inline(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    log: &dyn DeliveryLog,
    out: &Outbound,
) -> (InlineOutcome, Result<DeliveryReport, PortError>) {
    let result = deliver_stored(sessions, deliver, &out.message, out.members.as_deref()).await;
    let outcome = match &result {
        Ok(_) => InlineOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, "inline delivery failed; the stream consumer retries it");
            InlineOutcome::Retry
        }
    };
    record(log, out, outcome).await;
    (outcome, result)
}

/// Records the outcome of an inline delivery (see [`deliver_inline`]); also for a delivery its
/// caller gave up on (a time budget), which is always [`InlineOutcome::Retry`].
pub async fn record(log: &dyn DeliveryLog, out: &Outbound, outcome: InlineOutcome) {
    if let Err(e) = log.record(&out.message.id(), outcome).await {
        tracing::warn!(error = %e, "inline delivery outcome not recorded; the stream consumer delivers after its grace");
    }
}

/// Delivers one stored message to its session's members (`members`, when already read, else
/// read now): everyone who had joined before it was written.
pub async fn deliver_stored(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    message: &Message,
    members: Option<&[Membership]>,
) -> Result<DeliveryReport, PortError> {
    let read;
    let members = match members {
        Some(m) => m,
        None => {
            read = sessions.members(&message.session_id).await?;
            &read
        }
    };
    deliver_one(deliver, &recipients(members, message), message).await
}

/// A member who joined after a message was written does not get it, nor does the peer it is
/// withheld from (who blocked its sender).
fn recipients(members: &[Membership], message: &Message) -> Vec<crate::ids::UserId> {
    members
        .iter()
        .filter(|m| m.joined_seq < message.seq)
        .filter(|m| message.hidden_from.as_ref() != Some(&m.user_id))
        .map(|m| m.user_id.clone())
        .collect()
}

/// What the stream consumer does with a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAction {
    /// Deliver it: nobody else does (not written for inline delivery), or its writer asked.
    Deliver,
    /// Its writer delivered it: nothing to do.
    Skip,
    /// Its writer may still be delivering it: ask the [`DeliveryLog`] again later, and deliver
    /// it once the writer cannot be running any more.
    Wait,
}

/// What to do with a message read from the stream: `inline` is whether it was written for
/// inline delivery, `outcome` what its writer recorded (if known yet).
pub fn stream_action(inline: bool, outcome: Option<InlineOutcome>) -> StreamAction {
    match (inline, outcome) {
        (false, _) => StreamAction::Deliver,
        (true, Some(InlineOutcome::Done)) => StreamAction::Skip,
        (true, Some(InlineOutcome::Retry)) => StreamAction::Deliver,
        (true, None) => StreamAction::Wait,
    }
}

/// Delivers one stored message to its session's members (read now).
pub async fn fan_out(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    message: &Message,
) -> Result<DeliveryReport, PortError> {
    deliver_stored(sessions, deliver, message, None).await
}

#[tracing::instrument(skip_all, fields(seq = message.seq))]
async fn deliver_one(
    deliver: &Deliverer<'_>,
    members: &[crate::ids::UserId],
    message: &Message,
) -> Result<DeliveryReport, PortError> {
    // A deletion or a timer change wakes no phone: there is nothing new to read, and an offline
    // device learns of it when it next syncs.
    let quiet = crate::protocol::MessageDeletion::of(message).is_some()
        || crate::protocol::DisappearingTimer::of(message).is_some();
    let note = (!quiet).then(|| PushNote {
        session_id: message.session_id.to_string(),
        sender: message.sender.to_string(),
        msg_id: message.msg_id.clone(),
    });
    let report = deliver
        .deliver(
            members,
            Some(&message.sender_device),
            &event_for(message),
            note.as_ref(),
        )
        .await?;
    tracing::info!(
        members = members.len(),
        posted = report.posted,
        gone = report.gone,
        refused = report.refused,
        pushed = report.pushed,
        "fanned out"
    );
    Ok(report)
}
