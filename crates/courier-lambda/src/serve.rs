//! How a function binary serves its operation: [`start`] names the operation
//! (`COURIER_OPERATION`), then one of [`ws`], [`action`], [`limited_action`], [`http`] or
//! [`event`] runs the Lambda runtime with the handler the binary's wiring builds from the
//! process's [`Stores`].
//!
//! The wiring runs in the first invocation, once per process ([`Lazy`]): loading the SDK
//! configuration and constructing each client take about 0.1 ms apiece, which init would
//! otherwise add to every cold start (docs/benchmarks.md, cold starts).
//!
//! With `COURIER_DESCRIBE=tables` a binary builds its handler at once, prints
//! `{"operation": .., "tables": [..]}` (the table settings its stores read) and exits without
//! serving: the wiring check compares that with template.yaml.

use crate::routes;
use crate::runtime::Lazy;
use crate::stores::{PerDevice, Stores};
use crate::telemetry::{metered, operation};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use courier_core::ApiError;
use courier_core::ports::DeviceCredential;
use courier_core::rate_limit::{Limits, Rule};
use lambda_runtime::{Error, LambdaEvent, Runtime, service_fn};
use serde_json::Value;
use std::future::Future;
use std::rc::Rc;

/// Sets up logging and returns the operation this function serves (`COURIER_OPERATION`).
pub fn start() -> Result<&'static str, Error> {
    crate::telemetry::init();
    courier_aws::config::required("COURIER_OPERATION")?;
    Ok(operation())
}

/// The error of a binary started for an operation it does not serve.
pub fn unknown(binary: &str, op: &str) -> Error {
    format!("the {binary} binary has no operation named {op:?}").into()
}

fn describing() -> bool {
    std::env::var("COURIER_DESCRIBE").is_ok_and(|v| v == "tables")
}

/// Builds the handler now, prints the table settings its stores read, and returns.
async fn describe<S>(build: impl Fn(&Stores) -> Result<S, Error>) -> Result<(), Error> {
    build(&Stores::load().await)?;
    println!(
        "{}",
        serde_json::json!({ "operation": operation(), "tables": crate::stores::tables_read() })
    );
    Ok(())
}

/// The handler `build` makes from the process's stores in the first invocation.
fn lazily<S>(build: impl Fn(&Stores) -> Result<S, Error> + 'static) -> Lazy<S> {
    let build = Rc::new(build);
    Lazy::new(move || {
        let build = build.clone();
        async move { build(&Stores::load().await) }
    })
}

/// Serves a WebSocket route with the handler `build` makes: it answers every invocation's
/// event with the route response, metered under the operation's name.
pub async fn ws<H, Fut>(build: impl Fn(&Stores) -> Result<H, Error> + 'static) -> Result<(), Error>
where
    H: Fn(ApiGatewayWebsocketProxyRequest) -> Fut + 'static,
    Fut: Future<Output = ApiGatewayProxyResponse> + 'static,
{
    if describing() {
        return describe(build).await;
    }
    let service = lazily(move |stores| {
        let handler = build(stores)?;
        Ok(service_fn(
            move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
                let answer = handler(event.payload);
                async move { Ok::<_, Error>(metered(operation(), answer).await) }
            },
        ))
    });
    crate::runtime::serve(Runtime::new(service)).await
}

/// Serves the WebSocket action `name` as `f(deps, caller, params)`, `deps` being what `deps`
/// builds: the request frame's params are parsed into `P`, and `f`'s reply `R` is the reply
/// frame's result.
pub async fn action<D, P, R, F>(
    name: &'static str,
    deps: impl Fn(&Stores) -> Result<&'static D, Error> + 'static,
    f: F,
) -> Result<(), Error>
where
    D: ?Sized + 'static,
    P: serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + 'static,
    F: AsyncFn(&'static D, &DeviceCredential, P) -> Result<R, ApiError> + Copy + 'static,
{
    serve_action(name, None, deps, f).await
}

/// Serves the WebSocket action `name` as [`action`] does, after taking one request from the
/// calling device's bucket for it under the configured rule `pick` (`LIMIT_EXCEEDED` with
/// `retryAfter` past it; nothing is done then).
pub async fn limited_action<D, P, R, F>(
    name: &'static str,
    pick: fn(&Limits) -> Rule,
    deps: impl Fn(&Stores) -> Result<&'static D, Error> + 'static,
    f: F,
) -> Result<(), Error>
where
    D: ?Sized + 'static,
    P: serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + 'static,
    F: AsyncFn(&'static D, &DeviceCredential, P) -> Result<R, ApiError> + Copy + 'static,
{
    serve_action(name, Some(pick), deps, f).await
}

async fn serve_action<D, P, R, F>(
    name: &'static str,
    pick: Option<fn(&Limits) -> Rule>,
    deps: impl Fn(&Stores) -> Result<&'static D, Error> + 'static,
    f: F,
) -> Result<(), Error>
where
    D: ?Sized + 'static,
    P: serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + 'static,
    F: AsyncFn(&'static D, &DeviceCredential, P) -> Result<R, ApiError> + Copy + 'static,
{
    ws(move |stores| {
        let deps = deps(stores)?;
        let limit: Option<&'static PerDevice> = pick.map(|p| stores.per_device(p)).transpose()?;
        Ok(move |event: ApiGatewayWebsocketProxyRequest| async move {
            routes::action(name, &event, |who, p| async move {
                if let Some(limit) = limit {
                    limit.take(&who).await?;
                }
                f(deps, &who, p).await
            })
            .await
        })
    })
    .await
}

/// Serves an HTTP API route as `handler(deps, request)`, `deps` being what `deps` builds.
pub async fn http<D, F, Fut>(
    deps: impl Fn(&Stores) -> Result<&'static D, Error> + 'static,
    handler: F,
) -> Result<(), Error>
where
    D: ?Sized + Sync + 'static,
    // lambda_http serves futures that are `Send`.
    F: Fn(&'static D, lambda_http::Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    if describing() {
        return describe(deps).await;
    }
    let service = lazily(move |stores| {
        let deps = deps(stores)?;
        Ok(lambda_http::Adapter::from(lambda_http::service_fn(
            move |req| async move { Ok::<_, Error>(metered(operation(), handler(deps, req)).await) },
        )))
    });
    crate::runtime::serve(Runtime::new(service)).await
}

/// Serves another event source (the `$connect` authorizer, a table's stream, a schedule) with
/// the handler `build` makes: it answers each event `E` with a JSON value, metered under `name`.
pub async fn event<E, H, Fut, Err>(
    name: &'static str,
    build: impl Fn(&Stores) -> Result<H, Error> + 'static,
) -> Result<(), Error>
where
    E: serde::de::DeserializeOwned + 'static,
    H: Fn(E) -> Fut + 'static,
    Fut: Future<Output = Result<Value, Err>> + 'static,
    Err: Into<Error> + 'static,
{
    if describing() {
        return describe(build).await;
    }
    let service = lazily(move |stores| {
        let handler = build(stores)?;
        Ok(service_fn(move |event: LambdaEvent<E>| {
            let answer = handler(event.payload);
            async move { metered(name, answer).await.map_err(Into::into) }
        }))
    });
    crate::runtime::serve(Runtime::new(service)).await
}
