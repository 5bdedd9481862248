//! Block lists in `UsersTable`, beside the contacts: one `USER#<owner>`/`BLOCK#<userId>`
//! {blockedAt} per user blocked, so "did X block Y" is one GetItem and a list is one Query.

use super::request::put;
use super::settings::{DynamoSettings, user_pk};
use super::{backend, pk_sk_key};
use crate::capacity::{SendRecorded, batch_delete};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::UserId;
use courier_core::error::PortError;
use courier_core::ports::BlockList;
use serde::Serialize;

const BLOCK_PREFIX: &str = "BLOCK#";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockItem {
    pk: String,
    sk: String,
    blocked_at: DateTime<Utc>,
}

fn block_sk(user: &UserId) -> String {
    format!("{BLOCK_PREFIX}{user}")
}

#[async_trait]
impl BlockList for DynamoSettings {
    async fn block(
        &self,
        owner: &UserId,
        user: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let item = BlockItem {
            pk: user_pk(owner),
            sk: block_sk(user),
            blocked_at: at,
        };
        put(&self.client, &self.table, item).await
    }

    async fn unblock(&self, owner: &UserId, user: &UserId) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(&user_pk(owner), &block_sk(user))))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn has_blocked(&self, owner: &UserId, user: &UserId) -> Result<bool, PortError> {
        self.has_item(owner, &block_sk(user)).await
    }

    async fn blocked(&self, owner: &UserId) -> Result<Vec<UserId>, PortError> {
        // Consistent: `listBlocked` right after `blockUser` lists the new block.
        Ok(self
            .sort_keys(owner, BLOCK_PREFIX, true)
            .await?
            .iter()
            .filter_map(|sk| sk.strip_prefix(BLOCK_PREFIX))
            .map(UserId::from_trusted)
            .collect())
    }

    async fn delete_blocks(&self, owner: &UserId) -> Result<(), PortError> {
        let keys = self
            .sort_keys(owner, BLOCK_PREFIX, true)
            .await?
            .into_iter()
            .map(|sk| pk_sk_key(&user_pk(owner), &sk))
            .collect();
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }
}
