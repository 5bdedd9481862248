//! `DeviceQueueTable`: one partition per device (`pk` = `<userId>#<deviceId>`), one item per
//! message sorted by its ULID (`sk`), so a device reads its queue oldest first with one query.
//!
//! Items carry `ttl` (30 days after queueing), and reads skip expired ones without reading them:
//! the key condition starts after the ULID time of `now - 30 days` (TTL deletion lags by up to
//! days), and the `ttl` is checked in code too.

use super::{backend, codec, epoch_secs, pk_sk_key as key};
use crate::capacity::{SendRecorded, batch_delete, batch_put, query_all, query_pages};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::{DeviceMessage, DeviceQueueStore, QueuedMessage};
use courier_core::usecases::device_messages::{DEVICE_MESSAGE_TTL_DAYS, ulid_time_prefix};
use courier_core::{DeviceId, UserId};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueItem {
    pk: String,
    sk: String,
    sender: String,
    sender_device: String,
    payload: String,
    sent_at: DateTime<Utc>,
    ttl: i64,
}

fn queue_pk(user: &UserId, device: &DeviceId) -> String {
    format!("{user}#{device}")
}

/// Device queues in DynamoDB.
#[derive(Clone)]
pub struct DynamoDeviceQueues {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDeviceQueues {
    /// A repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl DeviceQueueStore for DynamoDeviceQueues {
    async fn enqueue(&self, messages: &[QueuedMessage]) -> Result<(), PortError> {
        let items = messages
            .iter()
            .map(|q| {
                serde_dynamo::to_item(QueueItem {
                    pk: queue_pk(&q.user_id, &q.device_id),
                    sk: q.message.id.clone(),
                    sender: q.message.sender.to_string(),
                    sender_device: q.message.sender_device.to_string(),
                    payload: q.message.payload.clone(),
                    sent_at: q.message.sent_at,
                    ttl: epoch_secs(q.expires_at),
                })
                .map_err(codec)
            })
            .collect::<Result<Vec<Item>, _>>()?;
        batch_put(&self.client, &self.table, items)
            .await
            .map_err(PortError::backend)
    }

    async fn read(
        &self,
        user: &UserId,
        device: &DeviceId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<DeviceMessage>, bool), PortError> {
        // Ids queued at or before this time are expired; "Z" sorts after every id of that ms.
        let cutoff = format!(
            "{}Z",
            ulid_time_prefix(now - chrono::Duration::days(DEVICE_MESSAGE_TTL_DAYS))
        );
        let now_secs = epoch_secs(now);
        let mut out = Vec::new();
        let mut pages = query_pages(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :cutoff")
                .expression_attribute_values(":pk", AttributeValue::S(queue_pk(user, device)))
                .expression_attribute_values(":cutoff", AttributeValue::S(cutoff.clone()))
                .limit((limit + 1) as i32)
                .consistent_read(true),
        );
        while let Some(page) = pages.next().await {
            for item in page.map_err(backend)?.items.unwrap_or_default() {
                let q: QueueItem = serde_dynamo::from_item(item).map_err(codec)?;
                if q.ttl <= now_secs {
                    continue;
                }
                out.push(DeviceMessage {
                    id: q.sk,
                    sender: UserId::from_trusted(q.sender),
                    sender_device: DeviceId::from_trusted(q.sender_device),
                    payload: q.payload,
                    sent_at: q.sent_at,
                });
            }
            if out.len() > limit {
                out.truncate(limit);
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        ids: &[String],
    ) -> Result<usize, PortError> {
        let pk = queue_pk(user, device);
        let removed: Vec<bool> = stream::iter(ids.to_vec())
            .map(|id| {
                let pk = pk.clone();
                async move {
                    let out = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key(&pk, &id)))
                        .return_values(ReturnValue::AllOld)
                        .send_recorded()
                        .await
                        .map_err(backend)?;
                    Ok::<_, PortError>(out.attributes.is_some_and(|a| !a.is_empty()))
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(removed.into_iter().filter(|r| *r).count())
    }

    async fn purge(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError> {
        let keys = query_all(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(queue_pk(user, device)))
                .projection_expression("pk, sk")
                .consistent_read(true),
        )
        .await
        .map_err(backend)?;
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }
}
