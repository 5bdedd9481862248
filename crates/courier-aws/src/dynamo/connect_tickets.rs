//! Connect tickets in `ApiKeysTable`, next to the keys they stand for: the item
//! `keyHash = "ticket#<ticket hash>"` holds `apiKeyHash` (the key's hash), `expiresAt` and `ttl`
//! (epoch seconds; DynamoDB TTL removes tickets nobody used). A key's item is a bare hex digest,
//! so no key can name a ticket's item. Taking a ticket is one `DeleteItem` that returns the old
//! item: of any number of concurrent takers, only the one whose delete removed it gets it.

use super::backend;
use crate::capacity::SendRecorded;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use courier_core::error::PortError;
use courier_core::ports::ConnectTicketStore;
use courier_core::secrets::ApiKeyHash;

/// Connect tickets in the API keys table.
#[derive(Clone)]
pub struct DynamoConnectTickets {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoConnectTickets {
    /// Tickets in `keys_table` (`ApiKeysTable`).
    pub fn new(client: aws_sdk_dynamodb::Client, keys_table: impl Into<String>) -> Self {
        Self {
            client,
            table: keys_table.into(),
        }
    }

    fn pk(ticket: &ApiKeyHash) -> AttributeValue {
        AttributeValue::S(format!("ticket#{}", ticket.as_str()))
    }
}

#[async_trait]
impl ConnectTicketStore for DynamoConnectTickets {
    async fn put_ticket(
        &self,
        ticket: &ApiKeyHash,
        key: &ApiKeyHash,
        expires_at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let n = |v: i64| AttributeValue::N(v.to_string());
        self.client
            .put_item()
            .table_name(&self.table)
            .item("keyHash", Self::pk(ticket))
            .item("apiKeyHash", AttributeValue::S(key.as_str().to_owned()))
            .item("expiresAt", n(expires_at.timestamp()))
            .item("ttl", n(expires_at.timestamp() + 60))
            // A fresh random ticket never exists; the condition keeps a put from ever
            // replacing a key's item.
            .condition_expression("attribute_not_exists(keyHash)")
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn take_ticket(
        &self,
        ticket: &ApiKeyHash,
    ) -> Result<Option<(ApiKeyHash, DateTime<Utc>)>, PortError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("keyHash", Self::pk(ticket))
            .return_values(ReturnValue::AllOld)
            .send_recorded()
            .await
            .map_err(backend)?;
        let Some(item) = out.attributes else {
            return Ok(None);
        };
        let key = item.get("apiKeyHash").and_then(|v| v.as_s().ok());
        let expires = item
            .get("expiresAt")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|s| DateTime::from_timestamp(s, 0));
        Ok(key
            .zip(expires)
            .map(|(k, e)| (ApiKeyHash::from_stored(k.clone()), e)))
    }
}
