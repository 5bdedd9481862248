//! `UsersTable` (profiles, phone claims, devices) and `ApiKeysTable` (key hash -> device).
//!
//! UsersTable items, keyed `pk`/`sk`:
//! - `USER#<userId>` / `PROFILE`: the account.
//! - `PHONE#<e164>` / `PHONE`: the number's claim, written with `attribute_not_exists` so one
//!   number belongs to one account.
//! - `USER#<userId>` / `DEVICE#<deviceId>`: a device (one query lists them).
//! - `USER#<userId>` / `LINK#<linkId>`: an approved link whose new device has not collected its
//!   key yet (it counts toward the companion cap; completing the link deletes it, on condition
//!   that it exists, so a revocation ends the link by deleting it).
//! - `USER#<userId>` / `PIN`: the registration PIN's Argon2id hash and its wrong tries
//!   (two-step verification), written with a version condition.
//!
//! ApiKeysTable items are keyed by the key's SHA-256, so the authorizer needs one GetItem.

use super::request::{get_consistent, put_versioned, query_decoded, sk_prefix_query};
use super::{Conditional, Item, backend, codec, pk_sk_key};
use crate::capacity::SendRecorded;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::{
    AccountStore, CredentialStore, Device, DeviceCredential, PendingLink, RegistrationPinRecord,
    User, UserDirectory,
};
use courier_core::protocol::Platform;
use courier_core::secrets::ApiKeyHash;
use courier_core::{DeviceId, PhoneNumber, UserId};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileItem {
    pk: String,
    sk: String,
    user_id: String,
    phone: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneItem {
    pk: String,
    sk: String,
    user_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceItem {
    pk: String,
    sk: String,
    user_id: String,
    device_id: String,
    name: String,
    platform: Platform,
    primary: bool,
    key_hash: String,
    created_at: DateTime<Utc>,
}

/// Not `deviceId`: that attribute puts an item in the `byDevice` index, which answers "whose
/// device is this?" for devices that exist.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingLinkItem {
    pk: String,
    sk: String,
    link_id: String,
    link_device_id: String,
    expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PinItem {
    pk: String,
    sk: String,
    pin_hash: String,
    failed_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_until: Option<DateTime<Utc>>,
    version: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyItem {
    key_hash: String,
    user_id: String,
    device_id: String,
}

fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}

fn phone_pk(phone: &PhoneNumber) -> String {
    format!("PHONE#{phone}")
}

/// An ApiKeysTable key.
fn key_hash_key(hash: &ApiKeyHash) -> Item {
    Item::from([(
        "keyHash".to_owned(),
        AttributeValue::S(hash.as_str().to_owned()),
    )])
}

/// The users table alone: the account directory (profiles, numbers, devices, pending links, the
/// registration PIN), for the operations that never touch an API key.
#[derive(Clone)]
pub struct DynamoUsers {
    client: aws_sdk_dynamodb::Client,
    users_table: String,
}

impl DynamoUsers {
    /// The directory in `users_table`.
    pub fn new(client: aws_sdk_dynamodb::Client, users_table: impl Into<String>) -> Self {
        Self {
            client,
            users_table: users_table.into(),
        }
    }

    fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<&str>,
    ) -> Result<TransactWriteItem, PortError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned));
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(PortError::backend)?)
            .build())
    }

    fn delete(&self, table: &str, key: Item) -> Result<TransactWriteItem, PortError> {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key))
            .build()
            .map_err(PortError::backend)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Records `link` among `user`'s pending links (in the approval's transaction).
    pub(crate) fn put_pending_link(
        &self,
        user: &UserId,
        link: &PendingLink,
    ) -> Result<TransactWriteItem, PortError> {
        let item = PendingLinkItem {
            pk: user_pk(user),
            sk: format!("LINK#{}", link.link_id),
            link_id: link.link_id.clone(),
            link_device_id: link.device_id.to_string(),
            expires_at: link.expires_at,
        };
        self.put(
            &self.users_table,
            serde_dynamo::to_item(item).map_err(codec)?,
            Some("attribute_not_exists(pk)"),
        )
    }

    /// Takes `link_id` off `user`'s pending links, failing the transaction if a revocation
    /// ended it (or it was already taken).
    pub(crate) fn take_pending_link(
        &self,
        user: &UserId,
        link_id: &str,
    ) -> Result<TransactWriteItem, PortError> {
        let delete = Delete::builder()
            .table_name(&self.users_table)
            .set_key(Some(pk_sk_key(&user_pk(user), &format!("LINK#{link_id}"))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(PortError::backend)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Fails the transaction unless `device` of `user` still exists.
    pub(crate) fn device_exists(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<TransactWriteItem, PortError> {
        let check = ConditionCheck::builder()
            .table_name(&self.users_table)
            .set_key(Some(pk_sk_key(&user_pk(user), &format!("DEVICE#{device}"))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(PortError::backend)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), PortError> {
        super::transact(&self.client, items).await
    }
}

#[async_trait]
impl UserDirectory for DynamoUsers {
    async fn user_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError> {
        let item: Option<PhoneItem> = get_consistent(
            &self.client,
            &self.users_table,
            pk_sk_key(&phone_pk(phone), "PHONE"),
        )
        .await?;
        Ok(item.map(|i| UserId::from_trusted(i.user_id)))
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<User>, PortError> {
        let Some(item): Option<ProfileItem> = get_consistent(
            &self.client,
            &self.users_table,
            pk_sk_key(&user_pk(user_id), "PROFILE"),
        )
        .await?
        else {
            return Ok(None);
        };
        let phone = PhoneNumber::parse(&item.phone).map_err(PortError::backend)?;
        Ok(Some(User {
            user_id: UserId::from_trusted(item.user_id),
            phone,
            created_at: item.created_at,
        }))
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>, PortError> {
        let items: Vec<DeviceItem> = query_decoded(
            sk_prefix_query(&self.client, &self.users_table, user_pk(user_id), "DEVICE#")
                .consistent_read(true),
        )
        .await?;
        Ok(items
            .into_iter()
            .map(|d| Device {
                user_id: UserId::from_trusted(d.user_id),
                device_id: DeviceId::from_trusted(d.device_id),
                name: d.name,
                platform: d.platform,
                primary: d.primary,
                key_hash: ApiKeyHash::from_stored(d.key_hash),
                created_at: d.created_at,
            })
            .collect())
    }

    async fn pending_links(&self, user_id: &UserId) -> Result<Vec<PendingLink>, PortError> {
        let items: Vec<PendingLinkItem> = query_decoded(
            sk_prefix_query(&self.client, &self.users_table, user_pk(user_id), "LINK#")
                .consistent_read(true),
        )
        .await?;
        Ok(items
            .into_iter()
            .map(|p| PendingLink {
                link_id: p.link_id,
                device_id: DeviceId::from_trusted(p.link_device_id),
                expires_at: p.expires_at,
            })
            .collect())
    }

    async fn registration_pin(
        &self,
        user_id: &UserId,
    ) -> Result<Option<RegistrationPinRecord>, PortError> {
        let item: Option<PinItem> = get_consistent(
            &self.client,
            &self.users_table,
            pk_sk_key(&user_pk(user_id), "PIN"),
        )
        .await?;
        Ok(item.map(|item| RegistrationPinRecord {
            user_id: user_id.clone(),
            hash: item.pin_hash,
            failed_attempts: item.failed_attempts,
            locked_until: item.locked_until,
            version: item.version,
        }))
    }

    async fn put_registration_pin(
        &self,
        pin: &RegistrationPinRecord,
        expected: Option<u64>,
    ) -> Result<(), PortError> {
        let item = PinItem {
            pk: user_pk(&pin.user_id),
            sk: "PIN".into(),
            pin_hash: pin.hash.clone(),
            failed_attempts: pin.failed_attempts,
            locked_until: pin.locked_until,
            version: pin.version,
        };
        put_versioned(&self.client, &self.users_table, item, "pk", expected).await
    }

    async fn delete_registration_pin(
        &self,
        user_id: &UserId,
        expected: Option<u64>,
    ) -> Result<(), PortError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.users_table)
            .set_key(Some(pk_sk_key(&user_pk(user_id), "PIN")));
        let delete = match expected {
            None => delete,
            Some(v) => delete
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        // Another version is stored (or none): the removal was proven against another PIN.
        delete.send_recorded().await.or_conflict()?;
        Ok(())
    }

    async fn end_pending_links(&self, user_id: &UserId) -> Result<usize, PortError> {
        let pending = self.pending_links(user_id).await?;
        for p in &pending {
            self.client
                .delete_item()
                .table_name(&self.users_table)
                .set_key(Some(pk_sk_key(
                    &user_pk(user_id),
                    &format!("LINK#{}", p.link_id),
                )))
                .send_recorded()
                .await
                .map_err(backend)?;
        }
        Ok(pending.len())
    }

    async fn device_owner(&self, device: &DeviceId) -> Result<Option<UserId>, PortError> {
        let out = self
            .client
            .query()
            .table_name(&self.users_table)
            .index_name(BY_DEVICE_INDEX)
            .key_condition_expression("deviceId = :d")
            .expression_attribute_values(":d", AttributeValue::S(device.to_string()))
            .limit(1)
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(out
            .items
            .unwrap_or_default()
            .into_iter()
            .find_map(|item| match item.get("pk") {
                Some(AttributeValue::S(pk)) => pk.strip_prefix("USER#").map(UserId::from_trusted),
                _ => None,
            }))
    }
}

/// The users table and the API-keys table together: the directory, plus the writes that add
/// or remove devices with their keys in one transaction.
#[derive(Clone)]
pub struct DynamoAccounts {
    pub(crate) users: DynamoUsers,
    credentials: DynamoCredentials,
}

impl DynamoAccounts {
    /// A repository over the users and API-keys tables.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        users_table: impl Into<String>,
        keys_table: impl Into<String>,
    ) -> Self {
        Self {
            users: DynamoUsers::new(client.clone(), users_table),
            credentials: DynamoCredentials::new(client, keys_table),
        }
    }

    pub(crate) fn put_device(&self, d: &Device) -> Result<[TransactWriteItem; 2], PortError> {
        let device = DeviceItem {
            pk: user_pk(&d.user_id),
            sk: format!("DEVICE#{}", d.device_id),
            user_id: d.user_id.to_string(),
            device_id: d.device_id.to_string(),
            name: d.name.clone(),
            platform: d.platform,
            primary: d.primary,
            key_hash: d.key_hash.as_str().to_owned(),
            created_at: d.created_at,
        };
        let key = KeyItem {
            key_hash: d.key_hash.as_str().to_owned(),
            user_id: d.user_id.to_string(),
            device_id: d.device_id.to_string(),
        };
        Ok([
            self.users.put(
                &self.users.users_table,
                serde_dynamo::to_item(device).map_err(codec)?,
                None,
            )?,
            self.users.put(
                &self.credentials.keys_table,
                serde_dynamo::to_item(key).map_err(codec)?,
                Some("attribute_not_exists(keyHash)"),
            )?,
        ])
    }

    fn delete_device(&self, d: &Device) -> Result<[TransactWriteItem; 2], PortError> {
        Ok([
            self.users.delete(
                &self.users.users_table,
                pk_sk_key(&user_pk(&d.user_id), &format!("DEVICE#{}", d.device_id)),
            )?,
            self.users
                .delete(&self.credentials.keys_table, key_hash_key(&d.key_hash))?,
        ])
    }
}

#[async_trait]
impl AccountStore for DynamoAccounts {
    async fn create_account(&self, user: &User, device: &Device) -> Result<(), PortError> {
        let phone = PhoneItem {
            pk: phone_pk(&user.phone),
            sk: "PHONE".into(),
            user_id: user.user_id.to_string(),
        };
        let profile = ProfileItem {
            pk: user_pk(&user.user_id),
            sk: "PROFILE".into(),
            user_id: user.user_id.to_string(),
            phone: user.phone.to_string(),
            created_at: user.created_at,
        };
        let mut items = vec![
            self.users.put(
                &self.users.users_table,
                serde_dynamo::to_item(phone).map_err(codec)?,
                Some("attribute_not_exists(pk)"),
            )?,
            self.users.put(
                &self.users.users_table,
                serde_dynamo::to_item(profile).map_err(codec)?,
                Some("attribute_not_exists(pk)"),
            )?,
        ];
        items.extend(self.put_device(device)?);
        self.users.transact(items).await
    }

    async fn replace_devices(&self, new_primary: &Device, old: &[Device]) -> Result<(), PortError> {
        let mut items = Vec::with_capacity(2 + 2 * old.len());
        items.extend(self.put_device(new_primary)?);
        for d in old {
            items.extend(self.delete_device(d)?);
        }
        self.users.transact(items).await
    }

    async fn delete_account(&self, user: &User, devices: &[Device]) -> Result<(), PortError> {
        let mut items = vec![
            self.users.delete(
                &self.users.users_table,
                pk_sk_key(&user_pk(&user.user_id), "PROFILE"),
            )?,
            self.users.delete(
                &self.users.users_table,
                pk_sk_key(&phone_pk(&user.phone), "PHONE"),
            )?,
            self.users.delete(
                &self.users.users_table,
                pk_sk_key(&user_pk(&user.user_id), "PIN"),
            )?,
        ];
        for d in devices {
            items.extend(self.delete_device(d)?);
        }
        self.users.transact(items).await
    }

    async fn remove_device(&self, device: &Device) -> Result<(), PortError> {
        self.users
            .transact(self.delete_device(device)?.into())
            .await
    }
}

// Every read is the directory's.
#[async_trait]
impl UserDirectory for DynamoAccounts {
    async fn user_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError> {
        self.users.user_by_phone(phone).await
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<User>, PortError> {
        self.users.user(user_id).await
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>, PortError> {
        self.users.devices(user_id).await
    }

    async fn pending_links(&self, user_id: &UserId) -> Result<Vec<PendingLink>, PortError> {
        self.users.pending_links(user_id).await
    }

    async fn registration_pin(
        &self,
        user_id: &UserId,
    ) -> Result<Option<RegistrationPinRecord>, PortError> {
        self.users.registration_pin(user_id).await
    }

    async fn put_registration_pin(
        &self,
        pin: &RegistrationPinRecord,
        expected: Option<u64>,
    ) -> Result<(), PortError> {
        self.users.put_registration_pin(pin, expected).await
    }

    async fn delete_registration_pin(
        &self,
        user_id: &UserId,
        expected: Option<u64>,
    ) -> Result<(), PortError> {
        self.users.delete_registration_pin(user_id, expected).await
    }

    async fn end_pending_links(&self, user_id: &UserId) -> Result<usize, PortError> {
        self.users.end_pending_links(user_id).await
    }

    async fn device_owner(&self, device: &DeviceId) -> Result<Option<UserId>, PortError> {
        self.users.device_owner(device).await
    }
}

// Key lookups are the credentials'.
#[async_trait]
impl CredentialStore for DynamoAccounts {
    async fn device_for_key(
        &self,
        key: &ApiKeyHash,
    ) -> Result<Option<DeviceCredential>, PortError> {
        self.credentials.device_for_key(key).await
    }
}

/// UsersTable's index of device items by `deviceId` (keys only): whose device is this?
const BY_DEVICE_INDEX: &str = "byDevice";

/// The API-keys table alone: the authorizer's and the connect tickets' only read.
#[derive(Clone)]
pub struct DynamoCredentials {
    client: aws_sdk_dynamodb::Client,
    keys_table: String,
}

impl DynamoCredentials {
    /// Key lookups in `keys_table`.
    pub fn new(client: aws_sdk_dynamodb::Client, keys_table: impl Into<String>) -> Self {
        Self {
            client,
            keys_table: keys_table.into(),
        }
    }
}

#[async_trait]
impl CredentialStore for DynamoCredentials {
    async fn device_for_key(
        &self,
        key: &ApiKeyHash,
    ) -> Result<Option<DeviceCredential>, PortError> {
        let item: Option<KeyItem> =
            get_consistent(&self.client, &self.keys_table, key_hash_key(key)).await?;
        Ok(item.map(|item| DeviceCredential {
            user_id: UserId::from_trusted(item.user_id),
            device_id: DeviceId::from_trusted(item.device_id),
        }))
    }
}
