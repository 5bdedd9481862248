//! The `$connect` REQUEST authorizer. Allow: an IAM policy for this connection with `userId` and
//! `deviceId` in the context. A missing, unknown or revoked key: the error `Unauthorized`, which
//! API Gateway turns into a 401 refusal of the handshake.

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use courier_core::ErrorCode;
use courier_core::ports::CredentialStore;
use courier_core::usecases::authorize::{authorize, presented_key};
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

/// Checks the key presented at `$connect`.
pub async fn handle(
    credentials: &dyn CredentialStore,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<Value, AuthorizerError> {
    let header = event
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let token = event.query_string_parameters.first("token");
    match authorize(credentials, presented_key(header, token)).await {
        Ok(who) => {
            tracing::info!(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym(), "connection authorized");
            let resource = event.method_arn.clone().unwrap_or_else(|| "*".into());
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
