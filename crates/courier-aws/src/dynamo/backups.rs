//! User backup records in `BackupTable`: `USER#<userId>`/`BACKUP#<backupId>` {size, createdAt,
//! complete}. A pending record carries `expiresAt` (TTL) until its upload is seen, so an upload
//! that never happens leaves nothing behind. A user's records are one Query (a handful at most).

use super::Conditional;
use super::request::{get_consistent, put, query_decoded, sk_prefix_query};
use super::{backend, epoch_secs, pk_sk_key};
use crate::capacity::SendRecorded;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use courier_core::UserId;
use courier_core::error::PortError;
use courier_core::ports::{BackupRecord, BackupStore};
use serde::{Deserialize, Serialize};

const BACKUP_PREFIX: &str = "BACKUP#";
/// A pending record outlives its upload URL by a day, then DynamoDB's TTL removes it.
const PENDING_TTL_HOURS: i64 = 24;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackupItem {
    pk: String,
    sk: String,
    backup_id: String,
    size: u64,
    created_at: DateTime<Utc>,
    complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

fn user_pk(u: &UserId) -> String {
    format!("USER#{u}")
}

fn backup_sk(id: &str) -> String {
    format!("{BACKUP_PREFIX}{id}")
}

impl BackupItem {
    fn record(self) -> Option<BackupRecord> {
        Some(BackupRecord {
            user_id: UserId::from_trusted(self.pk.strip_prefix("USER#")?),
            backup_id: self.backup_id,
            size: self.size,
            created_at: self.created_at,
            complete: self.complete,
        })
    }
}

/// Backup records in DynamoDB.
#[derive(Clone)]
pub struct DynamoBackups {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoBackups {
    /// A repository over the backup table.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl BackupStore for DynamoBackups {
    async fn put_backup(&self, b: &BackupRecord) -> Result<(), PortError> {
        let item = BackupItem {
            pk: user_pk(&b.user_id),
            sk: backup_sk(&b.backup_id),
            backup_id: b.backup_id.clone(),
            size: b.size,
            created_at: b.created_at,
            complete: b.complete,
            expires_at: (!b.complete)
                .then(|| epoch_secs(b.created_at + chrono::Duration::hours(PENDING_TTL_HOURS))),
        };
        put(&self.client, &self.table, item).await
    }

    async fn backups(&self, user: &UserId) -> Result<Vec<BackupRecord>, PortError> {
        let items: Vec<BackupItem> = query_decoded(
            sk_prefix_query(&self.client, &self.table, user_pk(user), BACKUP_PREFIX)
                .consistent_read(true),
        )
        .await?;
        let mut found: Vec<BackupRecord> =
            items.into_iter().filter_map(BackupItem::record).collect();
        found.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.backup_id.cmp(&a.backup_id))
        });
        Ok(found)
    }

    async fn backup(
        &self,
        user: &UserId,
        backup_id: &str,
    ) -> Result<Option<BackupRecord>, PortError> {
        let item: Option<BackupItem> = get_consistent(
            &self.client,
            &self.table,
            pk_sk_key(&user_pk(user), &backup_sk(backup_id)),
        )
        .await?;
        Ok(item.and_then(BackupItem::record))
    }

    async fn mark_complete(&self, user: &UserId, backup_id: &str) -> Result<(), PortError> {
        // A failed condition: deleted meanwhile (account deletion, TTL), nothing to mark.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(&user_pk(user), &backup_sk(backup_id))))
            .update_expression("SET complete = :t REMOVE expiresAt")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send_recorded()
            .await
            .unless_condition_failed()?;
        Ok(())
    }

    async fn delete_backup(&self, user: &UserId, backup_id: &str) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(&user_pk(user), &backup_sk(backup_id))))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }
}
