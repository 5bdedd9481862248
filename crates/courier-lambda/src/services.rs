//! One entry point per function binary. Each builds its SDK clients once per cold start, picks
//! the handler named by `COURIER_OPERATION`, and serves invocations until the sandbox is recycled.
//! State is leaked to `'static` on purpose: it lives exactly as long as the process.

use crate::{authorizer, http, routes};
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
use courier_aws::config::{self, required};
use courier_aws::dynamo::{DynamoAccounts, DynamoConnections, DynamoRegistrations};
use courier_aws::gateway::ManagementApi;
use courier_aws::sms::SnsSms;
use courier_core::clock::SystemClock;
use courier_core::usecases::{delete_account, register_account, validate_account};
use lambda_runtime::{Error, LambdaEvent, service_fn};

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn unknown(binary: &str, op: &str) -> Error {
    format!("the {binary} binary has no operation named {op:?}").into()
}

fn accounts(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoAccounts, Error> {
    Ok(DynamoAccounts::new(
        dynamo.clone(),
        required("USERS_TABLE")?,
        required("API_KEYS_TABLE")?,
    ))
}

fn connection_store(dynamo: &aws_sdk_dynamodb::Client) -> Result<DynamoConnections, Error> {
    Ok(DynamoConnections::new(
        dynamo.clone(),
        required("CONNECTIONS_TABLE")?,
    ))
}

/// The `registration` binary: `registerAccount`, `validateAccount` (HTTP API).
pub async fn registration() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    let sdk = config::sdk_config().await;
    let dynamo = config::dynamodb(&sdk);
    let registrations = leak(DynamoRegistrations::new(
        dynamo.clone(),
        required("REGISTRATIONS_TABLE")?,
    ));
    match op.as_str() {
        "registerAccount" => {
            let sms = leak(SnsSms::new(
                config::sns(&sdk),
                std::env::var("SMS_SENDER_ID").ok(),
            ));
            let code_lifetime_secs = match std::env::var("CODE_TTL_SECS") {
                Ok(v) if !v.is_empty() => v
                    .parse()
                    .map_err(|_| format!("CODE_TTL_SECS must be a number of seconds, got {v:?}"))?,
                _ => register_account::CODE_LIFETIME_SECS,
            };
            let deps = leak(register_account::Deps {
                registrations,
                sms,
                clock: &SystemClock,
                code_lifetime_secs,
            });
            lambda_http::run(lambda_http::service_fn(move |req| async move {
                Ok::<_, Error>(http::register_account(deps, req).await)
            }))
            .await
        }
        "validateAccount" => {
            let deps = leak(validate_account::Deps {
                registrations,
                accounts: leak(accounts(&dynamo)?),
                connections: leak(connection_store(&dynamo)?),
                gateway: leak(ManagementApi::new(config::management(&sdk)?)),
                clock: &SystemClock,
            });
            lambda_http::run(lambda_http::service_fn(move |req| async move {
                Ok::<_, Error>(http::validate_account(deps, req).await)
            }))
            .await
        }
        other => Err(unknown("registration", other)),
    }
}

/// The `authorizer` binary: the `$connect` REQUEST authorizer.
pub async fn authorizer() -> Result<(), Error> {
    crate::telemetry::init();
    let sdk = config::sdk_config().await;
    let credentials = leak(DynamoAccounts::new(
        config::dynamodb(&sdk),
        "",
        required("API_KEYS_TABLE")?,
    ));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            authorizer::handle(credentials, &event.payload).await
        },
    ))
    .await
}

/// The `connections` binary: `$connect`, `$disconnect`, `$default`.
pub async fn connections() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    if op == "default" {
        return lambda_runtime::run(service_fn(
            |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                Ok::<_, Error>(routes::default_route(&event.payload))
            },
        ))
        .await;
    }
    let sdk = config::sdk_config().await;
    let store = leak(connection_store(&config::dynamodb(&sdk))?);
    match op.as_str() {
        "connect" => {
            lambda_runtime::run(service_fn(
                move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(routes::connect(store, &SystemClock, &event.payload).await)
                },
            ))
            .await
        }
        "disconnect" => {
            lambda_runtime::run(service_fn(
                move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(routes::disconnect(store, &event.payload).await)
                },
            ))
            .await
        }
        other => Err(unknown("connections", other)),
    }
}

/// The `accounts` binary: `deleteAccount`.
pub async fn accounts_service() -> Result<(), Error> {
    crate::telemetry::init();
    let op = required("COURIER_OPERATION")?;
    let sdk = config::sdk_config().await;
    let dynamo = config::dynamodb(&sdk);
    match op.as_str() {
        "deleteAccount" => {
            let deps = leak(delete_account::Deps {
                accounts: leak(accounts(&dynamo)?),
                connections: leak(connection_store(&dynamo)?),
                gateway: leak(ManagementApi::new(config::management(&sdk)?)),
            });
            lambda_runtime::run(service_fn(
                move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                    Ok::<_, Error>(routes::delete_account(deps, &event.payload).await)
                },
            ))
            .await
        }
        other => Err(unknown("accounts", other)),
    }
}
