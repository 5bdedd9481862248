//! Event glue between API Gateway and courier-core: turn an event into a use-case call and its
//! result into an HTTP response or a WebSocket reply frame. No business rules live here.
//!
//! - [`telemetry`]: JSON logs, set up once per cold start.
//! - [`http`]: HTTP API handlers (`lambda_http`): registerAccount, validateAccount.
//! - [`ws`]: WebSocket helpers: who is calling, reply frames.
//! - [`authorizer`]: the `$connect` REQUEST authorizer.
//! - [`routes`]: WebSocket route handlers: `$connect`, `$disconnect`, `$default`, `deleteAccount`.
//! - [`stores`]: the env-to-store factories each function binary (`functions/<name>`) wires its
//!   operations from.
//! - [`serve`]: how a binary serves the operation named by `COURIER_OPERATION`: WebSocket
//!   actions, HTTP routes and other events, with a handler its first invocation builds.
//! - [`runtime`]: how every function serves: the trace-id layer and [`runtime::Lazy`].
//!
//! Error policy: a handler never fails the invocation for a client's mistake; it answers with the
//! protocol's error. Internal failures are logged with their cause chain and answered `INTERNAL`.

pub mod authorizer;
pub mod http;
pub mod inline;
pub mod routes;
pub mod runtime;
pub mod serve;
pub mod stores;
pub mod stream;
pub mod telemetry;
pub mod ws;

use courier_core::{ApiError, ErrorCode};

/// Logs an error with its cause chain when it is the server's fault, and counts it (`Errors` by
/// `Code`).
pub(crate) fn log_error(operation: &str, e: &ApiError) {
    telemetry::count_by("Errors", "Code", e.code.as_str(), 1);
    if e.code == ErrorCode::Internal {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        tracing::error!(operation, error = %e, causes = ?causes, "request failed");
    } else {
        tracing::info!(operation, code = %e.code, "request refused");
    }
}
