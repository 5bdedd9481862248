//! `ConnectionsTable`: `CONN#<connectionId>` items (found on `$disconnect`) and one
//! `USER#<userId>` presence item per user holding the string set `conns` of
//! `<deviceId>#<connectionId>`, so fan-out to N users is N/100 BatchGetItem calls, not N queries.

use super::Conditional;
use super::request::get_consistent;
use super::{backend, codec, epoch_secs};
use crate::capacity::SendRecorded;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::{Connection, ConnectionStore};
use courier_core::{ConnectionId, DeviceId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// API Gateway closes every connection after 2 hours; items outlive that by a margin.
const CONNECTION_TTL_SECS: i64 = 2 * 3600 + 600;

/// A connection younger than this is not forgotten on a `GoneException`: it may still be inside
/// its `$connect` (the handler has written it, the gateway has not opened it yet), and API
/// Gateway answers 410 for such a connection. Forgetting it then would leave a connected device
/// out of every fan-out until it reconnects. (Its device syncs once connected, so what that post
/// carried is not lost.) A socket that really died that young is forgotten on a later post or
/// by `$disconnect`.
pub const CONNECT_GRACE_SECS: i64 = 30;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnItem {
    pk: String,
    user_id: String,
    device_id: String,
    connected_at: DateTime<Utc>,
    ttl: i64,
}

fn member(device: &DeviceId, conn: &ConnectionId) -> String {
    format!("{device}#{conn}")
}

/// Live connections in DynamoDB.
#[derive(Clone)]
pub struct DynamoConnections {
    client: aws_sdk_dynamodb::Client,
    table: String,
    users_table: Option<String>,
}

impl DynamoConnections {
    /// A repository over `table`. Its `add` records any connection; the `$connect` function's
    /// store is [`DynamoConnections::checking_devices_in`] instead.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            users_table: None,
        }
    }

    /// The same repository whose `add` records a connection only while its device item exists
    /// in `users_table` (a ConditionCheck in the same transaction), as
    /// [`ConnectionStore::add`] requires of the `$connect` route.
    pub fn checking_devices_in(mut self, users_table: impl Into<String>) -> Self {
        self.users_table = Some(users_table.into());
        self
    }
}

#[async_trait]
impl ConnectionStore for DynamoConnections {
    async fn add(&self, c: &Connection) -> Result<(), PortError> {
        let item = ConnItem {
            pk: format!("CONN#{}", c.connection_id),
            user_id: c.user_id.to_string(),
            device_id: c.device_id.to_string(),
            connected_at: c.connected_at,
            ttl: epoch_secs(c.connected_at) + CONNECTION_TTL_SECS,
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(item).map_err(codec)?))
            .build()
            .map_err(PortError::backend)?;
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{}", c.user_id)))
            .update_expression("ADD conns :c")
            .expression_attribute_values(
                ":c",
                AttributeValue::Ss(vec![member(&c.device_id, &c.connection_id)]),
            )
            .build()
            .map_err(PortError::backend)?;
        let mut items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(update).build(),
        ];
        if let Some(users) = &self.users_table {
            // The device still exists at the instant this commits. Revocations delete the device
            // first and read the presence item after (consistently), so a connection either
            // committed before the delete (and is listed and closed) or fails here.
            let check = ConditionCheck::builder()
                .table_name(users)
                .key("pk", AttributeValue::S(format!("USER#{}", c.user_id)))
                .key("sk", AttributeValue::S(format!("DEVICE#{}", c.device_id)))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(PortError::backend)?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        super::transact(&self.client, items).await?;
        Ok(())
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, PortError> {
        let item: Option<ConnItem> = get_consistent(
            &self.client,
            &self.table,
            HashMap::from([("pk".to_owned(), AttributeValue::S(format!("CONN#{id}")))]),
        )
        .await?;
        Ok(item.map(|c| Connection {
            connection_id: id.clone(),
            user_id: UserId::from_trusted(c.user_id),
            device_id: DeviceId::from_trusted(c.device_id),
            connected_at: c.connected_at,
        }))
    }

    async fn remove(&self, id: &ConnectionId) -> Result<Option<Connection>, PortError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("CONN#{id}")))
            .return_values(ReturnValue::AllOld)
            .send_recorded()
            .await
            .map_err(backend)?;
        let Some(old) = out.attributes.filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let old: ConnItem = serde_dynamo::from_item(old).map_err(codec)?;
        let connection = Connection {
            connection_id: id.clone(),
            user_id: UserId::from_trusted(old.user_id),
            device_id: DeviceId::from_trusted(old.device_id),
            connected_at: old.connected_at,
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .key(
                "pk",
                AttributeValue::S(format!("USER#{}", connection.user_id)),
            )
            .update_expression("DELETE conns :c")
            .expression_attribute_values(
                ":c",
                AttributeValue::Ss(vec![member(&connection.device_id, id)]),
            )
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(Some(connection))
    }

    async fn forget_user(&self, user_id: &UserId) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user_id}")))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_stale(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        id: &ConnectionId,
    ) -> Result<(), PortError> {
        // `ttl` is connectedAt + CONNECTION_TTL_SECS: a connection opened within the grace
        // period has a ttl above the cutoff and is kept (see CONNECT_GRACE_SECS).
        let cutoff = epoch_secs(Utc::now()) - CONNECT_GRACE_SECS + CONNECTION_TTL_SECS;
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("CONN#{id}")))
            .condition_expression("attribute_not_exists(pk) OR #ttl < :cutoff")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
            .send_recorded()
            .await;
        if res.unless_condition_failed()?.is_none() {
            tracing::info!("a gone connection opened under {CONNECT_GRACE_SECS} s ago is kept");
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user_id}")))
            .update_expression("DELETE conns :c")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![member(device_id, id)]))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn for_user(&self, user_id: &UserId) -> Result<Vec<(DeviceId, ConnectionId)>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user_id}")))
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        let conns = match out.item.as_ref().and_then(|i| i.get("conns")) {
            Some(AttributeValue::Ss(set)) => set.clone(),
            _ => Vec::new(),
        };
        let mut v: Vec<_> = conns
            .iter()
            .filter_map(|m| m.split_once('#'))
            .map(|(d, c)| (DeviceId::from_trusted(d), ConnectionId::new(c)))
            .collect();
        v.sort();
        Ok(v)
    }
}

/// Push endpoints are top-level attributes `push#<deviceId>` on the presence item, so setting one
/// needs no existing map.
const PUSH_PREFIX: &str = "push#";

#[async_trait]
impl courier_core::ports::PresenceStore for DynamoConnections {
    async fn presence(
        &self,
        users: &[UserId],
    ) -> Result<Vec<courier_core::ports::Presence>, PortError> {
        let mut unique: Vec<&UserId> = users.iter().collect();
        unique.sort();
        unique.dedup();
        let keys = unique
            .iter()
            .map(|u| HashMap::from([("pk".to_owned(), AttributeValue::S(format!("USER#{u}")))]))
            .collect();
        let found: HashMap<String, HashMap<String, AttributeValue>> =
            crate::capacity::batch_get_consistent(&self.client, &self.table, keys)
                .await
                .map_err(PortError::backend)?
                .into_iter()
                .filter_map(|item| match item.get("pk") {
                    Some(AttributeValue::S(pk)) => Some((pk.clone(), item)),
                    _ => None,
                })
                .collect();
        Ok(users
            .iter()
            .map(|u| {
                let item = found.get(&format!("USER#{u}"));
                let mut connections: Vec<_> = match item.and_then(|i| i.get("conns")) {
                    Some(AttributeValue::Ss(set)) => set
                        .iter()
                        .filter_map(|m| m.split_once('#'))
                        .map(|(d, c)| (DeviceId::from_trusted(d), ConnectionId::new(c)))
                        .collect(),
                    _ => Vec::new(),
                };
                connections.sort();
                let mut push: Vec<_> = item
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| {
                        let device = k.strip_prefix(PUSH_PREFIX)?;
                        let AttributeValue::S(endpoint) = v else {
                            return None;
                        };
                        Some((DeviceId::from_trusted(device), endpoint.clone()))
                    })
                    .collect();
                push.sort();
                courier_core::ports::Presence {
                    user_id: u.clone(),
                    connections,
                    push,
                }
            })
            .collect())
    }

    async fn set_push_endpoint(
        &self,
        user: &UserId,
        device: &DeviceId,
        endpoint: &str,
    ) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user}")))
            .update_expression("SET #p = :e")
            .expression_attribute_names("#p", format!("{PUSH_PREFIX}{device}"))
            .expression_attribute_values(":e", AttributeValue::S(endpoint.to_owned()))
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn forget_push_endpoint(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<(), PortError> {
        // A failed condition: no presence item, nothing to forget (and none is created).
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user}")))
            .update_expression("REMOVE #p")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#p", format!("{PUSH_PREFIX}{device}"))
            .send_recorded()
            .await
            .unless_condition_failed()?;
        Ok(())
    }
}

/// Last seen is the attribute `lastSeenAt` on the presence item (`USER#<userId>`): `$disconnect`
/// already writes that item, the function needs no other table, and deleting the account's
/// presence deletes it too.
/// Activity marks live on the user's presence item: `activeDay` (`YYYY-MM-DD`) and `activeMonth`
/// (`YYYY-MM`), set by one UpdateItem that returns the old values, so of two concurrent marks only
/// one sees the old day. Deleting the account deletes the presence item and the marks with it.
#[async_trait]
impl courier_core::ports::ActivityStore for DynamoConnections {
    async fn mark_active(
        &self,
        user: &UserId,
        day: chrono::NaiveDate,
    ) -> Result<courier_core::ports::FirstActivity, PortError> {
        let (d, m) = (
            day.format("%Y-%m-%d").to_string(),
            day.format("%Y-%m").to_string(),
        );
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user}")))
            .update_expression("SET activeDay = :d, activeMonth = :m")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":d", AttributeValue::S(d.clone()))
            .expression_attribute_values(":m", AttributeValue::S(m.clone()))
            .return_values(ReturnValue::UpdatedOld)
            .send_recorded()
            .await;
        let old = match res.unless_condition_failed()? {
            Some(out) => out.attributes.unwrap_or_default(),
            // No presence item: the account was deleted meanwhile; nothing to count.
            None => return Ok(courier_core::ports::FirstActivity::default()),
        };
        let was =
            |name: &str, now: &str| matches!(old.get(name), Some(AttributeValue::S(v)) if v == now);
        Ok(courier_core::ports::FirstActivity {
            of_day: !was("activeDay", &d),
            of_month: !was("activeMonth", &m),
        })
    }
}

#[async_trait]
impl courier_core::ports::LastSeenStore for DynamoConnections {
    async fn record_last_seen(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), PortError> {
        // A failed condition: the presence item is gone (the account was deleted), nothing to
        // remember.
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user}")))
            .update_expression("SET lastSeenAt = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::S(courier_core::chat::timestamp(at)))
            .send_recorded()
            .await
            .unless_condition_failed()?;
        Ok(())
    }

    async fn last_seen(&self, user: &UserId) -> Result<courier_core::ports::LastSeen, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user}")))
            .projection_expression("conns, lastSeenAt")
            .send_recorded()
            .await
            .map_err(backend)?;
        let item = out.item.unwrap_or_default();
        let online = matches!(item.get("conns"), Some(AttributeValue::Ss(s)) if !s.is_empty());
        let at = match item.get("lastSeenAt") {
            Some(AttributeValue::S(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(PortError::backend)?
                    .with_timezone(&Utc),
            ),
            _ => None,
        };
        Ok(courier_core::ports::LastSeen { online, at })
    }
}
