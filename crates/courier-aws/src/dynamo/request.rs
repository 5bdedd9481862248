//! The request shapes every repository here repeats, written once: read one item by key, write
//! one item, query a partition by sort-key prefix, and decode what a query found.

use super::{Conditional, Item, backend, codec};
use crate::capacity::{SendRecorded, query_all};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use courier_core::error::PortError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads the item at `key` with a strongly consistent GetItem and decodes it; `None` when there
/// is no item.
pub(crate) async fn get_consistent<T: DeserializeOwned>(
    client: &Client,
    table: &str,
    key: Item,
) -> Result<Option<T>, PortError> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send_recorded()
        .await
        .map_err(backend)?;
    out.item
        .filter(|i| !i.is_empty())
        .map(serde_dynamo::from_item)
        .transpose()
        .map_err(codec)
}

/// Writes `item` with an unconditional PutItem (replacing what was stored at its key).
pub(crate) async fn put(
    client: &Client,
    table: &str,
    item: impl Serialize,
) -> Result<(), PortError> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(serde_dynamo::to_item(item).map_err(codec)?))
        .send_recorded()
        .await
        .map_err(backend)?;
    Ok(())
}

/// Writes `item` on condition that the stored one is at version `expected`, or with `None` that
/// there is none (no `key_attribute`); a failed condition is a [`PortError::Conflict`].
pub(crate) async fn put_versioned(
    client: &Client,
    table: &str,
    item: impl Serialize,
    key_attribute: &str,
    expected: Option<u64>,
) -> Result<(), PortError> {
    let req = client
        .put_item()
        .table_name(table)
        .set_item(Some(serde_dynamo::to_item(item).map_err(codec)?));
    let req = match expected {
        None => req.condition_expression(format!("attribute_not_exists({key_attribute})")),
        Some(v) => req
            .condition_expression("version = :v")
            .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
    };
    req.send_recorded().await.or_conflict()?;
    Ok(())
}

/// A query of partition `pk` for the items whose sort key starts with `prefix` (the caller adds
/// projection, consistency, and runs it).
pub(crate) fn sk_prefix_query(
    client: &Client,
    table: &str,
    pk: impl Into<String>,
    prefix: impl Into<String>,
) -> QueryFluentBuilder {
    client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
        .expression_attribute_values(":prefix", AttributeValue::S(prefix.into()))
}

/// Runs a query to its last page ([`query_all`]) and decodes every item it found.
pub(crate) async fn query_decoded<T: DeserializeOwned>(
    query: QueryFluentBuilder,
) -> Result<Vec<T>, PortError> {
    query_all(query)
        .await
        .map_err(backend)?
        .into_iter()
        .map(|item| serde_dynamo::from_item(item).map_err(codec))
        .collect()
}
