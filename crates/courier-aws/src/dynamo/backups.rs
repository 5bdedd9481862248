//! User backup records in `BackupTable`: `USER#<userId>`/`BACKUP#<backupId>` {size, createdAt,
//! complete}. A pending record carries `expiresAt` (TTL) until its upload is seen, so an upload
//! that never happens leaves nothing behind. A user's records are one Query (a handful at most).

use super::Conditional;
use super::{backend, codec, epoch_secs, pk_sk_key};
use crate::capacity::{SendRecorded, query_all};
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(item).map_err(codec)?))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn backups(&self, user: &UserId) -> Result<Vec<BackupRecord>, PortError> {
        let mut found = Vec::new();
        let items = query_all(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p AND begins_with(sk, :b)")
                .expression_attribute_values(":p", AttributeValue::S(user_pk(user)))
                .expression_attribute_values(":b", AttributeValue::S(BACKUP_PREFIX.to_owned()))
                .consistent_read(true),
        )
        .await
        .map_err(backend)?;
        for item in items {
            let b: BackupItem = serde_dynamo::from_item(item).map_err(codec)?;
            found.extend(b.record());
        }
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
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(&user_pk(user), &backup_sk(backup_id))))
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        match out.item {
            Some(i) if !i.is_empty() => {
                let b: BackupItem = serde_dynamo::from_item(i).map_err(codec)?;
                Ok(b.record())
            }
            _ => Ok(None),
        }
    }

    async fn mark_complete(&self, user: &UserId, backup_id: &str) -> Result<(), PortError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(&user_pk(user), &backup_sk(backup_id))))
            .update_expression("SET complete = :t REMOVE expiresAt")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send_recorded()
            .await;
        match res.unless_condition_failed()? {
            Some(_) => Ok(()),
            // Deleted meanwhile (account deletion, TTL): nothing to mark.
            None => Ok(()),
        }
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
