//! How every Courier function serves its invocations: `lambda_runtime`'s runtime with the same
//! tracing layer `lambda_runtime::run` adds, plus [`TraceScope`], which runs each invocation with
//! its X-Ray trace id in scope for the SDK clients ([`courier_aws::trace`]). The runtime itself no
//! longer puts the trace id in the process environment (vendor/README.md).
//!
//! [`Lazy`] lets a function build its handler (its SDK clients and stores) in its first
//! invocation instead of at init.

use courier_aws::trace;
use futures_util::future::LocalBoxFuture;
use lambda_runtime::layers::TracingLayer;
use lambda_runtime::tower::Layer;
use lambda_runtime::{Error, LambdaInvocation, Runtime, Service};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::sync::OnceCell;
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

/// A handler that its first invocation builds, once per process, and every invocation then
/// uses: `Runtime::new(Lazy::new(|| async { Ok(service_fn(..)) }))`.
///
/// Init is on the path of every cold start, so a function spends there only what cannot wait:
/// the SDK configuration and each client cost about 0.1 ms (docs/benchmarks.md, cold starts),
/// and the first invocation needs them anyway. The time building took is logged (`handler
/// built`, `micros`). If building fails (a missing or malformed setting), that invocation and
/// every later one fail with the same error, logged once, as a failed init would have failed
/// them; nothing is built twice.
pub struct Lazy<S> {
    built: Rc<OnceCell<Result<RefCell<S>, String>>>,
    build: Rc<dyn Fn() -> LocalBoxFuture<'static, Result<S, Error>>>,
}

impl<S> Lazy<S> {
    /// A handler that `build` makes on the first invocation.
    pub fn new<B, F>(build: B) -> Self
    where
        B: Fn() -> F + 'static,
        F: Future<Output = Result<S, Error>> + 'static,
    {
        Self {
            built: Rc::default(),
            build: Rc::new(move || Box::pin(build())),
        }
    }
}

impl<S, R> Service<R> for Lazy<S>
where
    S: Service<R> + 'static,
    S::Error: Into<Error>,
    S::Future: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<S::Response, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The built handler is asked in `call`, once it exists.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let (built, build) = (self.built.clone(), self.build.clone());
        Box::pin(async move {
            let built = built
                .get_or_init(|| async move {
                    let started = std::time::Instant::now();
                    match build().await {
                        Ok(service) => {
                            let micros =
                                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                            tracing::info!(micros, "handler built");
                            Ok(RefCell::new(service))
                        }
                        Err(error) => {
                            tracing::error!(%error, "the function could not build its handler");
                            Err(error.to_string())
                        }
                    }
                })
                .await;
            let service = built
                .as_ref()
                .map_err(|error| Error::from(error.as_str()))?;
            std::future::poll_fn(|cx| service.borrow_mut().poll_ready(cx))
                .await
                .map_err(Into::into)?;
            // The borrow ends here: the future owns what it needs (tower's contract).
            let response = service.borrow_mut().call(request);
            response.await.map_err(Into::into)
        })
    }
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
    use std::cell::Cell;
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

    /// A lazy handler counting its builds; `fail` makes building fail.
    fn counted(
        fail: bool,
    ) -> (
        Lazy<impl Service<u32, Response = u32, Error = Error>>,
        Rc<Cell<u32>>,
    ) {
        let builds = Rc::new(Cell::new(0));
        let counter = builds.clone();
        let lazy = Lazy::new(move || {
            let counter = counter.clone();
            async move {
                counter.set(counter.get() + 1);
                if fail {
                    return Err(Error::from("environment variable USERS_TABLE must be set"));
                }
                let offset = 100 * counter.get();
                Ok(service_fn(move |n: u32| async move {
                    Ok::<_, Error>(n + offset)
                }))
            }
        });
        (lazy, builds)
    }

    #[tokio::test]
    async fn a_lazy_handler_is_built_by_the_first_invocation_and_only_once() {
        let (mut lazy, builds) = counted(false);
        assert_eq!(builds.get(), 0, "nothing is built before an invocation");
        for n in 1..=3 {
            assert_eq!(
                lazy.call(n).await.unwrap(),
                100 + n,
                "the first build serves"
            );
        }
        assert_eq!(builds.get(), 1);
    }

    #[tokio::test]
    async fn a_handler_that_cannot_be_built_fails_every_invocation_the_same_way() {
        let (mut lazy, builds) = counted(true);
        for _ in 0..3 {
            let error = lazy.call(7).await.unwrap_err();
            assert_eq!(
                error.to_string(),
                "environment variable USERS_TABLE must be set"
            );
        }
        assert_eq!(builds.get(), 1, "a failed build is not retried");
    }
}
