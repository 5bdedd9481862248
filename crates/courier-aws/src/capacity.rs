//! What the adapters cost: DynamoDB calls and the capacity DynamoDB says they consumed
//! (`ReturnConsumedCapacity: TOTAL`), management API calls and SNS publishes, added up in one
//! process-wide accumulator.
//!
//! Lambda runs one invocation at a time per process, so once [`take`] has reset the totals,
//! what accumulates until the next [`take`] is one invocation's cost (the invocation's own tasks
//! may run concurrently; the counters are atomics). `courier_lambda::telemetry` reports them
//! after every invocation.
//!
//! A call that fails is counted, with no units: DynamoDB returns no consumed capacity with an
//! error (a failed condition still costs write units on AWS, which this cannot see). SDK-level
//! retries of one call count once.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::{QueryError, QueryOutput};
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::operation::scan::{ScanError, ScanOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_async::future::pagination_stream::PaginationStream;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What every DynamoDB call in this crate asks for.
pub const TOTAL: ReturnConsumedCapacity = ReturnConsumedCapacity::Total;

static DYNAMODB_CALLS: AtomicU64 = AtomicU64::new(0);
/// f64 bits.
static READ_UNITS: AtomicU64 = AtomicU64::new(0);
/// f64 bits.
static WRITE_UNITS: AtomicU64 = AtomicU64::new(0);
static MANAGEMENT_API_CALLS: AtomicU64 = AtomicU64::new(0);
static SNS_PUBLISHES: AtomicU64 = AtomicU64::new(0);

/// The accumulated cost since the last [`take`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// DynamoDB API calls (a paginated query counts one per page).
    pub dynamodb_calls: u64,
    /// Read capacity units DynamoDB reported.
    pub read_units: f64,
    /// Write capacity units DynamoDB reported.
    pub write_units: f64,
    /// API Gateway management API calls (`PostToConnection`, `DeleteConnection`).
    pub management_api_calls: u64,
    /// SNS `Publish` calls (SMS and push).
    pub sns_publishes: u64,
}

fn add_f64(cell: &AtomicU64, v: f64) {
    if v == 0.0 {
        return;
    }
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

/// The totals so far, without resetting them.
pub fn snapshot() -> Totals {
    Totals {
        dynamodb_calls: DYNAMODB_CALLS.load(Ordering::Relaxed),
        read_units: f64::from_bits(READ_UNITS.load(Ordering::Relaxed)),
        write_units: f64::from_bits(WRITE_UNITS.load(Ordering::Relaxed)),
        management_api_calls: MANAGEMENT_API_CALLS.load(Ordering::Relaxed),
        sns_publishes: SNS_PUBLISHES.load(Ordering::Relaxed),
    }
}

/// The totals so far, resetting them to zero.
pub fn take() -> Totals {
    Totals {
        dynamodb_calls: DYNAMODB_CALLS.swap(0, Ordering::Relaxed),
        read_units: f64::from_bits(READ_UNITS.swap(0, Ordering::Relaxed)),
        write_units: f64::from_bits(WRITE_UNITS.swap(0, Ordering::Relaxed)),
        management_api_calls: MANAGEMENT_API_CALLS.swap(0, Ordering::Relaxed),
        sns_publishes: SNS_PUBLISHES.swap(0, Ordering::Relaxed),
    }
}

/// Counts one DynamoDB call that consumed `read` and `write` units.
pub fn record_dynamodb(read: f64, write: f64) {
    DYNAMODB_CALLS.fetch_add(1, Ordering::Relaxed);
    add_f64(&READ_UNITS, read);
    add_f64(&WRITE_UNITS, write);
}

/// Counts one management API call.
pub fn record_management_call() {
    MANAGEMENT_API_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Counts one SNS publish.
pub fn record_sns_publish() {
    SNS_PUBLISHES.fetch_add(1, Ordering::Relaxed);
}

/// Whether an operation reads or writes, for capacity reported only as `CapacityUnits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GetItem, Query, Scan, BatchGetItem, TransactGetItems.
    Read,
    /// PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems.
    Write,
}

/// `(read, write)` units of one `ConsumedCapacity`: its `ReadCapacityUnits` and
/// `WriteCapacityUnits` when DynamoDB splits them, else its `CapacityUnits` on the side of `access`.
pub fn units(c: &ConsumedCapacity, access: Access) -> (f64, f64) {
    match (c.read_capacity_units(), c.write_capacity_units()) {
        (None, None) => {
            let total = c.capacity_units().unwrap_or(0.0);
            match access {
                Access::Read => (total, 0.0),
                Access::Write => (0.0, total),
            }
        }
        (r, w) => (r.unwrap_or(0.0), w.unwrap_or(0.0)),
    }
}

/// A DynamoDB operation output that carries consumed capacity.
pub trait Consumed {
    /// Whether the operation reads or writes.
    const ACCESS: Access;
    /// The output's capacity entries (one, or one per table for transactions and batches).
    fn capacity(&self) -> Vec<&ConsumedCapacity>;
}

macro_rules! consumed {
    ($access:ident, option: $($op:ty),+) => {$(
        impl Consumed for $op {
            const ACCESS: Access = Access::$access;
            fn capacity(&self) -> Vec<&ConsumedCapacity> {
                self.consumed_capacity().into_iter().collect()
            }
        }
    )+};
    ($access:ident, list: $($op:ty),+) => {$(
        impl Consumed for $op {
            const ACCESS: Access = Access::$access;
            fn capacity(&self) -> Vec<&ConsumedCapacity> {
                self.consumed_capacity().iter().collect()
            }
        }
    )+};
}

use aws_sdk_dynamodb::operation as op;
consumed!(Read, option: op::get_item::GetItemOutput, op::query::QueryOutput, op::scan::ScanOutput);
consumed!(Write, option: op::put_item::PutItemOutput, op::update_item::UpdateItemOutput, op::delete_item::DeleteItemOutput);
consumed!(Read, list: op::batch_get_item::BatchGetItemOutput, op::transact_get_items::TransactGetItemsOutput);
consumed!(Write, list: op::batch_write_item::BatchWriteItemOutput, op::transact_write_items::TransactWriteItemsOutput);

/// Records a DynamoDB call's result: `client.get_item()...send().await.recorded()`.
pub trait Recorded {
    /// Counts the call and the capacity it consumed (none when it failed); returns it unchanged.
    fn recorded(self) -> Self;
}

impl<T: Consumed, E> Recorded for Result<T, E> {
    fn recorded(self) -> Self {
        let (mut read, mut write) = (0.0, 0.0);
        if let Ok(out) = &self {
            for c in out.capacity() {
                let (r, w) = units(c, T::ACCESS);
                read += r;
                write += w;
            }
        }
        record_dynamodb(read, write);
        self
    }
}

/// Sends a DynamoDB request asking for its consumed capacity, and records the call and the
/// capacity ([`Recorded`]): `client.get_item()....send_recorded().await`, the one way every
/// adapter in this crate sends.
pub trait SendRecorded {
    /// The operation's output.
    type Output;
    /// The operation's error.
    type Error;
    /// `return_consumed_capacity(TOTAL).send().await.recorded()`.
    fn send_recorded(
        self,
    ) -> impl std::future::Future<Output = Result<Self::Output, SdkError<Self::Error, HttpResponse>>>
    + Send;
}

macro_rules! send_recorded {
    ($($module:ident :: $builder:ident => $output:ident, $error:ident);+ $(;)?) => {$(
        impl SendRecorded for op::$module::builders::$builder {
            type Output = op::$module::$output;
            type Error = op::$module::$error;
            fn send_recorded(
                self,
            ) -> impl std::future::Future<
                Output = Result<Self::Output, SdkError<Self::Error, HttpResponse>>,
            > + Send {
                async move { self.return_consumed_capacity(TOTAL).send().await.recorded() }
            }
        }
    )+};
}

send_recorded!(
    get_item::GetItemFluentBuilder => GetItemOutput, GetItemError;
    put_item::PutItemFluentBuilder => PutItemOutput, PutItemError;
    update_item::UpdateItemFluentBuilder => UpdateItemOutput, UpdateItemError;
    delete_item::DeleteItemFluentBuilder => DeleteItemOutput, DeleteItemError;
    query::QueryFluentBuilder => QueryOutput, QueryError;
    scan::ScanFluentBuilder => ScanOutput, ScanError;
    batch_get_item::BatchGetItemFluentBuilder => BatchGetItemOutput, BatchGetItemError;
    batch_write_item::BatchWriteItemFluentBuilder => BatchWriteItemOutput, BatchWriteItemError;
    transact_get_items::TransactGetItemsFluentBuilder => TransactGetItemsOutput, TransactGetItemsError;
    transact_write_items::TransactWriteItemsFluentBuilder => TransactWriteItemsOutput, TransactWriteItemsError;
);

/// The pages of a query or scan (DynamoDB's 1 MB pages, or its `limit`), each recorded as it
/// arrives: `while let Some(page) = pages.next().await`. Stopping early is not asking for more.
pub struct Pages<O, E>(PaginationStream<Result<O, SdkError<E, HttpResponse>>>);

impl<O: Consumed, E> Pages<O, E> {
    /// The next page, or `None` after the last.
    pub async fn next(&mut self) -> Option<Result<O, SdkError<E, HttpResponse>>> {
        self.0.next().await.map(Recorded::recorded)
    }
}

/// A query's pages (see [`Pages`]); the SDK's paginator carries `ExclusiveStartKey` on.
pub fn query_pages(query: QueryFluentBuilder) -> Pages<QueryOutput, QueryError> {
    Pages(
        query
            .return_consumed_capacity(TOTAL)
            .into_paginator()
            .send(),
    )
}

/// A scan's pages (see [`Pages`]).
pub fn scan_pages(scan: ScanFluentBuilder) -> Pages<ScanOutput, ScanError> {
    Pages(scan.return_consumed_capacity(TOTAL).into_paginator().send())
}

/// Runs a query to its last page (asking for consumed capacity, recording every page): the items.
pub async fn query_all(
    query: QueryFluentBuilder,
) -> Result<Vec<HashMap<String, AttributeValue>>, SdkError<QueryError, HttpResponse>> {
    let mut pages = query_pages(query);
    let mut items = Vec::new();
    while let Some(page) = pages.next().await {
        items.extend(page?.items.unwrap_or_default());
    }
    Ok(items)
}

/// Runs a `Select::Count` query to its last page: how many items match.
pub async fn query_count(
    query: QueryFluentBuilder,
) -> Result<usize, SdkError<QueryError, HttpResponse>> {
    let mut pages = query_pages(query.select(aws_sdk_dynamodb::types::Select::Count));
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += usize::try_from(page?.count).unwrap_or(0);
    }
    Ok(count)
}

/// Reads items by key with strongly consistent reads, 100 per BatchGetItem (DynamoDB's limit),
/// asking again for what DynamoDB leaves unprocessed (throttling, or over 16 MB) with a growing
/// pause. The items come back in no particular order; keys with no item are left out.
pub async fn batch_get_consistent(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<HashMap<String, AttributeValue>>,
) -> Result<Vec<HashMap<String, AttributeValue>>, aws_sdk_dynamodb::Error> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let mut items = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .expect("the keys are set"),
        );
        let mut attempt = 0u64;
        while let Some(request) = pending.take() {
            let mut out = client
                .batch_get_item()
                .request_items(table, request)
                .send_recorded()
                .await?;
            items.extend(
                out.responses
                    .as_mut()
                    .and_then(|r| r.remove(table))
                    .unwrap_or_default(),
            );
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys().is_empty());
            if pending.is_some() {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 * attempt.min(10))).await;
            }
        }
    }
    Ok(items)
}

/// Deletes items by key, 25 per BatchWriteItem (DynamoDB's limit), sending unprocessed keys
/// again with a growing pause.
pub async fn batch_delete(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<HashMap<String, AttributeValue>>,
) -> Result<(), aws_sdk_dynamodb::Error> {
    use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
    let requests = keys
        .into_iter()
        .map(|k| {
            WriteRequest::builder()
                .delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(k))
                        .build()
                        .expect("the key is set"),
                )
                .build()
        })
        .collect();
    batch_write(client, table, requests).await
}

/// Puts items, 25 per BatchWriteItem, sending unprocessed items again with a growing pause.
pub async fn batch_put(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<HashMap<String, AttributeValue>>,
) -> Result<(), aws_sdk_dynamodb::Error> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let requests = items
        .into_iter()
        .map(|item| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("the item is set"),
                )
                .build()
        })
        .collect();
    batch_write(client, table, requests).await
}

/// Sends write requests 25 per BatchWriteItem (DynamoDB's limit); what DynamoDB leaves
/// unprocessed (throttling) is sent again with a growing pause until everything is written.
pub async fn batch_write(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
) -> Result<(), aws_sdk_dynamodb::Error> {
    for chunk in requests.chunks(25) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0u64;
        while !pending.is_empty() {
            let out = client
                .batch_write_item()
                .request_items(table, pending)
                .send_recorded()
                .await?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 * attempt.min(10))).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;

    // One test touches the process-wide counters, so tests cannot race on them.
    #[test]
    fn accumulates_and_resets() {
        take();
        let get = GetItemOutput::builder()
            .consumed_capacity(ConsumedCapacity::builder().capacity_units(1.0).build())
            .build();
        Ok::<_, ()>(get).recorded().unwrap();
        let tx = TransactWriteItemsOutput::builder()
            .consumed_capacity(
                ConsumedCapacity::builder()
                    .table_name("a")
                    .capacity_units(2.0)
                    .build(),
            )
            .consumed_capacity(
                ConsumedCapacity::builder()
                    .table_name("b")
                    .capacity_units(2.0)
                    .read_capacity_units(0.5)
                    .write_capacity_units(1.5)
                    .build(),
            )
            .build();
        Ok::<_, ()>(tx).recorded().unwrap();
        Err::<GetItemOutput, _>("failed").recorded().unwrap_err();
        record_management_call();
        record_sns_publish();
        record_sns_publish();
        assert_eq!(snapshot().dynamodb_calls, 3);
        assert_eq!(
            take(),
            Totals {
                dynamodb_calls: 3,
                read_units: 1.5,
                write_units: 3.5,
                management_api_calls: 1,
                sns_publishes: 2,
            }
        );
        assert_eq!(take(), Totals::default());
    }
}
