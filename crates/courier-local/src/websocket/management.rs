//! The `@connections` management API: post to, read and delete a connection.

use super::*;

pub(super) fn gone(id: &str) -> Response {
    management_error(
        StatusCode::GONE,
        "GoneException",
        &format!("Connection {id} is gone"),
    )
}

pub(super) async fn manage_root(
    State(gw): State<Arc<WsGateway>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    manage(gw, id, req).await
}

pub(super) async fn manage_stage(
    State(gw): State<Arc<WsGateway>>,
    Path((stage, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    // The management endpoint is `https://{api}.execute-api.{region}.amazonaws.com/{stage}`: a
    // stage the API does not have is refused.
    if stage != gw.api.stage {
        return management_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden");
    }
    manage(gw, id, req).await
}

pub(super) async fn manage(gw: Arc<WsGateway>, id: String, req: Request) -> Response {
    let method = req.method().clone();
    let op = match method.as_str() {
        "POST" => ManagementOp::Post,
        "GET" => ManagementOp::Get,
        "DELETE" => ManagementOp::Delete,
        _ => return message_body(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    };
    if let Some(fault) = gw.faults.management_fault(op, &id) {
        return fault;
    }
    let body: Bytes =
        match axum::body::to_bytes(req.into_body(), gw.limits.max_message_bytes + 1).await {
            Ok(b) if b.len() <= gw.limits.max_message_bytes => b,
            _ => {
                return management_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLargeException",
                    "Message too long",
                );
            }
        };
    let Some(conn) = gw.get(&id) else {
        return gone(&id);
    };
    match op {
        ManagementOp::Post => {
            let out = match String::from_utf8(body.to_vec()) {
                Ok(text) => Outgoing::Text(text),
                Err(e) => Outgoing::Binary(e.into_bytes()),
            };
            if conn.out.send(out).is_err() {
                return gone(&id);
            }
            gw.faults.post_delivered();
            StatusCode::OK.into_response()
        }
        ManagementOp::Get => {
            // Field names as the service model spells them on the wire (`locationName`:
            // connectedAt, identity.sourceIp, ...), timestamps ISO 8601.
            let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let last = *conn.last_active.lock().unwrap();
            axum::Json(json!({
                "connectedAt": fmt(conn.connected_at),
                "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                "lastActiveAt": fmt(last),
            }))
            .into_response()
        }
        ManagementOp::Delete => {
            gw.connections.lock().unwrap().remove(&id);
            let _ = conn.out.send(Outgoing::Close(1000, "Connection deleted"));
            StatusCode::NO_CONTENT.into_response()
        }
    }
}
