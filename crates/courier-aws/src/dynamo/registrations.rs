//! `RegistrationsTable`: one item per phone number with a pending code.

use super::request::{get_consistent, put_versioned};
use super::{Conditional, Item as Key, epoch_secs};
use crate::capacity::SendRecorded;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use courier_core::PhoneNumber;
use courier_core::error::PortError;
use courier_core::ports::{PendingRegistration, RegistrationStore};
use courier_core::secrets::CodeHash;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    phone: String,
    code_salt: String,
    code_digest: String,
    expires_at: DateTime<Utc>,
    failed_attempts: u32,
    sent_at: Vec<DateTime<Utc>>,
    version: u64,
    /// Removal time for DynamoDB TTL: when neither the code nor the send window matter any more.
    ttl: i64,
}

fn phone_key(phone: &PhoneNumber) -> Key {
    Key::from([(
        "phone".to_owned(),
        AttributeValue::S(phone.as_str().to_owned()),
    )])
}

/// Pending registrations in DynamoDB, written with version conditions.
#[derive(Clone)]
pub struct DynamoRegistrations {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoRegistrations {
    /// A repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl RegistrationStore for DynamoRegistrations {
    async fn get(&self, phone: &PhoneNumber) -> Result<Option<PendingRegistration>, PortError> {
        let item: Option<Item> =
            get_consistent(&self.client, &self.table, phone_key(phone)).await?;
        Ok(item.map(|item| PendingRegistration {
            phone: phone.clone(),
            code: CodeHash {
                salt: item.code_salt,
                digest: item.code_digest,
            },
            expires_at: item.expires_at,
            failed_attempts: item.failed_attempts,
            sent_at: item.sent_at,
            version: item.version,
        }))
    }

    async fn put(&self, reg: &PendingRegistration, expected: Option<u64>) -> Result<(), PortError> {
        let last_send = reg.sent_at.iter().max().copied().unwrap_or(reg.expires_at);
        let ttl = epoch_secs(
            reg.expires_at
                .max(last_send + chrono::Duration::minutes(15)),
        );
        let item = Item {
            phone: reg.phone.as_str().to_owned(),
            code_salt: reg.code.salt.clone(),
            code_digest: reg.code.digest.clone(),
            expires_at: reg.expires_at,
            failed_attempts: reg.failed_attempts,
            sent_at: reg.sent_at.clone(),
            version: reg.version,
            ttl,
        };
        put_versioned(&self.client, &self.table, item, "phone", expected).await
    }

    async fn delete(&self, phone: &PhoneNumber, expected: u64) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(phone_key(phone)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", AttributeValue::N(expected.to_string()))
            .send_recorded()
            .await
            .or_conflict()?;
        Ok(())
    }
}
