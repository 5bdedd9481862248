//! The Lambda runtime API each worker's process talks to: `next`, `response`, `error` and
//! `init/error`.

use super::*;

pub(super) async fn serve_runtime_api(
    listener: tokio::net::TcpListener,
    shared: Arc<WorkerShared>,
) {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("runtime API server stopped: {e}");
    }
}

pub(super) async fn next(State(shared): State<Arc<WorkerShared>>) -> Response {
    let mut rx = shared.rx.lock().await;
    shared.ready.send_replace(true);
    let Some(p) = rx.recv().await else {
        return StatusCode::GONE.into_response();
    };
    drop(rx);
    shared
        .in_flight
        .lock()
        .unwrap()
        .insert(p.request_id.clone(), p.reply);
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set("lambda-runtime-aws-request-id", p.request_id.clone());
    set("lambda-runtime-deadline-ms", p.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        shared.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{};Parent={};Sampled=0",
            chrono::Utc::now().timestamp(),
            &uuid::Uuid::new_v4().simple().to_string()[..24],
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        ),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, p.event).into_response()
}

pub(super) fn complete(shared: &WorkerShared, id: &str, outcome: Outcome) -> Response {
    match shared.in_flight.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "OK"})),
            )
                .into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "errorMessage": format!("unknown request id {id}"),
                "errorType": "InvalidRequestID"
            })),
        )
            .into_response(),
    }
}

pub(super) async fn response(
    State(shared): State<Arc<WorkerShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    complete(&shared, &id, Outcome::Response(body))
}

pub(super) async fn error(
    State(shared): State<Arc<WorkerShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    complete(&shared, &id, Outcome::Error(body))
}

pub(super) async fn init_error(State(shared): State<Arc<WorkerShared>>, body: Bytes) -> Response {
    tracing::warn!(
        "function reported an init error: {}",
        String::from_utf8_lossy(&body)
    );
    *shared.init_error.lock().unwrap() = Some(body.clone());
    let pending: Vec<_> = shared.in_flight.lock().unwrap().drain().collect();
    for (_, tx) in pending {
        let _ = tx.send(Outcome::Error(body.clone()));
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "OK"})),
    )
        .into_response()
}
