//! How every Courier function serves its invocations: `lambda_runtime`'s runtime with the same
//! tracing layer `lambda_runtime::run` adds, plus [`TraceScope`], which runs each invocation with
//! its X-Ray trace id in scope for the SDK clients ([`courier_aws::trace`]). The runtime itself no
//! longer puts the trace id in the process environment (vendor/README.md).

use courier_aws::trace;
use lambda_runtime::layers::TracingLayer;
use lambda_runtime::tower::Layer;
use lambda_runtime::{Error, LambdaInvocation, Runtime, Service};
use std::task::{Context, Poll};
use tokio::task::futures::TaskLocalFuture;

/// Serves invocations until the runtime API goes away, as `lambda_runtime::run` does:
/// `serve(Runtime::new(service_fn(handler)))`, or with `lambda_http::Adapter::from(..)` for the
/// HTTP API's functions.
pub async fn serve<S>(runtime: Runtime<S>) -> Result<(), Error>
where
    S: Service<LambdaInvocation, Response = (), Error = Error>,
{
    runtime
        .layer(TracingLayer::new())
        .layer(TraceScopeLayer)
        .run()
        .await
}

/// Wraps a runtime's service in [`TraceScope`].
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceScopeLayer;

impl<S> Layer<S> for TraceScopeLayer {
    type Service = TraceScope<S>;

    fn layer(&self, inner: S) -> TraceScope<S> {
        TraceScope(inner)
    }
}

/// Runs each invocation with its `Context::xray_trace_id` as [`trace::current`].
#[derive(Debug, Clone)]
pub struct TraceScope<S>(S);

impl<S> Service<LambdaInvocation> for TraceScope<S>
where
    S: Service<LambdaInvocation, Response = (), Error = Error>,
{
    type Response = ();
    type Error = Error;
    type Future = TaskLocalFuture<Option<String>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let trace_id = invocation.context.xray_trace_id.clone();
        trace::scope(trace_id, self.0.call(invocation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::service_fn;
    use std::sync::{Arc, Mutex};

    fn invocation(trace_id: Option<&str>) -> LambdaInvocation {
        let mut context = lambda_runtime::Context::default();
        context.xray_trace_id = trace_id.map(str::to_owned);
        LambdaInvocation {
            parts: lambda_http::http::Response::new(()).into_parts().0,
            body: Default::default(),
            context,
        }
    }

    #[tokio::test]
    async fn each_invocation_runs_with_its_own_trace_id() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let mut service = TraceScopeLayer.layer(service_fn(move |_: LambdaInvocation| {
            let record = record.clone();
            async move {
                tokio::task::yield_now().await;
                record.lock().unwrap().push(trace::current());
                Ok::<(), Error>(())
            }
        }));
        let first = "Root=1-6b0c444c-a4f3f7fdb9894749a440b195;Parent=efe56c4b57e346f6;Sampled=1";
        for id in [Some(first), None, Some("Root=1-2;Parent=3;Sampled=0")] {
            service.call(invocation(id)).await.unwrap();
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                Some(first.to_owned()),
                None,
                Some("Root=1-2;Parent=3;Sampled=0".to_owned())
            ]
        );
        assert_eq!(trace::current(), None, "nothing leaks out of an invocation");
    }
}
