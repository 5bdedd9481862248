//! HTTP API handlers (payload format 2.0 through `lambda_http`).

use crate::{log_error, telemetry};
use courier_core::ApiError;
use courier_core::protocol::DeviceInfo;
use courier_core::protocol::{
    MAX_HTTP_BODY_BYTES, RegisterAccountRequest, ValidateAccountRequest, http_error_body,
    parse_json,
};
use courier_core::usecases::{connect_ticket, link_device, register_account, validate_account};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

fn json<T: Serialize>(status: u16, body: &T) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(
            serde_json::to_string(body).expect("serialisable"),
        ))
        .expect("valid response")
}

/// The HTTP error response for `e`: `{"error": {code, message}}` with its status, and
/// `Retry-After` for rate limits.
pub fn error_response(operation: &str, e: &ApiError) -> Response<Body> {
    log_error(operation, e);
    let mut builder = Response::builder()
        .status(e.code.http_status())
        .header("content-type", "application/json");
    if let Some(secs) = e.retry_after_secs {
        builder = builder.header("retry-after", secs.to_string());
    }
    builder
        .body(Body::Text(http_error_body(e)))
        .expect("valid response")
}

/// The client's address as API Gateway saw it (`requestContext.http.sourceIp`).
pub fn source_ip(req: &Request) -> Option<String> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    #[allow(unreachable_patterns)] // other variants exist only with other lambda_http features
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        _ => None,
    }
}

/// `POST /v1/accounts`: 202 once the code is on its way.
pub async fn register_account(deps: &register_account::Deps<'_>, req: Request) -> Response<Body> {
    let result = async {
        let body: RegisterAccountRequest = parse_json(req.body().as_ref(), MAX_HTTP_BODY_BYTES)?;
        let reply =
            register_account::register_account(deps, &body.phone, source_ip(&req).as_deref())
                .await?;
        let sms =
            courier_core::PhoneNumber::parse(&body.phone).is_ok_and(|p| deps.sends_sms_to(&p));
        Ok::<_, courier_core::ApiError>((reply, sms))
    }
    .await;
    match result {
        Ok((reply, sms)) => {
            // One registration started, and (unless a test number) one SMS sent.
            telemetry::count("RegistrationsStarted", 1);
            if sms {
                telemetry::count("SmsSent", 1);
            }
            json(202, &reply)
        }
        Err(e) => error_response("registerAccount", &e),
    }
}

/// `POST /v1/connect-tickets` (the key in `Authorization: Bearer`): 201 with
/// `{ticket, expiresInSeconds}`.
pub async fn create_connect_ticket(
    deps: &connect_ticket::Deps<'_>,
    req: Request,
) -> Response<Body> {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    match connect_ticket::create(deps, authorization, source_ip(&req).as_deref()).await {
        Ok(reply) => json(201, &reply),
        Err(e) => error_response("createConnectTicket", &e),
    }
}

/// `POST /v1/accounts/verify`: 200 with the device's credentials.
pub async fn validate_account(deps: &validate_account::Deps<'_>, req: Request) -> Response<Body> {
    let result = async {
        let body: ValidateAccountRequest = parse_json(req.body().as_ref(), MAX_HTTP_BODY_BYTES)?;
        validate_account::validate_account(deps, &body).await
    }
    .await;
    match result {
        Ok(creds) => {
            telemetry::count("RegistrationsCompleted", 1);
            json(200, &creds)
        }
        Err(e) => error_response("validateAccount", &e),
    }
}

/// `POST /v1/devices/link-requests`: 201 with `{linkId, code, expiresInSeconds}`.
pub async fn create_link_request(deps: &link_device::Deps<'_>, req: Request) -> Response<Body> {
    let result = async {
        let body: DeviceInfo = parse_json(req.body().as_ref(), MAX_HTTP_BODY_BYTES)?;
        link_device::request_link(deps, body, source_ip(&req).as_deref()).await
    }
    .await;
    match result {
        Ok(reply) => json(201, &reply),
        Err(e) => error_response("createLinkRequest", &e),
    }
}

/// `GET /v1/devices/link-requests/{linkId}`: 202 while pending, then 200 with the credentials once.
pub async fn get_link_request(deps: &link_device::Deps<'_>, req: Request) -> Response<Body> {
    use lambda_http::RequestExt;
    let link_id = req
        .path_parameters_ref()
        .and_then(|p| p.first("linkId"))
        .unwrap_or_default()
        .to_owned();
    match link_device::poll(deps, &link_id).await {
        Ok(link_device::LinkPoll::Pending) => {
            json(202, &serde_json::json!({ "status": "pending" }))
        }
        Ok(link_device::LinkPoll::Linked(creds)) => json(200, &creds),
        Err(e) => error_response("getLinkRequest", &e),
    }
}
