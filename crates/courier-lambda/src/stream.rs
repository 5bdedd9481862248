//! The fan-out function: DynamoDB stream records of the messages table -> deliveries.

use aws_lambda_events::event::dynamodb::Event;
use courier_core::chat::Message;
use courier_core::ports::SessionStore;
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::fan_out::fan_out;
use serde_json::{Value, json};

/// Delivers each new message in order. On the first failure it stops and reports that record
/// (and so everything after it) as failed, so Lambda retries from there in order; records
/// already delivered may be delivered again, which clients de-duplicate by `msgId`.
pub async fn handle(sessions: &dyn SessionStore, deliver: &Deliverer<'_>, event: Event) -> Value {
    for record in event.records {
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
        if let Err(e) = fan_out(sessions, deliver, &message).await {
            tracing::warn!(error = %e, seq = message.seq, "fan-out failed; the batch is retried from this record");
            return json!({ "batchItemFailures": [{ "itemIdentifier": id }] });
        }
    }
    json!({ "batchItemFailures": [] })
}
