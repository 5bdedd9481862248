//! `MessagesTable`: partition = session, sort = sequence number. A message is written once, in
//! one transaction with its idempotency record (`IDEMP#<sender>#<clientMsgId>` in the sessions
//! table), at the next free sequence number: `attribute_not_exists(seq)` makes two senders race
//! for a number and the loser retry with the next, so there are no gaps and no duplicates, and a
//! reader that sees message n+1 (with a consistent read) also sees n.

use super::{backend, codec, is_transaction_conflict, transaction_error};
use crate::capacity::{Recorded, TOTAL};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use courier_core::chat::{Appended, Draft, Message, timestamp};
use courier_core::error::PortError;
use courier_core::ports::MessageStore;
use courier_core::{MsgId, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How long a (sender, clientMsgId) is remembered: retries come within seconds, a week is ample.
const IDEMPOTENCY_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyItem {
    pk: String,
    sk: String,
    session_id: String,
    msg_id: String,
    seq: u64,
    sent_at: String,
    ttl: i64,
}

/// Messages in DynamoDB.
#[derive(Clone)]
pub struct DynamoMessages {
    client: aws_sdk_dynamodb::Client,
    messages_table: String,
    sessions_table: String,
}

impl DynamoMessages {
    /// A repository over the messages table, writing idempotency records to the sessions table.
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

    fn idempotency_key(draft: &Draft) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S(format!("IDEMP#{}#{}", draft.sender, draft.client_msg_id)),
            ),
            ("sk".to_owned(), AttributeValue::S("IDEMP".into())),
        ])
    }

    async fn first_result(&self, draft: &Draft) -> Result<Appended, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.sessions_table)
            .set_key(Some(Self::idempotency_key(draft)))
            .consistent_read(true)
            .return_consumed_capacity(TOTAL)
            .send()
            .await
            .recorded()
            .map_err(backend)?;
        let item: IdempotencyItem =
            serde_dynamo::from_item(out.item.ok_or(PortError::Conflict)?).map_err(codec)?;
        Ok(Appended::Duplicate {
            msg_id: item.msg_id,
            seq: item.seq,
            sent_at: item.sent_at,
        })
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
    items
        .into_iter()
        .map(|i| serde_dynamo::from_item(i).map_err(codec))
        .collect()
}

#[async_trait]
impl MessageStore for DynamoMessages {
    async fn append(
        &self,
        session: &SessionId,
        draft: &Draft,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError> {
        const ATTEMPTS: u32 = 50;
        for attempt in 1..=ATTEMPTS {
            let seq = self.last(session).await?.map_or(1, |m| m.seq + 1);
            let message = Message {
                msg_id: MsgId {
                    session: session.clone(),
                    seq,
                }
                .to_string(),
                session_id: session.clone(),
                seq,
                sender: draft.sender.clone(),
                sender_device: draft.sender_device.clone(),
                client_msg_id: draft.client_msg_id.clone(),
                kind: draft.kind.clone(),
                payload: draft.payload.clone(),
                attachments: draft.attachments.clone(),
                sent_at: timestamp(at),
            };
            let idem = IdempotencyItem {
                pk: format!("IDEMP#{}#{}", draft.sender, draft.client_msg_id),
                sk: "IDEMP".into(),
                session_id: session.to_string(),
                msg_id: message.msg_id.clone(),
                seq,
                sent_at: message.sent_at.clone(),
                ttl: at.timestamp() + IDEMPOTENCY_TTL_SECS,
            };
            let put_message = Put::builder()
                .table_name(&self.messages_table)
                .set_item(Some(serde_dynamo::to_item(&message).map_err(codec)?))
                .condition_expression("attribute_not_exists(seq)")
                .build()
                .map_err(PortError::backend)?;
            let put_idem = Put::builder()
                .table_name(&self.sessions_table)
                .set_item(Some(serde_dynamo::to_item(&idem).map_err(codec)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(PortError::backend)?;
            let res = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_message).build())
                .transact_items(TransactWriteItem::builder().put(put_idem).build())
                .return_consumed_capacity(TOTAL)
                .send()
                .await
                .recorded();
            let err = match res {
                Ok(_) => return Ok(Appended::New(message)),
                Err(e) => e,
            };
            if let Some(TransactWriteItemsError::TransactionCanceledException(t)) =
                err.as_service_error()
            {
                let code = |i: usize| {
                    t.cancellation_reasons()
                        .get(i)
                        .and_then(|r| r.code())
                        .unwrap_or("None")
                };
                if code(1) == "ConditionalCheckFailed" {
                    return self.first_result(draft).await;
                }
                if code(0) == "ConditionalCheckFailed" || is_transaction_conflict(&err) {
                    // Another sender took this number (or touched the same item): take the next.
                    let jitter = rand::random::<u64>() % 5;
                    tokio::time::sleep(std::time::Duration::from_millis(
                        u64::from(attempt.min(10)) + jitter,
                    ))
                    .await;
                    continue;
                }
            }
            return Err(transaction_error(err));
        }
        Err(PortError::Conflict)
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
            .return_consumed_capacity(TOTAL)
            .send()
            .await
            .recorded()
            .map_err(backend)?;
        let mut messages = parse(out.items.unwrap_or_default())?;
        // A page can also stop at DynamoDB's 1 MB limit, which leaves a LastEvaluatedKey.
        let more = messages.len() > limit || out.last_evaluated_key.is_some();
        messages.truncate(limit);
        Ok((messages, more))
    }

    async fn get(&self, id: &MsgId) -> Result<Option<Message>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .key("sessionId", AttributeValue::S(id.session.to_string()))
            .key("seq", AttributeValue::N(id.seq.to_string()))
            .consistent_read(true)
            .return_consumed_capacity(TOTAL)
            .send()
            .await
            .recorded()
            .map_err(backend)?;
        out.item
            .map(|i| serde_dynamo::from_item(i).map_err(codec))
            .transpose()
    }

    async fn last(&self, session: &SessionId) -> Result<Option<Message>, PortError> {
        let out = self
            .query_session(session)
            .key_condition_expression("sessionId = :s")
            .scan_index_forward(false)
            .limit(1)
            .return_consumed_capacity(TOTAL)
            .send()
            .await
            .recorded()
            .map_err(backend)?;
        Ok(parse(out.items.unwrap_or_default())?.pop())
    }
}
