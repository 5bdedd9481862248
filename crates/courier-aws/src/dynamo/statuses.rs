//! `StatusTable`: one partition per poster (`pk` = user id), holding its statuses
//! (`STATUS#<statusId>`, ULIDs, so one query reads them oldest first) and who viewed each
//! (`VIEW#<statusId>#<viewerId>`, written once with the first view's time). Every item carries
//! `ttl` = the status's expiry for DynamoDB TTL; since TTL deletion lags, reads compare
//! `expiresAt` with `now` in code.

use super::request::{get_consistent, put, query_decoded};
use super::{Item, backend, codec, epoch_secs, pk_sk_key as key};
use crate::capacity::{SendRecorded, batch_delete, query_all, query_pages};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::{Status, StatusStore, StatusView};
use courier_core::{DeviceId, UserId};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

const STATUS_PREFIX: &str = "STATUS#";
const VIEW_PREFIX: &str = "VIEW#";
/// Sorts after every character of a status id or user id (ASCII letters, digits, `_`).
const HIGH: &str = "~";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusItem {
    pk: String,
    sk: String,
    device_id: String,
    payload: String,
    #[serde(default)]
    attachments: Vec<String>,
    posted_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ttl: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewItem {
    viewer: String,
    viewed_at: DateTime<Utc>,
}

fn status_sk(id: &str) -> String {
    format!("{STATUS_PREFIX}{id}")
}

fn views_prefix(id: &str) -> String {
    format!("{VIEW_PREFIX}{id}#")
}

fn to_status(i: StatusItem) -> Status {
    Status {
        user_id: UserId::from_trusted(i.pk),
        status_id: i.sk.trim_start_matches(STATUS_PREFIX).to_owned(),
        device_id: DeviceId::from_trusted(i.device_id),
        payload: i.payload,
        attachments: i.attachments,
        posted_at: i.posted_at,
        expires_at: i.expires_at,
    }
}

/// Status posts and their viewers in DynamoDB.
#[derive(Clone)]
pub struct DynamoStatuses {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStatuses {
    /// A repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The keys of every item of a poster whose sort key starts with `prefix` (all: `None`).
    async fn keys(&self, user: &UserId, prefix: Option<&str>) -> Result<Vec<Item>, PortError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", AttributeValue::S(user.to_string()))
            .projection_expression("pk, sk")
            .consistent_read(true);
        let query = match prefix {
            Some(p) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":p", AttributeValue::S(p.to_owned())),
            None => query.key_condition_expression("pk = :pk"),
        };
        query_all(query).await.map_err(backend)
    }
}

#[async_trait]
impl StatusStore for DynamoStatuses {
    async fn put_status(&self, status: &Status) -> Result<(), PortError> {
        let item = StatusItem {
            pk: status.user_id.to_string(),
            sk: status_sk(&status.status_id),
            device_id: status.device_id.to_string(),
            payload: status.payload.clone(),
            attachments: status.attachments.clone(),
            posted_at: status.posted_at,
            expires_at: status.expires_at,
            ttl: epoch_secs(status.expires_at),
        };
        put(&self.client, &self.table, item).await
    }

    async fn live_statuses(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Status>, bool), PortError> {
        // A poster has a few dozen live statuses at most (plus expired ones TTL has not deleted
        // yet): one query reads them all; expired ones are left out here.
        let lo = status_sk(after.unwrap_or(""));
        let items: Vec<StatusItem> = query_decoded(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", AttributeValue::S(user.to_string()))
                .expression_attribute_values(":lo", AttributeValue::S(lo))
                .expression_attribute_values(":hi", AttributeValue::S(status_sk(HIGH)))
                .consistent_read(true),
        )
        .await?;
        let mut live = Vec::new();
        for s in items.into_iter().map(to_status) {
            if s.expires_at > now && after != Some(s.status_id.as_str()) {
                live.push(s);
            }
        }
        let more = live.len() > limit;
        live.truncate(limit);
        Ok((live, more))
    }

    async fn status(
        &self,
        user: &UserId,
        status_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Status>, PortError> {
        let item: Option<StatusItem> = get_consistent(
            &self.client,
            &self.table,
            key(user.as_str(), &status_sk(status_id)),
        )
        .await?;
        Ok(item.map(to_status).filter(|s| s.expires_at > now))
    }

    async fn record_views(
        &self,
        poster: &UserId,
        statuses: &[Status],
        viewer: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let views: Vec<(String, i64)> = statuses
            .iter()
            .map(|s| {
                (
                    format!("{}{viewer}", views_prefix(&s.status_id)),
                    epoch_secs(s.expires_at),
                )
            })
            .collect();
        let (pk, viewer, at) = (
            poster.to_string(),
            viewer.to_string(),
            courier_core::chat::timestamp(at),
        );
        stream::iter(views)
            .map(|(sk, ttl)| {
                let request = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&pk, &sk)))
                    .update_expression(
                        "SET viewer = :v, viewedAt = if_not_exists(viewedAt, :t), #ttl = :ttl",
                    )
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":v", AttributeValue::S(viewer.clone()))
                    .expression_attribute_values(":t", AttributeValue::S(at.clone()))
                    .expression_attribute_values(":ttl", AttributeValue::N(ttl.to_string()));
                async move { request.send_recorded().await.map_err(backend).map(|_| ()) }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn viewers(
        &self,
        poster: &UserId,
        status_id: &str,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<(Vec<StatusView>, bool), PortError> {
        let prefix = views_prefix(status_id);
        let lo = match after {
            Some(a) => format!("{prefix}{a}"),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let mut pages = query_pages(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", AttributeValue::S(poster.to_string()))
                .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                .expression_attribute_values(":hi", AttributeValue::S(format!("{prefix}{HIGH}")))
                .limit((limit + 2) as i32)
                .consistent_read(true),
        );
        while let Some(page) = pages.next().await {
            for item in page.map_err(backend)?.items.unwrap_or_default() {
                let v: ViewItem = serde_dynamo::from_item(item).map_err(codec)?;
                if after.is_some_and(|a| a.as_str() == v.viewer) {
                    continue;
                }
                out.push(StatusView {
                    viewer: UserId::from_trusted(v.viewer),
                    viewed_at: v.viewed_at,
                });
            }
            if out.len() > limit {
                out.truncate(limit);
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    async fn remove_status(&self, poster: &UserId, status_id: &str) -> Result<(), PortError> {
        let mut keys = self.keys(poster, Some(&views_prefix(status_id))).await?;
        keys.push(key(poster.as_str(), &status_sk(status_id)));
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }

    async fn delete_statuses(&self, user: &UserId) -> Result<(), PortError> {
        let keys = self.keys(user, None).await?;
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }
}
