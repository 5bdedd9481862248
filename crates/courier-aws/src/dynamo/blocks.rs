//! Block lists in `UsersTable`, beside the contacts: one `USER#<owner>`/`BLOCK#<userId>`
//! {blockedAt} per user blocked, so "did X block Y" is one GetItem and a list is one Query.

use super::settings::{DynamoSettings, user_pk};
use super::{backend, pk_sk_key};
use crate::capacity::{SendRecorded, batch_delete, query_all};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use courier_core::UserId;
use courier_core::error::PortError;
use courier_core::ports::BlockList;

const BLOCK_PREFIX: &str = "BLOCK#";

impl DynamoSettings {
    /// The sort keys of `owner`'s block items (paged).
    async fn block_keys(&self, owner: &UserId) -> Result<Vec<String>, PortError> {
        let items = query_all(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p AND begins_with(sk, :b)")
                .expression_attribute_values(":p", AttributeValue::S(user_pk(owner)))
                .expression_attribute_values(":b", AttributeValue::S(BLOCK_PREFIX.to_owned()))
                .projection_expression("sk")
                .consistent_read(true),
        )
        .await
        .map_err(backend)?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i.get("sk") {
                Some(AttributeValue::S(s)) => Some(s.clone()),
                _ => None,
            })
            .collect())
    }
}

#[async_trait]
impl BlockList for DynamoSettings {
    async fn block(
        &self,
        owner: &UserId,
        user: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut item = pk_sk_key(&user_pk(owner), &format!("{BLOCK_PREFIX}{user}"));
        item.insert(
            "blockedAt".into(),
            AttributeValue::S(courier_core::chat::timestamp(at)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn unblock(&self, owner: &UserId, user: &UserId) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(
                &user_pk(owner),
                &format!("{BLOCK_PREFIX}{user}"),
            )))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn has_blocked(&self, owner: &UserId, user: &UserId) -> Result<bool, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(
                &user_pk(owner),
                &format!("{BLOCK_PREFIX}{user}"),
            )))
            .projection_expression("pk")
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(out.item.is_some_and(|i| !i.is_empty()))
    }

    async fn blocked(&self, owner: &UserId) -> Result<Vec<UserId>, PortError> {
        Ok(self
            .block_keys(owner)
            .await?
            .iter()
            .filter_map(|sk| sk.strip_prefix(BLOCK_PREFIX))
            .map(UserId::from_trusted)
            .collect())
    }

    async fn delete_blocks(&self, owner: &UserId) -> Result<(), PortError> {
        let keys = self
            .block_keys(owner)
            .await?
            .into_iter()
            .map(|sk| pk_sk_key(&user_pk(owner), &sk))
            .collect();
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }
}
