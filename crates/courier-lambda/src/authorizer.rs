//! The `$connect` REQUEST authorizer. Allow: an IAM policy for this connection with `userId` and
//! `deviceId` in the context. A missing, unknown or revoked key, or a connect ticket that is
//! unknown, used or expired: the error `Unauthorized`, which API Gateway turns into a 401
//! refusal of the handshake.

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use courier_core::ErrorCode;
use courier_core::clock::{Clock, SystemClock};
use courier_core::ports::{ConnectTicketStore, CredentialStore};
use courier_core::rate_limit::Throttle;
use courier_core::usecases::authorize::{Presented, authorize_connection};
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};

/// Why a connection was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// API Gateway answers 401 when the authorizer fails with exactly this message.
    #[error("Unauthorized")]
    Unauthorized,
    /// The key could not be checked (a backend failure): API Gateway answers 500.
    #[error("authorizer failed: {0}")]
    Failed(String),
}

impl From<AuthorizerError> for Diagnostic {
    fn from(e: AuthorizerError) -> Self {
        let error_type = match e {
            AuthorizerError::Unauthorized => "Unauthorized",
            AuthorizerError::Failed(_) => "AuthorizerFailed",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The context key that tells the `$connect` route to refuse a rate-limited address with 429;
/// see [`handle_limited`].
pub const RETRY_AFTER_CONTEXT: &str = "rateLimitRetryAfter";

/// Checks the key presented at `$connect` (no tickets), with no limit on failed attempts.
pub async fn handle(
    credentials: &dyn CredentialStore,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<Value, AuthorizerError> {
    handle_limited(credentials, None, None, &SystemClock, event).await
}

/// Checks the key (`Authorization: Bearer`) or the one-time ticket (`?ticket=`) presented at
/// `$connect` behind the failed-connection limit of the source IP and key prefix. A key in the
/// URL (`?token=`) is not looked at: it would be in every access log.
///
/// A REQUEST authorizer can only answer allow, deny (403) or unauthorized (401), never 429. So an
/// address over its limit is allowed *to the `$connect` route only*, with no identity and
/// [`RETRY_AFTER_CONTEXT`] in the context, and the route refuses the handshake with 429,
/// `Retry-After` and a `LIMIT_EXCEEDED` body; no connection is ever recorded for it, and its key
/// is not looked at.
pub async fn handle_limited(
    credentials: &dyn CredentialStore,
    tickets: Option<&dyn ConnectTicketStore>,
    failures: Option<&Throttle<'_>>,
    clock: &dyn Clock,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<Value, AuthorizerError> {
    let header = event
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let ticket = event.query_string_parameters.first("ticket");
    let source_ip = event
        .request_context
        .identity
        .as_ref()
        .and_then(|i| i.source_ip.as_deref());
    let resource = event.method_arn.clone().unwrap_or_else(|| "*".into());
    let presented = Presented::from_request(header, ticket);
    match authorize_connection(
        credentials,
        tickets,
        presented,
        source_ip,
        failures,
        clock.now(),
    )
    .await
    {
        Err(e) if e.code == ErrorCode::LimitExceeded => {
            let retry = e.retry_after_secs.unwrap_or(1);
            tracing::info!(
                retry_after_secs = retry,
                "connection refused: too many failures from this address"
            );
            Ok(json!({
                "principalId": "rate-limited",
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}]
                },
                "context": {RETRY_AFTER_CONTEXT: retry.to_string()}
            }))
        }
        result => answer(result, resource),
    }
}

fn answer(
    result: Result<courier_core::ports::DeviceCredential, courier_core::ApiError>,
    resource: String,
) -> Result<Value, AuthorizerError> {
    match result {
        Ok(who) => {
            tracing::info!(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym(), "connection authorized");
            Ok(json!({
                "principalId": who.user_id.as_str(),
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}]
                },
                "context": {"userId": who.user_id.as_str(), "deviceId": who.device_id.as_str()}
            }))
        }
        Err(e) if e.code == ErrorCode::Unauthorized => {
            tracing::info!(reason = %e.message, "connection refused");
            Err(AuthorizerError::Unauthorized)
        }
        Err(e) => {
            crate::log_error("authorize", &e);
            Err(AuthorizerError::Failed(e.message))
        }
    }
}
