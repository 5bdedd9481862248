//! X-Ray trace propagation to AWS calls, without the process environment.
//!
//! Lambda hands each invocation an X-Ray trace id; a runtime is expected to put it in the
//! environment (`_X_AMZN_TRACE_ID`), where the AWS SDK's recursion-detection interceptor reads it
//! and sends it on as the `X-Amzn-Trace-Id` header, so that the DynamoDB, SNS and management API
//! calls join the invocation's trace. Setting an environment variable per invocation leaks with
//! glibc (every replaced value stays allocated: vendor/README.md), so Courier's runtime wrapper
//! runs each invocation inside [`scope`] instead, and every SDK client Courier builds
//! carries [`TraceHeader`], which adds the header from there.
//!
//! Calls made from a task spawned inside an invocation are outside its scope and go without the
//! header.

use aws_sdk_dynamodb::config::ConfigBag;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use std::future::Future;
use tokio::task::futures::TaskLocalFuture;

/// The header the SDK's own interceptor sends, and that this one sends in its place.
pub const HEADER: &str = "x-amzn-trace-id";

tokio::task_local! {
    static TRACE_ID: Option<String>;
}

/// `f` (one invocation), run with `trace_id` as its X-Ray trace id.
pub fn scope<F: Future>(trace_id: Option<String>, f: F) -> TaskLocalFuture<Option<String>, F> {
    TRACE_ID.scope(trace_id, f)
}

/// The trace id of the invocation this task is running, if any.
pub fn current() -> Option<String> {
    TRACE_ID.try_with(Clone::clone).ok().flatten()
}

/// The target of the per-call log lines: `RUST_LOG=courier_aws::calls=debug` makes every SDK call
/// a function makes print one line, `trace` (the invocation's X-Ray trace id), `service`,
/// `operation`, `start_us` and `end_us` (microseconds since the epoch), from which the sequence of calls of one invocation can be read (which ran
/// one after another, which side by side: docs/benchmarks.md, "critical path"). Off by default.
pub const CALLS_TARGET: &str = "courier_aws::calls";

#[derive(Debug, Clone, Copy)]
struct CallStart(std::time::SystemTime);

impl Storable for CallStart {
    type Storer = StoreReplace<Self>;
}

fn micros(t: std::time::SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// Adds `X-Amzn-Trace-Id` with the current invocation's trace id to each request that does not
/// carry one already, and logs each call's span at [`CALLS_TARGET`] when that is enabled. A trace id that is not a valid header value (the runtime API gave it as a
/// header, so it always is) is left out rather than sent mangled.
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceHeader;

impl Intercept for TraceHeader {
    fn name(&self) -> &'static str {
        "CourierTraceHeader"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if tracing::enabled!(target: CALLS_TARGET, tracing::Level::DEBUG) {
            cfg.interceptor_state()
                .store_put(CallStart(std::time::SystemTime::now()));
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(CallStart(start)) = cfg.load::<CallStart>().copied() {
            let (service, operation) = cfg
                .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
                .map_or(("?", "?"), |m| (m.service(), m.name()));
            tracing::debug!(
                target: CALLS_TARGET,
                trace = current().as_deref().unwrap_or(""),
                service,
                operation,
                start_us = micros(start) as u64,
                end_us = micros(std::time::SystemTime::now()) as u64,
                "aws call"
            );
        }
        Ok(())
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        if request.headers().contains_key(HEADER) {
            return Ok(());
        }
        if let Some(id) = current().filter(|id| id.bytes().all(|b| b.is_ascii_graphic())) {
            let _ = request.headers_mut().try_insert(HEADER, id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trace_id_is_there_inside_its_invocation_only() {
        assert_eq!(current(), None);
        let id = "Root=1-6b0c444c-a4f3f7fdb9894749a440b195;Parent=efe56c4b57e346f6;Sampled=0";
        let seen = scope(Some(id.into()), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(seen.as_deref(), Some(id));
        assert_eq!(scope(None, async { current() }).await, None);
        assert_eq!(current(), None);
    }
}
