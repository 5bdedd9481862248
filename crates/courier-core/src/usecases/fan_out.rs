//! The fan-out: a stored message goes to every device of every member but the sending device,
//! live where connected, by push where not. Runs from the messages table's stream, so it is
//! retried after a failure: delivery is at-least-once and clients de-duplicate by `msgId`.

use super::deliver::{Deliverer, DeliveryReport};
use crate::chat::Message;
use crate::error::PortError;
use crate::ports::{PushNote, SessionStore};
use crate::protocol::event_for;

/// Delivers one stored message.
#[tracing::instrument(skip_all, fields(session_id = %message.session_id, seq = message.seq))]
pub async fn fan_out(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    message: &Message,
) -> Result<DeliveryReport, PortError> {
    let members: Vec<_> = sessions
        .members(&message.session_id)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    let note = PushNote {
        session_id: message.session_id.to_string(),
        sender: message.sender.to_string(),
        msg_id: message.msg_id.clone(),
    };
    let report = deliver
        .deliver(
            &members,
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
