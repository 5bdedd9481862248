//! Configuration read once per cold start.

use aws_config::{BehaviorVersion, SdkConfig};

/// Why configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("environment variable {0} must be {1}, got {2:?}")]
    Invalid(&'static str, &'static str, String),
}

/// An optional positive number from the environment; `default` when unset or empty.
fn positive(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(ConfigError::Invalid(name, "a positive whole number", v)),
        _ => Ok(default),
    }
}

/// The rate limits, from the variables template.yaml sets from its parameters (`SEND_BURST`,
/// `SEND_REFILL_INTERVAL_MS`, `CODES_PER_PHONE`, `CODES_PER_IP`, `CODE_LIMIT_WINDOW_SECS`,
/// `LINK_ATTEMPTS`, `LINK_ATTEMPT_WINDOW_SECS`, `FAILED_CONNECTS`, `FAILED_CONNECT_WINDOW_SECS`);
/// each one unset keeps its default ([`Limits::default`]).
///
/// [`Limits::default`]: courier_core::rate_limit::Limits
pub fn limits() -> Result<courier_core::rate_limit::Limits, ConfigError> {
    use courier_core::rate_limit::{Limits, Rule};
    let d = Limits::default();
    let (
        Rule::TokenBucket { burst, interval_ms },
        Rule::Window {
            max: per_phone,
            window_secs: code_window,
        },
        Rule::Window { max: per_ip, .. },
        Rule::Window {
            max: links,
            window_secs: link_window,
        },
        Rule::Window {
            max: connects,
            window_secs: connect_window,
        },
    ) = (
        d.sends,
        d.codes_per_phone,
        d.codes_per_ip,
        d.link_attempts,
        d.failed_connects,
    )
    else {
        unreachable!("the defaults are a bucket and four windows")
    };
    let count = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
        let n = positive(name, u64::from(default))?;
        u32::try_from(n)
            .map_err(|_| ConfigError::Invalid(name, "at most 4294967295", n.to_string()))
    };
    let code_window = positive("CODE_LIMIT_WINDOW_SECS", code_window)?;
    Ok(Limits {
        sends: Rule::TokenBucket {
            burst: count("SEND_BURST", burst)?,
            interval_ms: positive("SEND_REFILL_INTERVAL_MS", interval_ms)?,
        },
        codes_per_phone: Rule::Window {
            max: count("CODES_PER_PHONE", per_phone)?,
            window_secs: code_window,
        },
        codes_per_ip: Rule::Window {
            max: count("CODES_PER_IP", per_ip)?,
            window_secs: code_window,
        },
        link_attempts: Rule::Window {
            max: count("LINK_ATTEMPTS", links)?,
            window_secs: positive("LINK_ATTEMPT_WINDOW_SECS", link_window)?,
        },
        failed_connects: Rule::Window {
            max: count("FAILED_CONNECTS", connects)?,
            window_secs: positive("FAILED_CONNECT_WINDOW_SECS", connect_window)?,
        },
    })
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
