//! Settings and contacts in `UsersTable`, beside the user's profile item (block lists beside
//! them: `blocks.rs`):
//! `USER#<userId>`/`SETTINGS` {display, privacy} and one `USER#<userId>`/`CONTACT#<contactId>`
//! {addedAt} per contact, so "is X in Y's contacts" is one GetItem, a count is one COUNT query,
//! and deleting an account's settings is one Query and batched deletes.

use super::request::{get_consistent, put, sk_prefix_query};
use super::{backend, codec, pk_sk_key};
use crate::capacity::{SendRecorded, batch_delete, batch_put, query_all, query_count};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Utc};
use courier_core::UserId;
use courier_core::error::PortError;
use courier_core::ports::SettingsStore;
use courier_core::settings::Settings;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const SETTINGS_SK: &str = "SETTINGS";
const CONTACT_PREFIX: &str = "CONTACT#";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    settings: Settings,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactItem {
    pk: String,
    sk: String,
    added_at: DateTime<Utc>,
}

pub(super) fn user_pk(u: &UserId) -> String {
    format!("USER#{u}")
}

/// Settings and contact lists in DynamoDB.
#[derive(Clone)]
pub struct DynamoSettings {
    pub(super) client: aws_sdk_dynamodb::Client,
    pub(super) table: String,
}

impl DynamoSettings {
    /// A repository over the users table.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The sort keys of a user's contact items (paged).
    async fn contact_keys(&self, owner: &UserId) -> Result<Vec<String>, PortError> {
        self.sort_keys(owner, CONTACT_PREFIX, false).await
    }

    /// The sort keys of `owner`'s items that start with `prefix` (paged): its contacts, or
    /// (`blocks.rs`) whom it blocked.
    pub(super) async fn sort_keys(
        &self,
        owner: &UserId,
        prefix: &str,
        consistent: bool,
    ) -> Result<Vec<String>, PortError> {
        let items = query_all(
            sk_prefix_query(&self.client, &self.table, user_pk(owner), prefix)
                .projection_expression("sk")
                .consistent_read(consistent),
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

    /// Whether `owner` has the item `sk` (a contact, a block): one consistent GetItem.
    pub(super) async fn has_item(&self, owner: &UserId, sk: &str) -> Result<bool, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(pk_sk_key(&user_pk(owner), sk)))
            .projection_expression("pk")
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(out.item.is_some_and(|i| !i.is_empty()))
    }
}

#[async_trait]
impl SettingsStore for DynamoSettings {
    async fn settings(&self, user: &UserId) -> Result<Option<Settings>, PortError> {
        let item: Option<SettingsItem> = get_consistent(
            &self.client,
            &self.table,
            pk_sk_key(&user_pk(user), SETTINGS_SK),
        )
        .await?;
        Ok(item.map(|s| s.settings))
    }

    async fn settings_of(&self, users: &[UserId]) -> Result<HashMap<UserId, Settings>, PortError> {
        let mut unique: Vec<_> = users.to_vec();
        unique.sort();
        unique.dedup();
        let mut found = HashMap::new();
        for chunk in unique.chunks(100) {
            let keys = chunk
                .iter()
                .map(|u| pk_sk_key(&user_pk(u), SETTINGS_SK))
                .collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .map_err(PortError::backend)?,
            );
            let mut attempt = 0u64;
            while let Some(req) = request.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send_recorded()
                    .await
                    .map_err(backend)?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let s: SettingsItem = serde_dynamo::from_item(item).map_err(codec)?;
                    if let Some(u) = s.pk.strip_prefix("USER#") {
                        found.insert(UserId::from_trusted(u), s.settings);
                    }
                }
                request = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
                if request.is_some() {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * attempt.min(10)))
                        .await;
                }
            }
        }
        Ok(found)
    }

    async fn put_settings(&self, user: &UserId, settings: &Settings) -> Result<(), PortError> {
        let item = SettingsItem {
            pk: user_pk(user),
            sk: SETTINGS_SK.to_owned(),
            settings: settings.clone(),
        };
        put(&self.client, &self.table, item).await
    }

    async fn is_contact(&self, owner: &UserId, contact: &UserId) -> Result<bool, PortError> {
        self.has_item(owner, &format!("{CONTACT_PREFIX}{contact}"))
            .await
    }

    async fn contact_count(&self, owner: &UserId) -> Result<usize, PortError> {
        query_count(
            sk_prefix_query(&self.client, &self.table, user_pk(owner), CONTACT_PREFIX)
                .consistent_read(true),
        )
        .await
        .map_err(backend)
    }

    async fn contacts(&self, owner: &UserId) -> Result<Vec<UserId>, PortError> {
        Ok(self
            .contact_keys(owner)
            .await?
            .iter()
            .filter_map(|sk| sk.strip_prefix(CONTACT_PREFIX))
            .map(UserId::from_trusted)
            .collect())
    }

    async fn update_contacts(
        &self,
        owner: &UserId,
        add: &[UserId],
        remove: &[UserId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        // A put of a contact already there only refreshes addedAt, which nothing reads for
        // ordering: adding twice stays one contact. A batch may not name an item twice.
        let mut add = add.to_vec();
        add.sort();
        add.dedup();
        let mut remove = remove.to_vec();
        remove.sort();
        remove.dedup();
        let items = add
            .iter()
            .map(|c| {
                serde_dynamo::to_item(ContactItem {
                    pk: user_pk(owner),
                    sk: format!("{CONTACT_PREFIX}{c}"),
                    added_at: at,
                })
                .map_err(codec)
            })
            .collect::<Result<Vec<_>, _>>()?;
        batch_put(&self.client, &self.table, items)
            .await
            .map_err(PortError::backend)?;
        let keys = remove
            .iter()
            .map(|c| pk_sk_key(&user_pk(owner), &format!("{CONTACT_PREFIX}{c}")))
            .collect();
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }

    async fn delete_settings(&self, user: &UserId) -> Result<(), PortError> {
        let mut keys: Vec<_> = self
            .contact_keys(user)
            .await?
            .into_iter()
            .map(|sk| pk_sk_key(&user_pk(user), &sk))
            .collect();
        keys.push(pk_sk_key(&user_pk(user), SETTINGS_SK));
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }
}
