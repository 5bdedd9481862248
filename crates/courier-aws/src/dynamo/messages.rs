//! `MessagesTable`: partition = session, sort = sequence number.
//!
//! A message is written once, at the next free sequence number: `attribute_not_exists(seq)`
//! makes two senders race for a number and the loser take the next, so write order is sequence
//! order, with no gaps and no duplicates, and a reader that sees message n+1 (with a consistent
//! read) also sees n.
//!
//! Idempotency on (sender, clientMsgId) costs one small item, `IDEMP#<sender>#<clientMsgId>` in
//! the sessions table, claimed with `attribute_not_exists` *before* the message is written, not in
//! a transaction with it: a transaction bills 2 write units per item, so the pair would cost 4,
//! the claim and the put cost 2. The claim records the session's last sequence number at the
//! time (`floor`), so whoever finds the claim later can tell what happened:
//!
//! - the message exists after `floor` with this sender and clientMsgId: a retry, answered with the
//!   first result (one consistent Query of the messages written since the claim);
//! - it does not, and the claim is younger than [`CLAIM_LEASE_SECS`]: the first attempt is still
//!   running (or died a moment ago): `Conflict`, which clients retry;
//! - it does not, and the claim is older: the first attempt died between the claim and the put
//!   (a function runs at most its timeout, 10 s, far below the lease), so this attempt takes the
//!   claim over with a conditional update and writes the message.
//!
//! A write can be applied while its reply is lost (a dropped connection, DynamoDB answering 500
//! after applying it, a restart), and the SDK then sends it again. Both conditional writes
//! recognise their own earlier attempt instead of taking it for someone else's: the claim carries
//! a random `attempt` id, and the message put asks for the item that failed its condition, so
//! finding its own message (same sender and clientMsgId) at the number means it was written.
//! Without that, the retried put would lose to its own message and write it again one number
//! further: the fault tests' DynamoDB restart once stored a message twice that way.
//!
//! A message `sendMessage` delivers itself carries `inline: true`, and once that delivery ends
//! the function writes its outcome as a small item of the same session at the negative of the
//! message's number ([`DeliveryLog`]): `seq = -n`, `outcome = done | retry`. Being in the same
//! partition, it reaches the stream's consumer on the same shard, after its message, so the
//! consumer usually learns from the stream alone that it has nothing to do; it reads the item
//! (one consistent GetItem) only for a message whose outcome is not in its batch. Every reader
//! of messages asks for `seq > n` with n >= 0 or for the highest seq, so no reader of messages
//! ever sees an outcome item (docs/architecture.md, "Messages").
//!
//! Each session may have a head item at `seq = 0` ([`HEAD_SEQ`]): its disappearing timer, set in
//! one transaction with the `system` message that records the change, and a `floor`. A message
//! sent while the timer is on carries `expiresAt` and a `ttl` attribute, so DynamoDB removes it
//! after it expired; were the session's newest messages all removed, the next number would be
//! one members have read past already. So the stream consumer raises the floor to the number of
//! every such message ([`MessageStore::keep_floor`], long before the TTL comes), and the
//! session's tail is the higher of the last stored message and the floor.

use super::Conditional;
use super::{backend, codec, epoch_secs};
use crate::capacity::SendRecorded;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use courier_core::chat::InlineOutcome;
use courier_core::chat::{Appended, Draft, Message, Tail, timestamp};
use courier_core::error::PortError;
use courier_core::ports::{DeliveryLog, MessageStore};
use courier_core::{MsgId, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How long a (sender, clientMsgId) is remembered: retries come within seconds, a week is ample.
const IDEMPOTENCY_TTL_SECS: i64 = 7 * 24 * 3600;

/// How long a claim without its message belongs to the attempt that made it. Must exceed the
/// longest time a `sendMessage` invocation can run (its Lambda timeout, 10 s in template.yaml;
/// twice that leaves room for clock skew). Every retry within it is answered `Conflict`, so it
/// is also how long a sender waits when an attempt died between its claim and its write (a
/// killed function, DynamoDB failing mid-request): it was 60 s, which the fault tests showed as
/// sends given up after 45 s of retries.
pub const CLAIM_LEASE_SECS: i64 = 20;

/// Attempts at a sequence number before giving up with `Conflict` (each loses only to a
/// message another member wrote at the same moment).
const ATTEMPTS: u32 = 50;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimItem {
    pk: String,
    sk: String,
    session_id: String,
    /// The session's last sequence number when the claim was made: the message is after it.
    floor: u64,
    claimed_at: i64,
    ttl: i64,
    /// The attempt holding the claim (absent from claims written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<String>,
}

/// Messages in DynamoDB.
#[derive(Clone)]
pub struct DynamoMessages {
    client: aws_sdk_dynamodb::Client,
    messages_table: String,
    sessions_table: String,
}

enum Claimed {
    /// This attempt holds the claim: write the message.
    Mine,
    /// Someone else's claim, as stored.
    Theirs(ClaimItem),
}

/// A random id for one `append` call's claim.
fn attempt_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl DynamoMessages {
    /// A repository over the messages table, writing idempotency claims to the sessions table.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        messages_table: impl Into<String>,
        sessions_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            messages_table: messages_table.into(),
            sessions_table: sessions_table.into(),
        }
    }

    fn claim_pk(draft: &Draft) -> String {
        format!("IDEMP#{}#{}", draft.sender, draft.client_msg_id)
    }

    async fn claim(
        &self,
        session: &SessionId,
        draft: &Draft,
        floor: u64,
        at: DateTime<Utc>,
        attempt: &str,
    ) -> Result<Claimed, PortError> {
        let item = ClaimItem {
            pk: Self::claim_pk(draft),
            sk: "IDEMP".into(),
            session_id: session.to_string(),
            floor,
            claimed_at: at.timestamp(),
            ttl: at.timestamp() + IDEMPOTENCY_TTL_SECS,
            attempt: Some(attempt.to_owned()),
        };
        let res = self
            .client
            .put_item()
            .table_name(&self.sessions_table)
            .set_item(Some(serde_dynamo::to_item(&item).map_err(codec)?))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send_recorded()
            .await;
        match res {
            Ok(_) => Ok(Claimed::Mine),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => {
                    let old = c.item().cloned().ok_or(PortError::Conflict)?;
                    let old: ClaimItem = serde_dynamo::from_item(old).map_err(codec)?;
                    if old.attempt.as_deref() == Some(attempt) {
                        // This call's own claim: the SDK resent it after losing the reply.
                        return Ok(Claimed::Mine);
                    }
                    Ok(Claimed::Theirs(old))
                }
                _ => Err(backend(e)),
            },
        }
    }

    /// Takes over a claim whose attempt died; `Conflict` if another retry took it first.
    async fn take_over(
        &self,
        old: &ClaimItem,
        session: &SessionId,
        floor: u64,
        at: DateTime<Utc>,
        attempt: &str,
    ) -> Result<(), PortError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.sessions_table)
            .key("pk", AttributeValue::S(old.pk.clone()))
            .key("sk", AttributeValue::S(old.sk.clone()))
            .update_expression("SET claimedAt = :now, #floor = :f, sessionId = :s, attempt = :a")
            .expression_attribute_names("#floor", "floor")
            // Or already ours: the SDK resending this update after losing its reply.
            .condition_expression("claimedAt = :then OR attempt = :a")
            .expression_attribute_values(":now", AttributeValue::N(at.timestamp().to_string()))
            .expression_attribute_values(":then", AttributeValue::N(old.claimed_at.to_string()))
            .expression_attribute_values(":f", AttributeValue::N(floor.to_string()))
            .expression_attribute_values(":s", AttributeValue::S(session.to_string()))
            .expression_attribute_values(":a", AttributeValue::S(attempt.to_owned()))
            .send_recorded()
            .await;
        match res.unless_condition_failed()? {
            Some(_) => Ok(()),
            None => Err(PortError::Conflict),
        }
    }

    /// The message a claim stands for, if it was written.
    async fn claimed_message(
        &self,
        claim: &ClaimItem,
        draft: &Draft,
    ) -> Result<Option<Message>, PortError> {
        let items = crate::capacity::query_all(
            self.client
                .query()
                .table_name(&self.messages_table)
                .key_condition_expression("sessionId = :s AND seq > :f")
                .filter_expression("#sender = :u AND clientMsgId = :c")
                .expression_attribute_names("#sender", "sender")
                .expression_attribute_values(":s", AttributeValue::S(claim.session_id.clone()))
                .expression_attribute_values(":f", AttributeValue::N(claim.floor.to_string()))
                .expression_attribute_values(":u", AttributeValue::S(draft.sender.to_string()))
                .expression_attribute_values(":c", AttributeValue::S(draft.client_msg_id.clone()))
                .consistent_read(true),
        )
        .await
        .map_err(backend)?;
        Ok(parse(items)?.into_iter().next())
    }

    /// Writes the message at the next free sequence number, starting after `tail`, under the
    /// timer read with the number it is written at (a retry reads both again).
    async fn put_next(
        &self,
        session: &SessionId,
        draft: &Draft,
        mut tail: Tail,
        at: DateTime<Utc>,
    ) -> Result<Message, PortError> {
        for attempt in 1..=ATTEMPTS {
            let seq = tail.seq + 1;
            let message = draft.message(session, seq, at, tail.expiry(draft, at));
            let mut item: HashMap<String, AttributeValue> =
                serde_dynamo::to_item(&message).map_err(codec)?;
            if message.expires_at.is_some() {
                // DynamoDB's TTL removes it some time after it expires; reads stop at expiresAt.
                let ttl = epoch_secs(at) + i64::from(tail.timer);
                item.insert(TTL_ATTRIBUTE.into(), AttributeValue::N(ttl.to_string()));
            }
            if draft.inline {
                item.insert(INLINE_ATTRIBUTE.into(), AttributeValue::Bool(true));
            }
            if let Some(u) = &draft.hidden_from {
                item.insert(
                    HIDDEN_FROM_ATTRIBUTE.into(),
                    AttributeValue::S(u.to_string()),
                );
            }
            let res = self
                .client
                .put_item()
                .table_name(&self.messages_table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(seq)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send_recorded()
                .await;
            match res {
                Ok(_) => return Ok(message),
                Err(e) => {
                    let Some(PutItemError::ConditionalCheckFailedException(c)) =
                        e.as_service_error()
                    else {
                        return Err(backend(e));
                    };
                    if let Some(item) = c.item() {
                        let there = message_from_item(item.clone())?;
                        if there.sender == draft.sender
                            && there.client_msg_id == draft.client_msg_id
                        {
                            // Our own message: the SDK resent the put after losing its reply.
                            return Ok(there);
                        }
                    }
                    // Another member took this number: take the next free one.
                    if attempt > 1 {
                        let jitter = rand::random::<u64>() % 5;
                        tokio::time::sleep(std::time::Duration::from_millis(
                            u64::from(attempt.min(10)) + jitter,
                        ))
                        .await;
                    }
                    let now = self.tail(session).await?;
                    tail = Tail {
                        seq: now.seq.max(seq),
                        timer: now.timer,
                    };
                }
            }
        }
        Err(PortError::Conflict)
    }

    fn query_session(
        &self,
        session: &SessionId,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.messages_table)
            .expression_attribute_values(":s", AttributeValue::S(session.to_string()))
            .consistent_read(true)
    }
}

fn parse(items: Vec<HashMap<String, AttributeValue>>) -> Result<Vec<Message>, PortError> {
    items.into_iter().map(message_from_item).collect()
}

/// A message item read back, with the member it is withheld from (an attribute of its own:
/// [`Message::hidden_from`] is never serialised, so that it never reaches the wire).
fn message_from_item(item: HashMap<String, AttributeValue>) -> Result<Message, PortError> {
    let hidden_from = match item.get(HIDDEN_FROM_ATTRIBUTE) {
        Some(AttributeValue::S(u)) => Some(courier_core::UserId::from_trusted(u.clone())),
        _ => None,
    };
    let mut m: Message = serde_dynamo::from_item(item).map_err(codec)?;
    m.hidden_from = hidden_from;
    Ok(m)
}

/// The attribute of a message item naming the member it is withheld from (a peer who blocked
/// its sender); read by the stream consumer too.
pub const HIDDEN_FROM_ATTRIBUTE: &str = "hiddenFrom";

fn duplicate(m: Message) -> Appended {
    Appended::Duplicate {
        msg_id: m.msg_id,
        seq: m.seq,
        sent_at: m.sent_at,
    }
}

/// The sort key of a session's head item: its disappearing timer and the floor of its sequence
/// numbers (never a message: messages start at 1, outcome items are negative).
pub const HEAD_SEQ: u64 = 0;

/// The attribute DynamoDB's TTL reads on the messages table: a message that disappears is
/// removed some time after its `expiresAt` (reads stop returning it at once).
pub const TTL_ATTRIBUTE: &str = "ttl";

/// A session's head item, as stored (absent: no timer was ever set, no floor kept).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadItem {
    /// The disappearing timer in seconds (0: off).
    #[serde(default)]
    timer: u32,
    /// Every number up to this one was used by a message that disappears (it may be removed).
    #[serde(default)]
    floor: u64,
}

impl DynamoMessages {
    /// The session's head item, read consistently.
    async fn head(&self, session: &SessionId) -> Result<HeadItem, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .key("sessionId", AttributeValue::S(session.to_string()))
            .key("seq", AttributeValue::N(HEAD_SEQ.to_string()))
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        out.item
            .map(serde_dynamo::from_item)
            .transpose()
            .map_err(codec)
            .map(Option::unwrap_or_default)
    }
}

/// The attribute of a message item that asks for inline delivery (read by the stream consumer
/// from the record's new image; never part of [`Message`]).
pub const INLINE_ATTRIBUTE: &str = "inline";

/// The sort key of message `seq`'s outcome item.
pub fn outcome_seq(seq: u64) -> i64 {
    -i64::try_from(seq).unwrap_or(i64::MAX)
}

/// An outcome item: the session, the negative of its message's number, the outcome.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutcomeItem {
    session_id: String,
    seq: i64,
    outcome: InlineOutcome,
}

#[async_trait]
impl DeliveryLog for DynamoMessages {
    async fn record(&self, id: &MsgId, outcome: InlineOutcome) -> Result<(), PortError> {
        let item = OutcomeItem {
            session_id: id.session.to_string(),
            seq: outcome_seq(id.seq),
            outcome,
        };
        // Unconditional: one writer per message (the invocation that stored it), small (one
        // write unit), never seen by a reader of messages (seq < 0).
        self.client
            .put_item()
            .table_name(&self.messages_table)
            .set_item(Some(serde_dynamo::to_item(&item).map_err(codec)?))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn outcome(&self, id: &MsgId) -> Result<Option<InlineOutcome>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .key("sessionId", AttributeValue::S(id.session.to_string()))
            .key("seq", AttributeValue::N(outcome_seq(id.seq).to_string()))
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        out.item
            .map(|i| serde_dynamo::from_item::<_, OutcomeItem>(i).map(|o| o.outcome))
            .transpose()
            .map_err(codec)
    }
}

#[async_trait]
impl MessageStore for DynamoMessages {
    async fn append(
        &self,
        session: &SessionId,
        draft: &Draft,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError> {
        let tail = self.tail(session).await?;
        self.append_after(session, draft, tail, at).await
    }

    async fn append_after(
        &self,
        session: &SessionId,
        draft: &Draft,
        tail: Tail,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError> {
        let attempt = attempt_id();
        let last = tail.seq;
        match self.claim(session, draft, last, at, &attempt).await? {
            Claimed::Mine => {}
            Claimed::Theirs(old) => {
                if let Some(m) = self.claimed_message(&old, draft).await? {
                    return Ok(duplicate(m));
                }
                if at.timestamp() - old.claimed_at < CLAIM_LEASE_SECS {
                    // The first attempt may still be writing it.
                    return Err(PortError::Conflict);
                }
                self.take_over(&old, session, last, at, &attempt).await?;
            }
        }
        self.put_next(session, draft, tail, at)
            .await
            .map(|m| Appended::New(Box::new(m)))
    }

    async fn after(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), PortError> {
        let out = self
            .query_session(session)
            .key_condition_expression("sessionId = :s AND seq > :a")
            .expression_attribute_values(":a", AttributeValue::N(after_seq.to_string()))
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send_recorded()
            .await
            .map_err(backend)?;
        let mut messages = parse(out.items.unwrap_or_default())?;
        // A page can also stop at DynamoDB's 1 MB limit, which leaves a LastEvaluatedKey.
        let more = messages.len() > limit || out.last_evaluated_key.is_some();
        messages.truncate(limit);
        Ok((messages, more))
    }

    async fn erase(&self, id: &MsgId) -> Result<bool, PortError> {
        // An update, not a put: the stream's consumer delivers INSERTs only, so a tombstone is
        // never delivered as a new message (the deletion's own `system` message tells devices).
        let out = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .key("sessionId", AttributeValue::S(id.session.to_string()))
            .key("seq", AttributeValue::N(id.seq.to_string()))
            .condition_expression("attribute_exists(seq)")
            .update_expression("SET #type = :deleted REMOVE payload, attachments")
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(
                ":deleted",
                AttributeValue::S(courier_core::chat::MessageKind::Deleted.as_str().into()),
            )
            .send_recorded()
            .await
            .unless_condition_failed()?;
        Ok(out.is_some())
    }

    async fn get(&self, id: &MsgId) -> Result<Option<Message>, PortError> {
        if id.seq == HEAD_SEQ {
            // The session's head item, not a message.
            return Ok(None);
        }
        // A message is written once and changed at most once, when deleted for everyone, so an
        // eventually consistent read (half the price) that finds it is right but for a deletion
        // a moment old; only a miss is asked again consistently (it may be a moment old).
        for consistent in [false, true] {
            let out = self
                .client
                .get_item()
                .table_name(&self.messages_table)
                .key("sessionId", AttributeValue::S(id.session.to_string()))
                .key("seq", AttributeValue::N(id.seq.to_string()))
                .consistent_read(consistent)
                .send_recorded()
                .await
                .map_err(backend)?;
            if let Some(item) = out.item {
                return message_from_item(item).map(Some);
            }
        }
        Ok(None)
    }

    async fn last(&self, session: &SessionId) -> Result<Option<Message>, PortError> {
        let out = self
            .query_session(session)
            // `seq > 0`: never an outcome item (seq < 0), even in a session with none above it.
            .key_condition_expression("sessionId = :s AND seq > :zero")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .scan_index_forward(false)
            .limit(1)
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(parse(out.items.unwrap_or_default())?.pop())
    }

    async fn tail(&self, session: &SessionId) -> Result<Tail, PortError> {
        // Side by side, both consistent: the last message still stored and the head item
        // (the timer, and the floor under numbers whose messages may have been removed).
        let (last, head) = futures_util::future::join(self.last(session), self.head(session)).await;
        let (last, head) = (last?, head?);
        Ok(Tail {
            seq: last.map_or(0, |m| m.seq).max(head.floor),
            timer: head.timer,
        })
    }

    async fn set_timer(
        &self,
        session: &SessionId,
        record: &Draft,
        seconds: u32,
        at: DateTime<Utc>,
    ) -> Result<Message, PortError> {
        // The record at the next free number and the head's timer in one transaction: a message
        // written after the record was written against the new timer, as its put's condition
        // (the record's number is taken) made it read the tail again.
        for attempt in 1..=ATTEMPTS {
            let tail = self.tail(session).await?;
            let seq = tail.seq + 1;
            let message = record.message(session, seq, at, None);
            let mut item: HashMap<String, AttributeValue> =
                serde_dynamo::to_item(&message).map_err(codec)?;
            if record.inline {
                item.insert(INLINE_ATTRIBUTE.into(), AttributeValue::Bool(true));
            }
            let put = Put::builder()
                .table_name(&self.messages_table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(seq)")
                .build()
                .map_err(PortError::backend)?;
            let head = Update::builder()
                .table_name(&self.messages_table)
                .key("sessionId", AttributeValue::S(session.to_string()))
                .key("seq", AttributeValue::N(HEAD_SEQ.to_string()))
                .update_expression("SET #timer = :t, timerSetAt = :at")
                .expression_attribute_names("#timer", "timer")
                .expression_attribute_values(":t", AttributeValue::N(seconds.to_string()))
                .expression_attribute_values(":at", AttributeValue::S(timestamp(at)))
                .build()
                .map_err(PortError::backend)?;
            let items = vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder().update(head).build(),
            ];
            match super::transact(&self.client, items).await {
                Ok(()) => return Ok(message),
                // Another message took the number: read the tail again.
                Err(PortError::Conflict) if attempt < ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PortError::Conflict)
    }

    async fn keep_floor(&self, session: &SessionId, seq: u64) -> Result<(), PortError> {
        // Only ever up: a stream record redelivered, or read after a later one, changes nothing.
        self.client
            .update_item()
            .table_name(&self.messages_table)
            .key("sessionId", AttributeValue::S(session.to_string()))
            .key("seq", AttributeValue::N(HEAD_SEQ.to_string()))
            .update_expression("SET #floor = :n")
            .condition_expression("attribute_not_exists(#floor) OR #floor < :n")
            .expression_attribute_names("#floor", "floor")
            .expression_attribute_values(":n", AttributeValue::N(seq.to_string()))
            .send_recorded()
            .await
            .unless_condition_failed()?;
        Ok(())
    }
}
