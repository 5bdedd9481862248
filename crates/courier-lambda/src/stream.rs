//! The fan-out function: DynamoDB stream records of the messages table -> deliveries.

use aws_lambda_events::event::dynamodb::Event;
use courier_core::chat::Message;
use courier_core::ports::SessionStore;
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::deliver::DeliveryReport;
use courier_core::usecases::fan_out::fan_out_session;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

/// Per delivered message: `FanOutSize` (frames posted plus pushes sent); per session of a batch:
/// `FanOutDurationMs`; in all: `PushesSent`.
fn record_fan_out(reports: &[DeliveryReport], took: std::time::Duration) {
    use crate::telemetry::{Unit, count, observe};
    for r in reports {
        observe("FanOutSize", Unit::None, (r.posted + r.pushed) as f64);
        if r.pushed > 0 {
            count("PushesSent", r.pushed as u64);
        }
    }
    observe(
        "FanOutDurationMs",
        Unit::Milliseconds,
        took.as_secs_f64() * 1000.0,
    );
}

/// Sessions of one batch fanned out at once (each session's messages stay in order).
pub const MAX_CONCURRENT_SESSIONS: usize = 16;

/// Delivers each new message: the sessions of a batch side by side, each session's messages in
/// order, its members read once per batch. When a session's delivery fails, that session stops
/// at the failed record; the batch reports the earliest failed record, so Lambda retries from
/// there (records after it in other sessions are delivered again, which clients de-duplicate by
/// `msgId`).
pub async fn handle(sessions: &dyn SessionStore, deliver: &Deliverer<'_>, event: Event) -> Value {
    // (position in the batch, stream sequence number, message), grouped by session in order.
    let mut groups: Vec<Vec<(usize, String, Message)>> = Vec::new();
    for (i, record) in event.records.into_iter().enumerate() {
        if record.event_name != "INSERT" {
            continue;
        }
        let id = record.change.sequence_number.clone().unwrap_or_default();
        let message: Message = match serde_dynamo::from_item(record.change.new_image) {
            Ok(m) => m,
            Err(e) => {
                // Not a message (nothing else is written to this table): skip, don't block the shard.
                tracing::error!(error = %e, "stream record is not a message; skipped");
                continue;
            }
        };
        match groups
            .iter_mut()
            .find(|g| g[0].2.session_id == message.session_id)
        {
            Some(g) => g.push((i, id, message)),
            None => groups.push(vec![(i, id, message)]),
        }
    }
    let failures: Vec<(usize, String)> = stream::iter(groups)
        .map(|group| async move {
            let messages: Vec<Message> = group.iter().map(|(_, _, m)| m.clone()).collect();
            let started = std::time::Instant::now();
            match fan_out_session(sessions, deliver, &messages).await {
                Ok(reports) => {
                    record_fan_out(&reports, started.elapsed());
                    None
                }
                Err((at, e)) => {
                    let (pos, id, m) = &group[at];
                    tracing::warn!(error = %e, session_id = %m.session_id, seq = m.seq,
                        "fan-out failed; the batch is retried from this record");
                    Some((*pos, id.clone()))
                }
            }
        })
        .buffer_unordered(MAX_CONCURRENT_SESSIONS)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    match failures.into_iter().min_by_key(|(pos, _)| *pos) {
        Some((_, id)) => json!({ "batchItemFailures": [{ "itemIdentifier": id }] }),
        None => json!({ "batchItemFailures": [] }),
    }
}
