//! `KeysTable`: the key directory, partitioned by user so that `claimKeys` for a user finds all
//! its devices' entries with one query.
//!
//! Items, keyed `pk`/`sk`:
//! - `USER#<userId>` / `DEVICE#<deviceId>`: the device's identity and signing keys and its
//!   fallback key (a map), read by `claimKeys` and `listDevices`.
//! - `USER#<userId>` / `OTK#<deviceId>#<keyId>`: one unclaimed one-time key. A claim takes one
//!   with a DeleteItem conditioned on the item still existing and returning the old item, so of
//!   two claims racing for a key exactly one gets it, and the other moves on to the next.
//!
//! The unclaimed count is a `Select: COUNT` query over the device's one-time keys (at most 200
//! small items, about 12 read units at worst), not a counter: a counter would need a second
//! write on every claim, the hot path, and could drift if a function died between the two.

use super::Conditional;
use super::request::{put, query_decoded, sk_prefix_query};
use super::{Item, backend, codec, pk_sk_key as key};
use crate::capacity::{SendRecorded, batch_delete, batch_put, query_all, query_count};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use courier_core::error::PortError;
use courier_core::ports::{DeviceKeys, KeyStore, SignedKey};
use courier_core::{DeviceId, UserId};
use serde::{Deserialize, Serialize};

/// Keys read per claim attempt: racing claims start at different ones.
const CLAIM_CANDIDATES: i32 = 10;
/// Rounds of (query, try each candidate) before a claim gives up as contended.
const CLAIM_ROUNDS: usize = 20;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryItem {
    pk: String,
    sk: String,
    user_id: String,
    device_id: String,
    identity_key: String,
    signing_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fallback: Option<SignedKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OneTimeKeyItem {
    pk: String,
    sk: String,
    key_id: String,
    key: String,
    signature: String,
}

fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}

fn otk_prefix(device: &DeviceId) -> String {
    format!("OTK#{device}#")
}

/// The key directory in DynamoDB.
#[derive(Clone)]
pub struct DynamoKeys {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoKeys {
    /// A repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The keys (`pk`, `sk`) of a device's one-time key items, strongly consistent.
    async fn one_time_key_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<Item>, PortError> {
        query_all(
            sk_prefix_query(&self.client, &self.table, user_pk(user), otk_prefix(device))
                .projection_expression("pk, sk")
                .consistent_read(true),
        )
        .await
        .map_err(backend)
    }
}

#[async_trait]
impl KeyStore for DynamoKeys {
    async fn device_keys(&self, user: &UserId) -> Result<Vec<DeviceKeys>, PortError> {
        let items: Vec<EntryItem> = query_decoded(
            sk_prefix_query(&self.client, &self.table, user_pk(user), "DEVICE#")
                .consistent_read(true),
        )
        .await?;
        Ok(items
            .into_iter()
            .map(|e| DeviceKeys {
                user_id: UserId::from_trusted(e.user_id),
                device_id: DeviceId::from_trusted(e.device_id),
                identity_key: e.identity_key,
                signing_key: e.signing_key,
                fallback: e.fallback,
            })
            .collect())
    }

    async fn put_device_keys(&self, keys: &DeviceKeys, discard_old: bool) -> Result<(), PortError> {
        if discard_old {
            let old = self
                .one_time_key_keys(&keys.user_id, &keys.device_id)
                .await?;
            batch_delete(&self.client, &self.table, old)
                .await
                .map_err(PortError::backend)?;
        }
        let item = EntryItem {
            pk: user_pk(&keys.user_id),
            sk: format!("DEVICE#{}", keys.device_id),
            user_id: keys.user_id.to_string(),
            device_id: keys.device_id.to_string(),
            identity_key: keys.identity_key.clone(),
            signing_key: keys.signing_key.clone(),
            fallback: keys.fallback.clone(),
        };
        put(&self.client, &self.table, item).await
    }

    async fn one_time_key_ids(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>, PortError> {
        let prefix = otk_prefix(device);
        Ok(self
            .one_time_key_keys(user, device)
            .await?
            .iter()
            .filter_map(|k| match k.get("sk") {
                Some(AttributeValue::S(sk)) => sk.strip_prefix(&prefix).map(str::to_owned),
                _ => None,
            })
            .collect())
    }

    async fn one_time_key_count(&self, user: &UserId, device: &DeviceId) -> Result<u32, PortError> {
        let count = query_count(
            sk_prefix_query(&self.client, &self.table, user_pk(user), otk_prefix(device))
                .consistent_read(true),
        )
        .await
        .map_err(backend)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn add_one_time_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: &[SignedKey],
    ) -> Result<(), PortError> {
        let items = keys
            .iter()
            .map(|k| {
                serde_dynamo::to_item(OneTimeKeyItem {
                    pk: user_pk(user),
                    sk: format!("{}{}", otk_prefix(device), k.key_id),
                    key_id: k.key_id.clone(),
                    key: k.key.clone(),
                    signature: k.signature.clone(),
                })
                .map_err(codec)
            })
            .collect::<Result<Vec<Item>, _>>()?;
        batch_put(&self.client, &self.table, items)
            .await
            .map_err(PortError::backend)
    }

    async fn claim_one_time_key(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Option<SignedKey>, PortError> {
        let pk = user_pk(user);
        for _ in 0..CLAIM_ROUNDS {
            let out = sk_prefix_query(&self.client, &self.table, pk.clone(), otk_prefix(device))
                .projection_expression("sk")
                .limit(CLAIM_CANDIDATES)
                .consistent_read(true)
                .send_recorded()
                .await
                .map_err(backend)?;
            let candidates: Vec<String> = out
                .items
                .unwrap_or_default()
                .into_iter()
                .filter_map(|mut i| match i.remove("sk") {
                    Some(AttributeValue::S(sk)) => Some(sk),
                    _ => None,
                })
                .collect();
            if candidates.is_empty() {
                return Ok(None);
            }
            // Racing claimers start at different candidates, so most first tries succeed.
            let offset = rand::random::<u32>() as usize % candidates.len();
            for i in 0..candidates.len() {
                let sk = &candidates[(offset + i) % candidates.len()];
                let res = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&pk, sk)))
                    .condition_expression("attribute_exists(sk)")
                    .return_values(ReturnValue::AllOld)
                    .send_recorded()
                    .await;
                // None: another claim took it first; try the next.
                if let Some(out) = res.unless_condition_failed()? {
                    let Some(old) = out.attributes.filter(|a| !a.is_empty()) else {
                        continue;
                    };
                    let k: OneTimeKeyItem = serde_dynamo::from_item(old).map_err(codec)?;
                    return Ok(Some(SignedKey {
                        key_id: k.key_id,
                        key: k.key,
                        signature: k.signature,
                    }));
                }
            }
        }
        Err(PortError::Conflict)
    }

    async fn delete_device_keys(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError> {
        let mut keys = self.one_time_key_keys(user, device).await?;
        keys.push(key(&user_pk(user), &format!("DEVICE#{device}")));
        batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }
}
