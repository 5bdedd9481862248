//! DynamoDB repositories. Items are mapped with `serde_dynamo` from plain structs, so the stored
//! shape is written down once, next to the code that reads it. Table layouts are in
//! `docs/data-model.md` and template.yaml.

mod accounts;
mod connections;
mod registrations;

pub use accounts::DynamoAccounts;
pub use connections::DynamoConnections;
pub use registrations::DynamoRegistrations;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use courier_core::error::PortError;

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

/// Item (de)serialisation failures are backend failures: the stored data is not what we wrote.
pub(crate) fn codec(e: serde_dynamo::Error) -> PortError {
    PortError::backend(e)
}

/// Seconds since the epoch, as DynamoDB's TTL wants.
pub(crate) fn epoch_secs(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}
