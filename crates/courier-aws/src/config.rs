//! Configuration read once per cold start.

use crate::trace::TraceHeader;
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
/// `LINK_ATTEMPTS`, `LINK_ATTEMPT_WINDOW_SECS`, `FAILED_CONNECTS`, `FAILED_CONNECT_WINDOW_SECS`,
/// `ACTION_BURST`, `ACTION_REFILL_INTERVAL_MS`, `GROUP_ADDS_PER_TARGET`, `HANDSHAKES_PER_TARGET`,
/// `LOOKUP_BURST`, `LOOKUP_REFILL_INTERVAL_MS`, `LOOKUPS_PER_ACCOUNT`, `CONTACT_DISCOVERIES`,
/// `KEY_CLAIM_BURST`, `KEY_CLAIM_REFILL_INTERVAL_MS`, `ONE_TIME_KEYS_PER_TARGET`); each one
/// unset keeps its default ([`Limits::default`]).
///
/// [`Limits::default`]: courier_core::rate_limit::Limits
pub fn limits() -> Result<courier_core::rate_limit::Limits, ConfigError> {
    use courier_core::rate_limit::{Limits, Quota, Rule};
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
    // The limits added for issue 21: a bucket reads its burst and refill interval, a window its
    // count (its length is fixed: a day, or an hour for one-time keys).
    let bucket = |burst_var, interval_var, default: Rule| -> Result<Rule, ConfigError> {
        let Rule::TokenBucket { burst, interval_ms } = default else {
            unreachable!("a bucket's default is a bucket")
        };
        Ok(Rule::TokenBucket {
            burst: count(burst_var, burst)?,
            interval_ms: positive(interval_var, interval_ms)?,
        })
    };
    let window = |max_var, default: Rule| -> Result<Rule, ConfigError> {
        let Rule::Window { max, window_secs } = default else {
            unreachable!("a window's default is a window")
        };
        Ok(Rule::Window {
            max: count(max_var, max)?,
            window_secs,
        })
    };
    Ok(Limits {
        actions: bucket("ACTION_BURST", "ACTION_REFILL_INTERVAL_MS", d.actions)?,
        group_adds_per_target: window("GROUP_ADDS_PER_TARGET", d.group_adds_per_target)?,
        handshakes_per_target: window("HANDSHAKES_PER_TARGET", d.handshakes_per_target)?,
        lookups: bucket("LOOKUP_BURST", "LOOKUP_REFILL_INTERVAL_MS", d.lookups)?,
        lookups_per_account: window("LOOKUPS_PER_ACCOUNT", d.lookups_per_account)?,
        discoveries: window("CONTACT_DISCOVERIES", d.discoveries)?,
        key_claims: bucket(
            "KEY_CLAIM_BURST",
            "KEY_CLAIM_REFILL_INTERVAL_MS",
            d.key_claims,
        )?,
        one_time_keys_per_target: window("ONE_TIME_KEYS_PER_TARGET", d.one_time_keys_per_target)?,
        pin_checks: window("PIN_CHECKS_PER_DAY", d.pin_checks)?,
        media_upload_bytes: Quota {
            max: positive("MEDIA_UPLOAD_BYTES_PER_DAY", d.media_upload_bytes.max)?,
            window_secs: d.media_upload_bytes.window_secs,
        },
        backup_bytes: Quota {
            max: positive("BACKUP_BYTES_PER_DAY", d.backup_bytes.max)?,
            window_secs: d.backup_bytes.window_secs,
        },
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

/// The SMS guard's settings (template.yaml's `SmsAllowedCallingCodes`, `SmsBudgetPerHour`,
/// `SmsBudgetPerCountryPerHour`): the allowed country calling codes (`SMS_ALLOWED_CALLING_CODES`,
/// comma-separated digits, empty or unset for every country), then the hourly budgets per
/// calling code (`SMS_BUDGET_PER_COUNTRY_PER_HOUR`, default 100) and for the whole service
/// (`SMS_BUDGET_PER_HOUR`, default 1000), as one-hour fixed windows.
pub fn sms_guard() -> Result<
    (
        Vec<u16>,
        courier_core::rate_limit::Rule,
        courier_core::rate_limit::Rule,
    ),
    ConfigError,
> {
    use courier_core::rate_limit::Rule;
    const NAME: &str = "SMS_ALLOWED_CALLING_CODES";
    let list = std::env::var(NAME).unwrap_or_default();
    let codes = list
        .split(',')
        .map(|c| c.trim().trim_start_matches('+'))
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<u16>()
                .ok()
                .filter(|n| (1..=999).contains(n))
                .ok_or_else(|| {
                    ConfigError::Invalid(
                        NAME,
                        "calling codes of 1 to 3 digits, comma-separated",
                        list.clone(),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hourly = |name: &'static str, default: u64| -> Result<Rule, ConfigError> {
        let n = positive(name, default)?;
        Ok(Rule::Window {
            max: u32::try_from(n)
                .map_err(|_| ConfigError::Invalid(name, "at most 4294967295", n.to_string()))?,
            window_secs: 3600,
        })
    };
    Ok((
        codes,
        hourly("SMS_BUDGET_PER_COUNTRY_PER_HOUR", 100)?,
        hourly("SMS_BUDGET_PER_HOUR", 1000)?,
    ))
}

/// How long a connect ticket lives (`CONNECT_TICKET_TTL_SECS`, template.yaml's
/// `ConnectTicketTtlSeconds`; 30 by default).
pub fn connect_ticket_lifetime_secs() -> Result<u64, ConfigError> {
    positive(
        "CONNECT_TICKET_TTL_SECS",
        courier_core::usecases::connect_ticket::TICKET_LIFETIME_SECS,
    )
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
///
/// Its HTTP client is the SDK's default one (hyper 1, rustls with aws-lc, the platform's root
/// certificates, proxy settings from the environment), shared by every client built from this
/// configuration, with one difference: its TLS setup waits for the first request
/// ([`DeferredTlsClient`]).
///
/// Where the environment already names the region (`AWS_REGION`) and holds credentials
/// (`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, as Lambda sets them), those are given to the
/// loader directly instead of through the SDK's default provider chains. The chains would pick
/// the same values, since the environment comes first in both, but building them (profile files,
/// web identity, container and instance metadata providers) took about 0.2 ms of every cold
/// start (docs/benchmarks.md, cold starts).
pub async fn sdk_config() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(DeferredTlsClient::new())
        .timeout_config(timeouts());
    let from_env = EnvShortcuts::read(|name| std::env::var(name).ok());
    if let Some(region) = from_env.region {
        loader = loader.region(aws_config::Region::new(region));
    }
    if from_env.credentials {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    loader.load().await
}

/// How long one attempt of an SDK call may take before the SDK gives it up and retries.
/// DynamoDB, SNS and the management API answer in milliseconds; an attempt still open after
/// this is stalled (a dead connection, an overloaded endpoint), and without a limit one such call
/// would hold a stream shard, or a sender's reply, until the function's own timeout.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long one SDK call may take with its retries: below the shortest function timeout
/// (10 s), so that a function answers with an error instead of being killed mid-work.
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);
/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The timeouts every client built from [`sdk_config`] has (DynamoDB, SNS, S3 and the
/// management API's PostToConnection alike); the SDK sets none by default but a 3.1 s connect
/// timeout.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// What [`sdk_config`] takes straight from the environment.
#[derive(Debug, PartialEq, Eq)]
struct EnvShortcuts {
    /// `AWS_REGION`, when set and not empty.
    region: Option<String>,
    /// Whether both parts of a static key are set (`AWS_SESSION_TOKEN` is read with them).
    credentials: bool,
}

impl EnvShortcuts {
    fn read(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        Self {
            region: set("AWS_REGION"),
            credentials: set("AWS_ACCESS_KEY_ID").is_some()
                && set("AWS_SECRET_ACCESS_KEY").is_some(),
        }
    }
}

/// The SDK's default HTTPS client, except that nothing is built until the first request.
///
/// The SDK's own client builds its TLS connector when each service client is *constructed*
/// (`validate_base_client_config`), so that loading the platform's root certificates (every file
/// of `/etc/ssl/certs`, about 3 ms on a warm page cache) counts as init rather than as the first
/// request. In a Lambda function that is the wrong way round: init is on the path of every cold
/// start, including those whose invocation never reaches AWS (a refused request, a route that
/// answers from memory). This wrapper keeps the SDK's client and its behaviour, and skips only
/// that eager step: the connector (and the certificates) are built once per process by the first
/// request that needs them, and cached by the SDK's client as usual.
#[derive(Debug, Clone)]
pub struct DeferredTlsClient {
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
}

impl DeferredTlsClient {
    /// The SDK's default HTTPS client (`aws_smithy_runtime`'s `default_https_client` for the
    /// current behaviour version), wrapped. Building it is cheap: it only stores the closure that
    /// makes connectors.
    pub fn new() -> Self {
        use aws_smithy_http_client::proxy::ProxyConfig;
        use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
        use aws_smithy_http_client::{Builder, ConnectorBuilder};
        let inner = Builder::new().build_with_connector_fn(|settings, components| {
            let mut connector =
                ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        });
        Self { inner }
    }
}

impl Default for DeferredTlsClient {
    fn default() -> Self {
        Self::new()
    }
}

impl aws_smithy_runtime_api::client::http::HttpClient for DeferredTlsClient {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    // The validation hooks are left at the trait's defaults (nothing): `validate_base_client_config`
    // is where the SDK's client would build a connector, and load the certificates, at
    // construction; it has no `validate_final_config`.

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

/// A DynamoDB client; built once and cloned cheaply. Like every client built here, it sends the
/// current invocation's X-Ray trace id ([`crate::trace`]).
pub fn dynamodb(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(TraceHeader)
            .build(),
    )
}

/// An SNS client.
pub fn sns(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(sdk)
            .interceptor(TraceHeader)
            .build(),
    )
}

/// A client for the WebSocket API's management endpoint. `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`
/// (set by the local cloud) wins; otherwise `COURIER_WS_ENDPOINT` from template.yaml is used.
pub fn management(sdk: &SdkConfig) -> Result<aws_sdk_apigatewaymanagement::Client, ConfigError> {
    let mut builder =
        aws_sdk_apigatewaymanagement::config::Builder::from(sdk).interceptor(TraceHeader);
    if std::env::var_os("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI").is_none() {
        builder = builder.endpoint_url(required("COURIER_WS_ENDPOINT")?);
    }
    Ok(aws_sdk_apigatewaymanagement::Client::from_conf(
        builder.build(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_environment_shortcuts_need_a_region_and_both_key_parts() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let lambda = EnvShortcuts::read(env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ]));
        assert_eq!(
            lambda,
            EnvShortcuts {
                region: Some("eu-west-1".into()),
                credentials: true
            }
        );
        // A laptop with a profile: the default chains decide.
        let laptop = EnvShortcuts::read(env(&[("AWS_PROFILE", "dev"), ("AWS_REGION", " ")]));
        assert_eq!(
            laptop,
            EnvShortcuts {
                region: None,
                credentials: false
            }
        );
        // Half a key is not a key: the chain goes on to the next provider.
        let half = EnvShortcuts::read(env(&[("AWS_ACCESS_KEY_ID", "AKIA")]));
        assert!(!half.credentials);
    }

    /// With the environment of a function (region and key set), the configuration carries that
    /// region and those credentials.
    #[tokio::test]
    async fn a_function_environment_gives_its_region_and_key() {
        let (Ok(region), Ok(key)) = (
            std::env::var("AWS_REGION"),
            std::env::var("AWS_ACCESS_KEY_ID"),
        ) else {
            eprintln!("AWS_REGION or AWS_ACCESS_KEY_ID is not set here (CI sets both): skipped");
            return;
        };
        let sdk = sdk_config().await;
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some(region.as_str()));
        use aws_sdk_dynamodb::config::ProvideCredentials;
        let creds = sdk
            .credentials_provider()
            .expect("a credentials provider")
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), key);
    }

    /// Clients built on the deferred client still send their requests: the connector is made
    /// by the first one.
    #[tokio::test]
    async fn the_deferred_client_connects_on_first_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed before a whole request");
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"TableNames":["t"]}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .http_client(DeferredTlsClient::new())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local", "local", None, None, "tests",
            ))
            .endpoint_url(format!("http://{addr}"))
            .load()
            .await;
        let tables = dynamodb(&sdk).list_tables().send().await.unwrap();
        assert_eq!(tables.table_names(), ["t"]);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST / HTTP/1.1"), "{request}");
        assert!(
            request.contains("DynamoDB_20120810.ListTables"),
            "{request}"
        );
    }
}
