//! WebSocket route handlers. Each returns the route response; on two-way routes its body is the
//! reply frame.

use crate::log_error;
use crate::ws::{caller, respond};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use courier_core::clock::Clock;
use courier_core::ports::{ActivityStore, ConnectionGateway, ConnectionStore, LastSeenStore};
use courier_core::protocol::{
    AccountDeleted, DeleteAccountParams, DeviceRemoved, FrameError, RemoveDeviceParams,
    RequestFrame, reply_err, reply_ok,
};
use courier_core::usecases::{analytics, connections, delete_account, remove_device};
use courier_core::{ApiError, ConnectionId, ErrorCode};

/// `$connect`: record the connection, and mark its user active today for the analytics (a
/// failure to mark is logged, never refuses the connection). A non-2xx status makes API Gateway
/// refuse the handshake.
pub async fn connect(
    store: &dyn ConnectionStore,
    activity: &dyn ActivityStore,
    clock: &dyn Clock,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    if let Some(retry) = event
        .request_context
        .authorizer
        .fields
        .get(crate::authorizer::RETRY_AFTER_CONTEXT)
        .and_then(|v| v.as_str())
    {
        // The authorizer let a rate-limited address through to be refused here, with a 429.
        let e = ApiError::limit_exceeded(
            "too many failed connection attempts from this address",
            retry.parse().unwrap_or(1),
        );
        log_error("connect", &e);
        return limit_response(&e);
    }
    let result = async {
        let (who, conn) = caller(event)?;
        connections::connect(store, clock, conn, &who).await?;
        Ok::<_, ApiError>(who)
    }
    .await;
    match result {
        Ok(who) => {
            crate::telemetry::count("ConnectionsOpened", 1);
            match analytics::record_activity(activity, clock, &who.user_id).await {
                Ok(first) => {
                    if first.of_day {
                        crate::telemetry::count_by("ActiveUsers", "Period", "day", 1);
                    }
                    if first.of_month {
                        crate::telemetry::count_by("ActiveUsers", "Period", "month", 1);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "activity not recorded"),
            }
            respond(200, None)
        }
        Err(e) => {
            log_error("connect", &e);
            respond(i64::from(e.code.http_status()), None)
        }
    }
}

/// A refused handshake: 429 with `Retry-After` and the protocol's JSON error body.
fn limit_response(e: &ApiError) -> ApiGatewayProxyResponse {
    let mut r = respond(
        i64::from(e.code.http_status()),
        Some(courier_core::protocol::http_error_body(e)),
    );
    if let Some(secs) = e.retry_after_secs {
        r.headers.insert(
            "retry-after",
            secs.to_string().parse().expect("digits are a header value"),
        );
    }
    r.headers.insert(
        "content-type",
        "application/json".parse().expect("a header value"),
    );
    r
}

/// `$disconnect`: forget the connection and record the user's last seen. API Gateway ignores
/// the response.
pub async fn disconnect(
    store: &dyn ConnectionStore,
    last_seen: &dyn LastSeenStore,
    clock: &dyn Clock,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(id) = event.request_context.connection_id.as_deref() else {
        return respond(400, None);
    };
    match connections::disconnect(store, last_seen, clock, &ConnectionId::new(id)).await {
        Ok(()) => {
            crate::telemetry::count("ConnectionsClosed", 1);
            respond(200, None)
        }
        Err(e) => {
            log_error("disconnect", &e);
            respond(500, None)
        }
    }
}

/// Reads the frame of a route event; a frame that cannot be read gets its error reply frame.
fn frame(event: &ApiGatewayWebsocketProxyRequest) -> Result<RequestFrame, String> {
    RequestFrame::parse(event.body.as_deref().unwrap_or_default()).map_err(
        |FrameError { request_id, error }| {
            log_error("frame", &error);
            reply_err(request_id.as_deref(), &error)
        },
    )
}

/// `$default`: frames whose `action` names no route, or that are not JSON at all.
pub fn default_route(event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let frame = match frame(event) {
        Ok(f) => f,
        Err(reply) => return respond(200, Some(reply)),
    };
    let e = ApiError::new(
        ErrorCode::UnknownAction,
        format!("unknown action '{}'", truncate(&frame.action, 64)),
    );
    log_error("default", &e);
    respond(200, Some(reply_err(frame.request_id.as_deref(), &e)))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `deleteAccount`: the reply is posted through the management API before this connection is
/// closed, so the client sees it; the route response then carries no body.
pub async fn delete_account(
    deps: &delete_account::Deps<'_>,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let apply = |who, conn, _: DeleteAccountParams| async move {
        let current = delete_account::delete_account(deps, &who, &conn).await?;
        Ok((AccountDeleted { deleted: true }, Some(current)))
    };
    closing_action("deleteAccount", event, deps.gateway, apply).await
}

/// `removeDevice`: when a companion removes itself, the reply is posted through the management
/// API before its connection is closed, so the client sees it; otherwise an ordinary reply.
pub async fn remove_device(
    deps: &remove_device::Deps<'_>,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let apply = |who, conn, params: RemoveDeviceParams| async move {
        let removed = remove_device::remove_device(deps, &who, &conn, params).await?;
        Ok((DeviceRemoved { removed: true }, removed.close_after_reply))
    };
    closing_action("removeDevice", event, deps.gateway, apply).await
}

/// An action that may end with closing a connection: when `apply` hands one on, the reply is
/// posted through the management API before that connection is closed and the route response
/// carries no body; otherwise (and on failure) the reply is the route response.
async fn closing_action<P, R, F, Fut>(
    operation: &str,
    event: &ApiGatewayWebsocketProxyRequest,
    gateway: &dyn ConnectionGateway,
    apply: F,
) -> ApiGatewayProxyResponse
where
    P: serde::de::DeserializeOwned,
    R: serde::Serialize,
    F: FnOnce(courier_core::ports::DeviceCredential, ConnectionId, P) -> Fut,
    Fut: std::future::Future<Output = Result<(R, Option<ConnectionId>), ApiError>>,
{
    let (reply, closing) = reply(operation, event, apply).await;
    match closing {
        Some(conn) => {
            close_after_reply(gateway, &conn, &reply).await;
            respond(200, None)
        }
        None => respond(200, Some(reply)),
    }
}

async fn close_after_reply(gateway: &dyn ConnectionGateway, conn: &ConnectionId, reply: &str) {
    // Either may find the connection already gone; the account is deleted regardless.
    if let Err(e) = gateway.post(conn, reply).await {
        tracing::info!(error = %e, "could not post the final reply");
    }
    if let Err(e) = gateway.close(conn).await {
        tracing::info!(error = %e, "could not close the connection");
    }
}

/// A WebSocket action: read the frame, parse the action's parameters as `P`, identify the caller,
/// run `apply`, and answer with the reply frame (ok or error) on the two-way route.
pub async fn action<P, R, F, Fut>(
    operation: &str,
    event: &ApiGatewayWebsocketProxyRequest,
    apply: F,
) -> ApiGatewayProxyResponse
where
    P: serde::de::DeserializeOwned,
    R: serde::Serialize,
    F: FnOnce(courier_core::ports::DeviceCredential, P) -> Fut,
    Fut: std::future::Future<Output = Result<R, ApiError>>,
{
    let (frame, ()) = reply(operation, event, |who, _, p| async move {
        apply(who, p).await.map(|v| (v, ()))
    })
    .await;
    respond(200, Some(frame))
}

/// [`action`]'s work without the route response, `apply` being given the caller, its connection
/// and the parameters: the reply frame (ok or error), and what `apply` handed on for after the
/// reply (`T::default()` when it failed), for a handler that sends the reply itself and goes on
/// working.
pub async fn reply<P, R, T, F, Fut>(
    operation: &str,
    event: &ApiGatewayWebsocketProxyRequest,
    apply: F,
) -> (String, T)
where
    P: serde::de::DeserializeOwned,
    R: serde::Serialize,
    T: Default,
    F: FnOnce(courier_core::ports::DeviceCredential, ConnectionId, P) -> Fut,
    Fut: std::future::Future<Output = Result<(R, T), ApiError>>,
{
    let frame = match frame(event) {
        Ok(f) => f,
        Err(reply) => return (reply, T::default()),
    };
    let rid = frame.request_id.as_deref();
    let result = async {
        let params = frame.params::<P>()?;
        let (who, conn) = caller(event)?;
        apply(who, conn, params).await
    }
    .await;
    match result {
        Ok((value, then)) => (reply_ok(rid, &value), then),
        Err(e) => {
            log_error(operation, &e);
            (reply_err(rid, &e), T::default())
        }
    }
}
