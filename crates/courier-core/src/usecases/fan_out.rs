//! The fan-out: a stored message goes to every device of every member but the sending device,
//! live where connected, by push where not. Runs from the messages table's stream, so it is
//! retried after a failure: delivery is at-least-once and clients de-duplicate by `msgId`.

use super::deliver::{Deliverer, DeliveryReport};
use crate::chat::Message;
use crate::error::PortError;
use crate::ports::{PushNote, SessionStore};
use crate::protocol::event_for;

/// Delivers one stored message.
pub async fn fan_out(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    message: &Message,
) -> Result<DeliveryReport, PortError> {
    fan_out_session(sessions, deliver, std::slice::from_ref(message))
        .await
        .map_err(|(_, e)| e)
        .map(|mut reports| reports.pop().unwrap_or_default())
}

/// Delivers messages of one session, in order, reading the members once. On a failure it stops
/// and returns the index of the message that failed (later ones were not tried).
#[tracing::instrument(skip_all, fields(session_id = %messages.first().map(|m| m.session_id.as_str()).unwrap_or("")))]
pub async fn fan_out_session(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    messages: &[Message],
) -> Result<Vec<DeliveryReport>, (usize, PortError)> {
    let Some(first) = messages.first() else {
        return Ok(Vec::new());
    };
    let members = sessions
        .members(&first.session_id)
        .await
        .map_err(|e| (0, e))?;
    let mut reports = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        // A member who joined after this message was written does not get it.
        let to: Vec<_> = members
            .iter()
            .filter(|m| m.joined_seq < message.seq)
            .map(|m| m.user_id.clone())
            .collect();
        reports.push(
            deliver_one(deliver, &to, message)
                .await
                .map_err(|e| (i, e))?,
        );
    }
    Ok(reports)
}

#[tracing::instrument(skip_all, fields(seq = message.seq))]
async fn deliver_one(
    deliver: &Deliverer<'_>,
    members: &[crate::ids::UserId],
    message: &Message,
) -> Result<DeliveryReport, PortError> {
    let note = PushNote {
        session_id: message.session_id.to_string(),
        sender: message.sender.to_string(),
        msg_id: message.msg_id.clone(),
    };
    let report = deliver
        .deliver(
            members,
            Some(&message.sender_device),
            &event_for(message),
            Some(&note),
        )
        .await?;
    tracing::info!(
        members = members.len(),
        posted = report.posted,
        gone = report.gone,
        pushed = report.pushed,
        "fanned out"
    );
    Ok(report)
}
