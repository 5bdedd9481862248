//! `ConnectionsTable`: `CONN#<connectionId>` items (found on `$disconnect`) and one
//! `USER#<userId>` presence item per user holding the string set `conns` of
//! `<deviceId>#<connectionId>`, so fan-out to N users is N/100 BatchGetItem calls, not N queries.

use super::{backend, codec, epoch_secs, transaction_error};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::{Connection, ConnectionStore};
use courier_core::{ConnectionId, DeviceId, UserId};
use serde::{Deserialize, Serialize};

/// API Gateway closes every connection after 2 hours; items outlive that by a margin.
const CONNECTION_TTL_SECS: i64 = 2 * 3600 + 600;

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
}

impl DynamoConnections {
    /// A repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
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
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await
            .map_err(transaction_error)?;
        Ok(())
    }

    async fn remove(&self, id: &ConnectionId) -> Result<Option<Connection>, PortError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("CONN#{id}")))
            .return_values(ReturnValue::AllOld)
            .send()
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
            .send()
            .await
            .map_err(backend)?;
        Ok(Some(connection))
    }

    async fn for_user(&self, user_id: &UserId) -> Result<Vec<(DeviceId, ConnectionId)>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user_id}")))
            .consistent_read(true)
            .send()
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
