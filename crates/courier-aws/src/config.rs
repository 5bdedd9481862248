//! Configuration read once per cold start.

use aws_config::{BehaviorVersion, SdkConfig};

/// Why configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
}

/// Reads a required environment variable.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

/// Loads the SDK configuration from the environment (region, credentials and the standard
/// `AWS_ENDPOINT_URL*` overrides, which is how the local cloud points functions at its emulators).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// A DynamoDB client; built once and cloned cheaply.
pub fn dynamodb(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

/// An SNS client.
pub fn sns(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(sdk)
}

/// A client for the WebSocket API's management endpoint. `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`
/// (set by the local cloud) wins; otherwise `COURIER_WS_ENDPOINT` from template.yaml is used.
pub fn management(sdk: &SdkConfig) -> Result<aws_sdk_apigatewaymanagement::Client, ConfigError> {
    let mut builder = aws_sdk_apigatewaymanagement::config::Builder::from(sdk);
    if std::env::var_os("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI").is_none() {
        builder = builder.endpoint_url(required("COURIER_WS_ENDPOINT")?);
    }
    Ok(aws_sdk_apigatewaymanagement::Client::from_conf(
        builder.build(),
    ))
}
