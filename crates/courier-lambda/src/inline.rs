//! `sendMessage`: store the message, answer, and deliver it in the same invocation.
//!
//! The reply goes out through the management API (PostToConnection to the caller's connection)
//! side by side with the delivery, instead of as the route response, which API Gateway would
//! send only once the function returns, that is after the last post of the fan-out: in a group
//! of 257 the sender would wait for 256 posts. The route response is used only when the reply
//! could not be posted (it then still reaches the sender, later). The stream consumer
//! ([`crate::stream`]) delivers what this invocation did not finish.

use crate::routes;
use crate::ws::respond;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use courier_core::ConnectionId;
use courier_core::chat::InlineOutcome;
use courier_core::ports::{DeliveryLog, GatewayError, SessionStore};
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::deliver::Outbound;
use courier_core::usecases::fan_out;
use courier_core::usecases::send_message;
use std::time::{Duration, Instant};

/// How long the inline delivery may take before it stops and leaves the rest to the stream
/// consumer (recorded as [`InlineOutcome::Retry`]): well inside the function's 10 s timeout,
/// leaving time to record that.
pub const INLINE_BUDGET: Duration = Duration::from_secs(6);

/// What the `sendMessage` handler works with.
pub struct SendMessage<'a> {
    /// Storing the message.
    pub send: &'a send_message::Deps<'a>,
    /// A group's members, read after the write.
    pub sessions: &'a dyn SessionStore,
    /// Posts (the reply and the fan-out) and pushes.
    pub deliver: &'a Deliverer<'a>,
    /// Where the delivery's outcome is recorded for the stream consumer.
    pub log: &'a dyn DeliveryLog,
}

/// Handles one `sendMessage` frame.
pub async fn handle(
    h: &SendMessage<'_>,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let (frame, outbound) = routes::reply("sendMessage", event, |who, _, p| async move {
        let sent = send_message::send(h.send, &who, p).await?;
        if sent.new {
            // A retry of an already stored clientMsgId is not a new message.
            crate::telemetry::count_by("MessagesSent", "Kind", sent.kind, 1);
        }
        Ok((sent.reply, sent.outbound))
    })
    .await;
    let reply = async {
        let conn = event.request_context.connection_id.as_deref()?;
        match h
            .deliver
            .gateway
            .post(&ConnectionId::new(conn), &frame)
            .await
        {
            Ok(()) => None,
            // The sender is gone: nobody to answer.
            Err(GatewayError::Gone) => None,
            Err(e) => {
                tracing::warn!(error = %e, "reply not posted; answering as the route response");
                Some(())
            }
        }
    };
    let delivery = async {
        if let Some(out) = outbound {
            deliver(h.sessions, h.deliver, h.log, &out).await;
        }
    };
    let (fallback, ()) = futures_util::future::join(reply, delivery).await;
    if fallback.is_some() || event.request_context.connection_id.is_none() {
        respond(200, Some(frame))
    } else {
        respond(200, None)
    }
}

/// The inline delivery of a stored message, within [`INLINE_BUDGET`], and its outcome recorded
/// (`sendMessage`'s message, `initiateDirectChatSession`'s handshake).
pub async fn deliver(
    sessions: &dyn SessionStore,
    deliverer: &Deliverer<'_>,
    log: &dyn DeliveryLog,
    out: &Outbound,
) {
    let started = Instant::now();
    let run = fan_out::deliver_inline(sessions, deliverer, log, out);
    match tokio::time::timeout(INLINE_BUDGET, run).await {
        Ok((outcome, result)) => {
            if let Ok(report) = result {
                crate::stream::record_fan_out(std::slice::from_ref(&report), started.elapsed());
            }
            let label = match outcome {
                InlineOutcome::Done => "done",
                InlineOutcome::Retry => "retry",
            };
            crate::telemetry::count_by("InlineDeliveries", "Outcome", label, 1);
        }
        Err(_) => {
            tracing::warn!(
                session_id = %out.message.session_id,
                seq = out.message.seq,
                "inline delivery over its budget; the stream consumer finishes it"
            );
            fan_out::record(log, out, InlineOutcome::Retry).await;
            crate::telemetry::count_by("InlineDeliveries", "Outcome", "timeout", 1);
        }
    }
}
