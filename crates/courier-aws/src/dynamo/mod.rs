//! DynamoDB repositories. Items are mapped with `serde_dynamo` from plain structs, so the stored
//! shape is written down once, next to the code that reads it. Table layouts are in
//! docs/architecture.md ("Data model") and template.yaml.

mod accounts;
mod backups;
mod blocks;
mod connect_tickets;
mod connections;
mod device_queues;
mod keys;
mod links;
mod media;
mod messages;
mod rate_limits;
mod registrations;
mod request;
mod sessions;
mod settings;
mod statuses;

pub use accounts::{DynamoAccounts, DynamoCredentials, DynamoUsers};
pub use backups::DynamoBackups;
pub use connect_tickets::DynamoConnectTickets;
pub use connections::DynamoConnections;
pub use device_queues::DynamoDeviceQueues;
pub use keys::DynamoKeys;
pub use links::DynamoLinks;
pub use media::DynamoMedia;
pub use messages::{
    CLAIM_LEASE_SECS, DynamoMessages, HIDDEN_FROM_ATTRIBUTE, INLINE_ATTRIBUTE, outcome_seq,
};
pub use rate_limits::DynamoRateLimiter;
pub use registrations::DynamoRegistrations;
pub use sessions::DynamoSessions;
pub use settings::DynamoSettings;
pub use statuses::DynamoStatuses;

use crate::capacity::SendRecorded;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use courier_core::error::PortError;

/// A raw DynamoDB item (or key).
pub(crate) type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// Maps a failed call to a backend error.
pub(crate) fn backend<E, R>(e: SdkError<E, R>) -> PortError
where
    aws_sdk_dynamodb::Error: From<SdkError<E, R>>,
{
    PortError::backend(aws_sdk_dynamodb::Error::from(e))
}

/// A transaction cancelled by a failed condition is a [`PortError::Conflict`].
pub(crate) fn transaction_error<R>(e: SdkError<TransactWriteItemsError, R>) -> PortError
where
    aws_sdk_dynamodb::Error: From<SdkError<TransactWriteItemsError, R>>,
{
    if let Some(TransactWriteItemsError::TransactionCanceledException(t)) = e.as_service_error()
        && t.cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed"))
    {
        return PortError::Conflict;
    }
    backend(e)
}

/// An operation error that can say "the request's condition failed"
/// (`ConditionalCheckFailedException`).
pub trait ConditionError {
    /// Whether the error is a failed condition.
    fn is_condition_failed(&self) -> bool;
}

macro_rules! condition_error {
    ($($module:ident :: $error:ident),+) => {$(
        impl ConditionError for aws_sdk_dynamodb::operation::$module::$error {
            fn is_condition_failed(&self) -> bool {
                self.is_conditional_check_failed_exception()
            }
        }
    )+};
}

condition_error!(
    put_item::PutItemError,
    update_item::UpdateItemError,
    delete_item::DeleteItemError
);

/// A conditional write's result read as what it means: `Ok(Some(output))` written,
/// `Ok(None)` its condition failed (the caller says what that means: a conflict, nothing to do,
/// a refusal), `Err` any other failure.
pub trait Conditional<T> {
    /// See [`Conditional`].
    fn unless_condition_failed(self) -> Result<Option<T>, PortError>;

    /// A failed condition is a [`PortError::Conflict`]: what is stored is not what the write
    /// was made against (another version, or an item that should not be there).
    fn or_conflict(self) -> Result<T, PortError>
    where
        Self: Sized,
    {
        self.unless_condition_failed()?.ok_or(PortError::Conflict)
    }
}

impl<T, E> Conditional<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ConditionError,
    aws_sdk_dynamodb::Error: From<SdkError<E, HttpResponse>>,
{
    fn unless_condition_failed(self) -> Result<Option<T>, PortError> {
        match self {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.as_service_error().is_some_and(E::is_condition_failed) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }
}

/// Item (de)serialisation failures are backend failures: the stored data is not what we wrote.
pub(crate) fn codec(e: serde_dynamo::Error) -> PortError {
    PortError::backend(e)
}

/// Seconds since the epoch, as DynamoDB's TTL wants.
pub(crate) fn epoch_secs(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}

/// Runs a write transaction, retrying (with jitter) when DynamoDB cancels it because another
/// transaction touched the same item at the same moment (`TransactionConflict`), which real
/// DynamoDB does under contention. A failed condition is not retried: it is [`PortError::Conflict`].
pub(crate) async fn transact(
    client: &aws_sdk_dynamodb::Client,
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
) -> Result<(), PortError> {
    const ATTEMPTS: u32 = 6;
    for attempt in 1..=ATTEMPTS {
        let res = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send_recorded()
            .await;
        match res {
            Ok(_) => return Ok(()),
            Err(e) if attempt < ATTEMPTS && is_transaction_conflict(&e) => {
                let jitter = rand::random::<u64>() % 20;
                tokio::time::sleep(std::time::Duration::from_millis(
                    10 * u64::from(attempt) + jitter,
                ))
                .await;
            }
            Err(e) => return Err(transaction_error(e)),
        }
    }
    unreachable!("the last attempt returns")
}

/// Whether a transaction was cancelled only by contention, not by a failed condition.
pub(crate) fn is_transaction_conflict<R>(e: &SdkError<TransactWriteItemsError, R>) -> bool {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
            let codes: Vec<_> = t
                .cancellation_reasons()
                .iter()
                .filter_map(|r| r.code())
                .collect();
            codes.contains(&"TransactionConflict") && !codes.contains(&"ConditionalCheckFailed")
        }
        _ => false,
    }
}

/// The primary key of an item in a table keyed by string `pk` and `sk`.
fn pk_sk_key(pk: &str, sk: &str) -> Item {
    use aws_sdk_dynamodb::types::AttributeValue;
    Item::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_error<E>(e: E) -> SdkError<E, HttpResponse> {
        SdkError::service_error(
            e,
            HttpResponse::new(
                400.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            ),
        )
    }

    #[test]
    fn a_failed_condition_is_none_and_other_failures_are_backend_errors() {
        use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
        use aws_sdk_dynamodb::types::error::{
            ConditionalCheckFailedException, ResourceNotFoundException,
        };
        use courier_core::error::PortError;
        let written: Result<PutItemOutput, SdkError<PutItemError, HttpResponse>> =
            Ok(PutItemOutput::builder().build());
        assert!(matches!(written.unless_condition_failed(), Ok(Some(_))));
        let refused: Result<PutItemOutput, _> = Err(service_error(
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().build(),
            ),
        ));
        assert!(matches!(refused.unless_condition_failed(), Ok(None)));
        let refused: Result<PutItemOutput, _> = Err(service_error(
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().build(),
            ),
        ));
        assert!(matches!(refused.or_conflict(), Err(PortError::Conflict)));
        let missing: Result<PutItemOutput, _> = Err(service_error(
            PutItemError::ResourceNotFoundException(ResourceNotFoundException::builder().build()),
        ));
        assert!(matches!(
            missing.unless_condition_failed(),
            Err(PortError::Backend(_))
        ));
    }
}
