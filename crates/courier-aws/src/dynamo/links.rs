//! `LinksTable`: `LINK#<linkId>` (the request, and once approved the account and device id) and
//! `CODE#<code>` (the code's pointer to its request, deleted when approved: single use). Both
//! carry a TTL; expiry is also checked in code. An approval also writes the account's pending
//! link (`USER#<userId>`/`LINK#<linkId>` in UsersTable), which completing takes and revocations
//! delete.

use super::request::get_consistent;
use super::{DynamoAccounts, DynamoUsers, codec, epoch_secs};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::{Device, DeviceCredential, LinkRequest, LinkStore, PendingLink};
use courier_core::protocol::Platform;
use courier_core::{DeviceId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Items outlive the code by a margin, so a late poll still learns "expired", not "unknown".
const TTL_MARGIN_SECS: i64 = 3600;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkItem {
    pk: String,
    link_id: String,
    code: String,
    name: String,
    platform: Platform,
    expires_at: DateTime<Utc>,
    ttl: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approved_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approved_device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approved_by: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeItem {
    pk: String,
    link_id: String,
    ttl: i64,
}

fn pk(value: String) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), AttributeValue::S(value))])
}

/// Link requests in DynamoDB. Approving one records a pending link in the users table, and
/// completing it writes the device and its key, so a store is built with the tables its
/// operation reaches: [`DynamoLinks::requests`] (the links table alone, `createLinkRequest`),
/// [`DynamoLinks::approvals`] (and the users table, `approveDeviceLink`) or
/// [`DynamoLinks::new`] (and the API keys too, `getLinkRequest`).
#[derive(Clone)]
pub struct DynamoLinks {
    client: aws_sdk_dynamodb::Client,
    table: String,
    users: Option<DynamoUsers>,
    accounts: Option<DynamoAccounts>,
}

impl DynamoLinks {
    /// A repository over the links table; `accounts` writes the linked device and its key.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        accounts: DynamoAccounts,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            users: Some(accounts.users.clone()),
            accounts: Some(accounts),
        }
    }

    /// Creating and reading requests only: approving or completing one is a backend error.
    pub fn requests(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            users: None,
            accounts: None,
        }
    }

    /// Requests and approvals (`users` records the pending link): completing one is a backend
    /// error.
    pub fn approvals(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        users: DynamoUsers,
    ) -> Self {
        Self {
            users: Some(users),
            ..Self::requests(client, table)
        }
    }

    fn users(&self) -> Result<&DynamoUsers, PortError> {
        self.users
            .as_ref()
            .ok_or_else(|| PortError::backend("this links store was built without the users table"))
    }

    fn accounts(&self) -> Result<&DynamoAccounts, PortError> {
        self.accounts.as_ref().ok_or_else(|| {
            PortError::backend("this links store was built without the users and API-keys tables")
        })
    }

    fn put(&self, item: impl Serialize) -> Result<TransactWriteItem, PortError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(item).map_err(codec)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(PortError::backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl LinkStore for DynamoLinks {
    async fn create(&self, link: &LinkRequest) -> Result<(), PortError> {
        let ttl = epoch_secs(link.expires_at) + TTL_MARGIN_SECS;
        let item = LinkItem {
            pk: format!("LINK#{}", link.link_id),
            link_id: link.link_id.clone(),
            code: link.code.clone(),
            name: link.name.clone(),
            platform: link.platform,
            expires_at: link.expires_at,
            ttl,
            approved_user_id: None,
            approved_device_id: None,
            approved_by: None,
        };
        let code = CodeItem {
            pk: format!("CODE#{}", link.code),
            link_id: link.link_id.clone(),
            ttl,
        };
        super::transact(&self.client, vec![self.put(item)?, self.put(code)?]).await
    }

    async fn by_id(&self, link_id: &str) -> Result<Option<LinkRequest>, PortError> {
        let Some(l): Option<LinkItem> =
            get_consistent(&self.client, &self.table, pk(format!("LINK#{link_id}"))).await?
        else {
            return Ok(None);
        };
        let approved = match (l.approved_user_id, l.approved_device_id) {
            (Some(u), Some(d)) => Some(DeviceCredential {
                user_id: UserId::from_trusted(u),
                device_id: DeviceId::from_trusted(d),
            }),
            _ => None,
        };
        Ok(Some(LinkRequest {
            link_id: l.link_id,
            code: l.code,
            name: l.name,
            platform: l.platform,
            expires_at: l.expires_at,
            approved,
            approved_by: l.approved_by.map(DeviceId::from_trusted),
        }))
    }

    async fn by_code(&self, code: &str) -> Result<Option<LinkRequest>, PortError> {
        let code: Option<CodeItem> =
            get_consistent(&self.client, &self.table, pk(format!("CODE#{code}"))).await?;
        match code {
            Some(c) => self.by_id(&c.link_id).await,
            None => Ok(None),
        }
    }

    async fn approve(
        &self,
        link: &LinkRequest,
        device: &DeviceCredential,
        approver: &DeviceId,
    ) -> Result<(), PortError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(pk(format!("LINK#{}", link.link_id))))
            .update_expression("SET approvedUserId = :u, approvedDeviceId = :d, approvedBy = :b")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(approvedDeviceId)")
            .expression_attribute_values(":u", AttributeValue::S(device.user_id.to_string()))
            .expression_attribute_values(":d", AttributeValue::S(device.device_id.to_string()))
            .expression_attribute_values(":b", AttributeValue::S(approver.to_string()))
            .build()
            .map_err(PortError::backend)?;
        let retire_code = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(pk(format!("CODE#{}", link.code))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(PortError::backend)?;
        super::transact(
            &self.client,
            vec![
                TransactWriteItem::builder().update(update).build(),
                TransactWriteItem::builder().delete(retire_code).build(),
                self.users()?.put_pending_link(
                    &device.user_id,
                    &PendingLink {
                        link_id: link.link_id.clone(),
                        device_id: device.device_id.clone(),
                        expires_at: link.expires_at,
                    },
                )?,
                // An approver replaced or removed meanwhile approves nothing.
                self.users()?.device_exists(&device.user_id, approver)?,
            ],
        )
        .await
    }

    async fn complete(&self, link: &LinkRequest, device: &Device) -> Result<(), PortError> {
        let take = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(pk(format!("LINK#{}", link.link_id))))
            .condition_expression("attribute_exists(approvedDeviceId)")
            .build()
            .map_err(PortError::backend)?;
        let approver = link.approved_by.as_ref().ok_or(PortError::Conflict)?;
        let accounts = self.accounts()?;
        let mut items = vec![
            TransactWriteItem::builder().delete(take).build(),
            // Ended by a revocation (re-registration, deleteAccount, removeDevice): refused.
            accounts
                .users
                .take_pending_link(&device.user_id, &link.link_id)?,
            // The primary that approved it must still exist: a re-registration replaced it.
            accounts.users.device_exists(&device.user_id, approver)?,
        ];
        items.extend(accounts.put_device(device)?);
        super::transact(&self.client, items).await
    }
}
