//! `MediaTable`: per media file, `MEDIA#<mediaId>`/`UPLOAD` {uploader, size, contentType,
//! createdAt} and one `MEDIA#<mediaId>`/`REF#<place>` per place it was sent to
//! (`REF#SESSION#<sessionId>#<seq>`, per message), so a download check is one GetItem and one Query of the same
//! partition, and attaching again overwrites the same item (idempotent).
//!
//! An `UPLOAD` item carries `ttl` (epoch seconds, [`UNATTACHED_RECORD_SECS`] after it was
//! handed out) until something refers to it: DynamoDB TTL then removes the records of uploads
//! never attached. A message's reference removes `ttl`, so media sent in a chat is kept; a
//! status's reference only moves `ttl` to when the status has expired (and carries that `ttl`
//! itself), so media only statuses used goes with them.

use super::Conditional;
use super::request::{get_consistent, put, sk_prefix_query};
use super::{backend, codec, pk_sk_key};
use crate::capacity::{SendRecorded, query_all};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::media::{MediaId, MediaRef, MediaStore, MediaUpload, UNATTACHED_RECORD_SECS};
use serde::{Deserialize, Serialize};

const UPLOAD_SK: &str = "UPLOAD";
const REF_PREFIX: &str = "REF#";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    upload: MediaUpload,
    /// When DynamoDB TTL may remove it (epoch seconds); absent once attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefItem {
    pk: String,
    sk: String,
    added_at: DateTime<Utc>,
    /// When DynamoDB TTL may remove it (a status's reference, once the status is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<i64>,
}

fn media_pk(id: &MediaId) -> String {
    format!("MEDIA#{id}")
}

/// Media upload records and references in DynamoDB.
#[derive(Clone)]
pub struct DynamoMedia {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoMedia {
    /// A repository over the media table.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl MediaStore for DynamoMedia {
    async fn create(&self, upload: &MediaUpload) -> Result<(), PortError> {
        let item = UploadItem {
            pk: media_pk(&upload.media_id),
            sk: UPLOAD_SK.to_owned(),
            upload: upload.clone(),
            ttl: Some(upload.created_at.timestamp() + UNATTACHED_RECORD_SECS),
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(item).map_err(codec)?))
            .condition_expression("attribute_not_exists(pk)")
            .send_recorded()
            .await
            .or_conflict()?;
        Ok(())
    }

    async fn get(&self, id: &MediaId) -> Result<Option<MediaUpload>, PortError> {
        let item: Option<UploadItem> = get_consistent(
            &self.client,
            &self.table,
            pk_sk_key(&media_pk(id), UPLOAD_SK),
        )
        .await?;
        Ok(item.map(|u| u.upload))
    }

    async fn add_ref(
        &self,
        id: &MediaId,
        place: &MediaRef,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), PortError> {
        let item = RefItem {
            pk: media_pk(id),
            sk: format!("{REF_PREFIX}{}", place.key()),
            added_at: Utc::now(),
            // A status's reference goes with the record it keeps.
            ttl: until.map(|t| t.timestamp()),
        };
        put(&self.client, &self.table, item).await?;
        // Referred to now: the upload's record is kept (after the reference is written, so a
        // failure here leaves at worst a record that expires while a retried send re-attaches).
        // For good (a message): `ttl` goes. Until a status expires: `ttl` moves later, only
        // while there is one (a message's reference removed it for good) and it is earlier.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(&media_pk(id), UPLOAD_SK)))
            .expression_attribute_names("#ttl", "ttl");
        let update = match until {
            None => update
                .update_expression("REMOVE #ttl")
                .condition_expression("attribute_exists(pk)"),
            Some(t) => update
                .update_expression("SET #ttl = :t")
                .condition_expression("attribute_exists(#ttl) AND #ttl < :t")
                .expression_attribute_values(":t", AttributeValue::N(t.timestamp().to_string())),
        };
        // A failed condition: no upload record (it expired, or never was), or it is kept long
        // enough already; nothing to do.
        update.send_recorded().await.unless_condition_failed()?;
        Ok(())
    }

    async fn remove_ref(&self, id: &MediaId, place: &MediaRef) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(
                &media_pk(id),
                &format!("{REF_PREFIX}{}", place.key()),
            )))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn refs(&self, id: &MediaId) -> Result<Vec<MediaRef>, PortError> {
        let items = query_all(
            sk_prefix_query(&self.client, &self.table, media_pk(id), REF_PREFIX)
                .projection_expression("sk")
                .consistent_read(true),
        )
        .await
        .map_err(backend)?;
        Ok(items
            .iter()
            .filter_map(|i| match i.get("sk") {
                Some(AttributeValue::S(s)) => {
                    s.strip_prefix(REF_PREFIX).and_then(MediaRef::from_key)
                }
                _ => None,
            })
            .collect())
    }
}
