//! WebSocket helpers: the caller's identity from the authorizer context, and replies.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use courier_core::ports::DeviceCredential;
use courier_core::{ApiError, ConnectionId, DeviceId, ErrorCode, UserId};

/// The connection and device a WebSocket event comes from. The authorizer put `userId` and
/// `deviceId` in the context at `$connect`; API Gateway repeats them on every event.
pub fn caller(
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<(DeviceCredential, ConnectionId), ApiError> {
    let ctx = &event.request_context;
    let field = |name: &str| {
        ctx.authorizer
            .fields
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let (Some(user), Some(device), Some(conn)) = (
        field("userId"),
        field("deviceId"),
        ctx.connection_id.as_deref(),
    ) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the connection carries no authorized device",
        ));
    };
    Ok((
        DeviceCredential {
            user_id: UserId::from_trusted(user),
            device_id: DeviceId::from_trusted(device),
        },
        ConnectionId::new(conn),
    ))
}

/// A route response: `body` goes back to the client on two-way routes; `None` sends nothing.
pub fn respond(status: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = body.map(Body::Text);
    r
}
