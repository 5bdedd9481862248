//! The API Gateway management API: post a frame to a connection, or close it.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use courier_core::ConnectionId;
use courier_core::error::PortError;
use courier_core::ports::{ConnectionGateway, GatewayError};

/// The management API client of one WebSocket API stage.
#[derive(Clone)]
pub struct ManagementApi {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ManagementApi {
    /// Wraps a client built by [`crate::config::management`].
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        Self { client }
    }
}

/// A post the gateway will refuse however often it is sent: the frame is over the 128 KB limit
/// (`PayloadTooLargeException`, 413) or malformed (any other 400). Retrying it would only hold
/// the stream's shard through ten retries of its batch.
fn refused_for_good(e: &SdkError<PostToConnectionError, HttpResponse>) -> bool {
    if e.as_service_error()
        .is_some_and(|s| s.is_payload_too_large_exception())
    {
        return true;
    }
    e.raw_response()
        .is_some_and(|r| matches!(r.status().as_u16(), 400 | 413))
}

/// A management API operation's error that can say "the connection is gone" (`GoneException`).
trait GoneError {
    fn is_gone(&self) -> bool;
}

impl GoneError for PostToConnectionError {
    fn is_gone(&self) -> bool {
        self.is_gone_exception()
    }
}

impl GoneError for DeleteConnectionError {
    fn is_gone(&self) -> bool {
        self.is_gone_exception()
    }
}

/// A failed call: [`GatewayError::Gone`] for a connection that is gone, else a backend error.
fn gone_or_backend<E>(e: SdkError<E, HttpResponse>) -> GatewayError
where
    E: GoneError,
    aws_sdk_apigatewaymanagement::Error: From<SdkError<E, HttpResponse>>,
{
    if e.as_service_error().is_some_and(E::is_gone) {
        return GatewayError::Gone;
    }
    PortError::backend(aws_sdk_apigatewaymanagement::Error::from(e)).into()
}

#[async_trait]
impl ConnectionGateway for ManagementApi {
    async fn post(&self, connection_id: &ConnectionId, data: &str) -> Result<(), GatewayError> {
        let res = self
            .client
            .post_to_connection()
            .connection_id(connection_id.as_str())
            .data(Blob::new(data.as_bytes()))
            .send()
            .await;
        crate::capacity::record_management_call();
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if !e.as_service_error().is_some_and(GoneError::is_gone)
                    && refused_for_good(&e) =>
            {
                Err(GatewayError::Refused(
                    aws_sdk_apigatewaymanagement::Error::from(e).to_string(),
                ))
            }
            Err(e) => Err(gone_or_backend(e)),
        }
    }

    async fn close(&self, connection_id: &ConnectionId) -> Result<(), GatewayError> {
        let res = self
            .client
            .delete_connection()
            .connection_id(connection_id.as_str())
            .send()
            .await;
        crate::capacity::record_management_call();
        res.map(drop).map_err(gone_or_backend)
    }

    async fn close_opening(
        &self,
        connection_id: &ConnectionId,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), GatewayError> {
        // API Gateway opens the connection when `$connect` returns, usually within
        // milliseconds of the record being written; until then a close is `Gone`.
        loop {
            match self.close(connection_id).await {
                Err(GatewayError::Gone) if chrono::Utc::now() < until => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                outcome => return outcome,
            }
        }
    }
}
