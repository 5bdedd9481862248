//! The fan-out function: the messages table's stream, the safety net of delivery.
//!
//! `sendMessage` delivers what it stores itself and then writes how that ended (an outcome item,
//! `seq = -n`, in the message's partition: it reaches this shard right after its message). This
//! consumer delivers a message only when nobody else did:
//! - it was not written for inline delivery (group changes, handshakes of
//!   `initiateDirectChatSession`, messages stored before inline delivery existed);
//! - its writer recorded `retry` (a post or push failed in a way worth retrying, or it ran out of
//!   its time budget);
//! - its writer recorded nothing by the time it cannot be running any more ([`grace`] after the
//!   message's `sentAt`): it died or timed out between its write and its record.
//!
//! In the common case the outcome is in the same batch as its message and costs nothing; a
//! message whose outcome is not in the batch costs consistent GetItems of the outcome, at growing
//! intervals, until it appears or the grace is over.

use aws_lambda_events::event::dynamodb::Event;
use courier_core::chat::{InlineOutcome, Membership, Message};
use courier_core::ports::{DeliveryLog, MessageStore, SessionStore};
use courier_core::usecases::deliver::{Deliverer, DeliveryReport};
use courier_core::usecases::fan_out::{StreamAction, deliver_stored, stream_action};
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Per delivered message: `FanOutSize` (frames posted plus pushes sent), `FramesRefused` when the
/// gateway refused frames for good; per delivery run: `FanOutDurationMs`; in all: `PushesSent`.
pub fn record_fan_out(reports: &[DeliveryReport], took: Duration) {
    use crate::telemetry::{Unit, count, observe};
    for r in reports {
        observe("FanOutSize", Unit::None, (r.posted + r.pushed) as f64);
        if r.pushed > 0 {
            count("PushesSent", r.pushed as u64);
        }
        if r.refused > 0 {
            count("FramesRefused", r.refused as u64);
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

/// How long after a message's `sentAt` the invocation that stored it may still be delivering it:
/// `sendMessage`'s Lambda timeout (10 s in template.yaml) and a second for clock skew. Set by
/// `INLINE_DELIVERY_GRACE_MS` (template parameter `InlineDeliveryGraceMs`).
pub fn grace() -> Duration {
    std::env::var("INLINE_DELIVERY_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_GRACE)
}

/// [`grace`] when nothing is configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(11);

/// The first pause before asking the delivery log again; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(25);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The parts of a record's new image that say what it is: a message (`seq > 0`, maybe `inline`)
/// or the outcome of a message's inline delivery (`seq < 0`, `outcome`).
#[derive(Deserialize)]
struct Head {
    seq: i64,
    #[serde(default)]
    inline: bool,
    #[serde(default)]
    outcome: Option<InlineOutcome>,
    /// `courier_aws::dynamo::HIDDEN_FROM_ATTRIBUTE`: the member the message is withheld from.
    #[serde(default, rename = "hiddenFrom")]
    hidden_from: Option<courier_core::UserId>,
}

/// One message of the batch: its position, its stream sequence number, whether it was written
/// for inline delivery, and the message.
struct Pending {
    pos: usize,
    id: String,
    inline: bool,
    message: Message,
}

/// What the consumer reads and keeps of the messages table: the inline deliveries' outcomes,
/// and the sessions' floors ([`MessageStore::keep_floor`]).
pub trait StoredMessages: DeliveryLog + MessageStore {}

impl<T: DeliveryLog + MessageStore> StoredMessages for T {}

/// Delivers what needs delivering: the sessions of a batch side by side, each session's messages
/// in order, its members read at most once per batch. When a session's delivery fails, that
/// session stops at the failed record; the batch reports the earliest failed record, so Lambda
/// retries from there (records after it in other sessions are delivered again, which clients
/// de-duplicate by `msgId`).
pub async fn handle(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    log: &dyn StoredMessages,
    grace: Duration,
    event: Event,
) -> Value {
    let mut groups: Vec<Vec<Pending>> = Vec::new();
    let mut outcomes: HashMap<(String, u64), InlineOutcome> = HashMap::new();
    for (pos, record) in event.records.into_iter().enumerate() {
        if record.event_name != "INSERT" {
            continue;
        }
        let id = record.change.sequence_number.clone().unwrap_or_default();
        let image = record.change.new_image;
        let head: Option<Head> = serde_dynamo::from_item(image.clone()).ok();
        if head.as_ref().is_some_and(|h| h.seq == 0) {
            // A session's head item (its disappearing timer and floor), not a message.
            continue;
        }
        if let Some(Head {
            seq,
            outcome: Some(outcome),
            ..
        }) = head
            && seq < 0
        {
            let session = match image.get("sessionId") {
                Some(serde_dynamo::AttributeValue::S(s)) => s.clone(),
                _ => continue,
            };
            outcomes.insert((session, seq.unsigned_abs()), outcome);
            continue;
        }
        let message: Message = match serde_dynamo::from_item(image) {
            Ok(m) => Message {
                hidden_from: head.as_ref().and_then(|h| h.hidden_from.clone()),
                ..m
            },
            Err(e) => {
                // Neither a message nor an outcome (nothing else is written to this table):
                // skipped, so that it cannot block the shard.
                tracing::error!(error = %e, "stream record is not a message; skipped");
                crate::telemetry::count("StreamRecordsSkipped", 1);
                continue;
            }
        };
        let pending = Pending {
            pos,
            id,
            inline: head.is_some_and(|h| h.inline),
            message,
        };
        match groups
            .iter_mut()
            .find(|g| g[0].message.session_id == pending.message.session_id)
        {
            Some(g) => g.push(pending),
            None => groups.push(vec![pending]),
        }
    }
    let outcomes = &outcomes;
    let failures: Vec<(usize, String)> = stream::iter(groups)
        .map(|group| async move {
            deliver_session(sessions, deliver, log, grace, outcomes, &group).await
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

/// One session's messages of the batch, in order; the failed record, if one failed.
async fn deliver_session(
    sessions: &dyn SessionStore,
    deliver: &Deliverer<'_>,
    log: &dyn StoredMessages,
    grace: Duration,
    outcomes: &HashMap<(String, u64), InlineOutcome>,
    group: &[Pending],
) -> Option<(usize, String)> {
    // Messages that disappear will be removed by DynamoDB's TTL: the session's floor must be
    // above them first, or the next message could take a number members have read past. One
    // update per session and batch; if it fails the batch is retried from this session's first
    // record (what was delivered again is de-duplicated by clients).
    let disappearing = group
        .iter()
        .filter(|p| p.message.expires_at.is_some())
        .map(|p| p.message.seq)
        .max();
    if let Some(seq) = disappearing
        && let Err(e) = log.keep_floor(&group[0].message.session_id, seq).await
    {
        tracing::warn!(error = %e, session_id = %group[0].message.session_id,
            "the session's floor was not kept; the batch is retried from this session");
        return Some((group[0].pos, group[0].id.clone()));
    }
    let started = std::time::Instant::now();
    let mut members: Option<Vec<Membership>> = None;
    let mut reports = Vec::new();
    for p in group {
        let m = &p.message;
        let known = outcomes.get(&(m.session_id.to_string(), m.seq)).copied();
        let action = match stream_action(p.inline, known) {
            StreamAction::Wait => settle(log, m, grace).await,
            action => action,
        };
        if action == StreamAction::Skip {
            crate::telemetry::count_by("StreamDeliveries", "Action", "skipped", 1);
            continue;
        }
        let result = async {
            if members.is_none() {
                members = Some(sessions.members(&m.session_id).await?);
            }
            deliver_stored(sessions, deliver, m, members.as_deref()).await
        }
        .await;
        match result {
            Ok(report) => {
                let why = if p.inline { "retried" } else { "delivered" };
                crate::telemetry::count_by("StreamDeliveries", "Action", why, 1);
                reports.push(report);
            }
            Err(e) => {
                tracing::warn!(error = %e, session_id = %m.session_id, seq = m.seq,
                    "fan-out failed; the batch is retried from this record");
                record_fan_out(&reports, started.elapsed());
                return Some((p.pos, p.id.clone()));
            }
        }
    }
    if !reports.is_empty() {
        record_fan_out(&reports, started.elapsed());
    }
    None
}

/// Waits for the outcome of a message's inline delivery, asking the log at growing intervals,
/// until it is known or the grace after the message's `sentAt` is over (then: deliver). A log
/// that cannot be read counts as no outcome yet.
async fn settle(log: &dyn DeliveryLog, message: &Message, grace: Duration) -> StreamAction {
    let sent_at = chrono::DateTime::parse_from_rfc3339(&message.sent_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    let deadline = sent_at + chrono::Duration::from_std(grace).unwrap_or_default();
    let mut pause = FIRST_PAUSE;
    loop {
        match log.outcome(&message.id()).await {
            Ok(outcome) => match stream_action(true, outcome) {
                StreamAction::Wait => {}
                action => return action,
            },
            Err(e) => tracing::warn!(error = %e, "delivery log not readable; asking again"),
        }
        let left = (deadline - chrono::Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            tracing::warn!(session_id = %message.session_id, seq = message.seq,
                "no inline delivery outcome within the grace; delivering from the stream");
            crate::telemetry::count("InlineDeliveriesAbandoned", 1);
            return StreamAction::Deliver;
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
