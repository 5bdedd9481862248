//! The HTTP API: API Gateway HTTP API (payload format 2.0) in front of the template's functions,
//! plus the local-only endpoints `/_local/health`, `/_local/outbox/{sms,push,reset}`, the fault
//! switch `/_local/faults` (see [`crate::faults::Faults`]), `POST /_local/restart/dynamodb`
//! (see [`crate::emulators::DynamoDbLocal::restart`]) and `/_local/metrics` (Prometheus
//! text of the functions' EMF lines, see [`crate::metrics`]; `DELETE` resets it), the page
//! `/_local/dashboard`, `POST /_local/invoke/{LogicalId}`, which invokes a function directly
//! (as `aws lambda invoke` would) with the body as its event, or with an EventBridge scheduled
//! event when the body is empty: how scheduled functions (the group census) run locally; and the
//! web client ([`crate::web`]) for `GET` paths no route takes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Map, Value as J, json};

use crate::faults::Faults;
use crate::outbox::Outbox;
use crate::runtime::Functions;
use crate::template::HttpRoute;

/// API Gateway's payload limit for HTTP APIs.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// What the HTTP API needs to serve requests.
pub struct HttpApi {
    /// Routes from the template.
    pub routes: Vec<HttpRoute>,
    /// The function pools.
    pub functions: Functions,
    /// The SMS/push outbox.
    pub outbox: Arc<Outbox>,
    /// API id used in events.
    pub api_id: String,
    /// The fault switch shared with the management API.
    pub faults: Faults,
    /// The DynamoDB Local the cloud started (`POST /_local/restart/dynamodb`).
    pub dynamodb: Option<Arc<crate::emulators::DynamoDbLocal>>,
    /// The functions' metrics, served at `/_local/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Courier Web, served for `GET` paths no route of the template takes.
    pub web: Option<crate::web::WebClient>,
    /// The stage's throttling buckets, one per route key.
    pub throttles: crate::throttle::Throttles,
}

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(api: Arc<HttpApi>) -> Router {
    Router::new()
        .route(
            "/_local/health",
            get(|| async { axum::Json(json!({"ok": true})) }),
        )
        .route("/_local/outbox/sms", get(outbox_sms))
        .route("/_local/outbox/push", get(outbox_push))
        .route("/_local/outbox/reset", post(outbox_reset))
        .route("/_local/faults", get(faults_get).delete(faults_clear))
        .route(
            "/_local/faults/kill-after-posts",
            post(faults_kill_after_posts),
        )
        .route("/_local/faults/management", post(faults_management))
        .route("/_local/faults/kill-random", post(faults_kill_random))
        .route("/_local/faults/sns", post(faults_sns))
        .route("/_local/faults/streams", post(faults_streams))
        .route("/_local/faults/drop-sockets", post(faults_drop_sockets))
        .route("/_local/faults/gsi-lag", post(faults_gsi_lag))
        .route(
            "/_local/faults/transaction-conflicts",
            post(faults_transaction_conflicts),
        )
        .route("/_local/restart/dynamodb", post(restart_dynamodb))
        .route("/_local/metrics", get(metrics_get).delete(metrics_reset))
        .route("/_local/dashboard", get(dashboard_get))
        .route("/_local/invoke/{function}", post(invoke_function))
        .fallback(gateway)
        .with_state(api)
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({"message": text}))).into_response()
}

fn outbox_result(r: anyhow::Result<Vec<J>>) -> Response {
    match r {
        Ok(v) => axum::Json(J::Array(v)).into_response(),
        Err(e) => message(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    }
}

async fn outbox_sms(State(api): State<Arc<HttpApi>>) -> Response {
    outbox_result(api.outbox.sms().await)
}

async fn outbox_push(State(api): State<Arc<HttpApi>>) -> Response {
    outbox_result(api.outbox.push().await)
}

async fn outbox_reset(State(api): State<Arc<HttpApi>>) -> Response {
    match api.outbox.reset().await {
        Ok(()) => axum::Json(json!({"ok": true})).into_response(),
        Err(e) => message(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    }
}

async fn faults_get(State(api): State<Arc<HttpApi>>) -> Response {
    axum::Json(api.faults.describe()).into_response()
}

async fn faults_clear(State(api): State<Arc<HttpApi>>) -> Response {
    api.faults.clear();
    tracing::info!("fault injection: cleared");
    axum::Json(api.faults.describe()).into_response()
}

async fn metrics_get(State(api): State<Arc<HttpApi>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.metrics.prometheus(),
    )
        .into_response()
}

async fn dashboard_get(State(api): State<Arc<HttpApi>>) -> Response {
    axum::response::Html(crate::dashboard::render(&api.metrics)).into_response()
}

/// An EventBridge "Scheduled Event", as a `Type: Schedule` event delivers it.
fn scheduled_event(function: &str) -> J {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        "resources": [format!("arn:aws:events:us-east-1:000000000000:rule/{function}")],
        "detail": {}
    })
}

async fn invoke_function(
    State(api): State<Arc<HttpApi>>,
    axum::extract::Path(function): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if api.functions.get(&function).is_none() {
        return message(
            StatusCode::NOT_FOUND,
            &format!("no function {function} in the template"),
        );
    }
    let event = if body.iter().all(u8::is_ascii_whitespace) {
        scheduled_event(&function)
    } else {
        match json_body(&body) {
            Ok(v) => v,
            Err(refused) => return refused.into_response(),
        }
    };
    match api.functions.invoke(&function, &event).await {
        Ok(out) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            out,
        )
            .into_response(),
        Err(e) => message(StatusCode::BAD_GATEWAY, &format!("{function}: {e}")),
    }
}

async fn metrics_reset(State(api): State<Arc<HttpApi>>) -> Response {
    api.metrics.reset();
    axum::Json(json!({"ok": true})).into_response()
}

/// A request body as JSON, or the 400 that says it is not.
fn json_body(body: &[u8]) -> Result<J, Refusal> {
    serde_json::from_slice(body).map_err(|e| bad_request(&format!("body is not JSON: {e}")))
}

/// A fault switch's answer: the switches as they now stand, or the 400 that says why the
/// request was refused.
fn switched(api: &HttpApi, r: Result<(), String>) -> Result<Response, Refusal> {
    match r {
        Ok(()) => Ok(axum::Json(api.faults.describe()).into_response()),
        Err(e) => Err(bad_request(&e)),
    }
}

/// The DynamoDB switches act only when the functions reach DynamoDB through them.
fn dynamodb_faults_enabled(api: &HttpApi) -> Result<(), Refusal> {
    if api.faults.dynamodb().enabled() {
        return Ok(());
    }
    Err(Refusal(
        StatusCode::CONFLICT,
        "the functions do not reach DynamoDB through the fault switch: start the local cloud \
         with --dynamodb-faults"
            .into(),
    ))
}

/// A refused request: its status, and the message its body carries (`{"message": ...}`).
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        message(self.0, &self.1)
    }
}

fn bad_request(text: &str) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, text.to_owned())
}

async fn faults_kill_after_posts(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let v = json_body(&body)?;
    let (Some(function), Some(posts)) = (
        v.get("function").and_then(J::as_str),
        v.get("posts").and_then(J::as_u64),
    ) else {
        return Err(bad_request(
            r#"expected {"function": "<LogicalId>", "posts": N}"#,
        ));
    };
    api.faults
        .arm_kill_after_posts(function, posts)
        .map_err(|e| bad_request(&e))?;
    tracing::info!("fault injection: kill {function} after {posts} posts");
    Ok(axum::Json(json!({"armed": true})).into_response())
}

async fn faults_management(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let v = json_body(&body)?;
    let expected = r#"expected {"failureRate": 0.25, "error": "InternalServerError" (default) or "LimitExceededException"}"#;
    let Some(rate) = v.get("failureRate").and_then(J::as_f64) else {
        return Err(bad_request(expected));
    };
    let error = match v.get("error") {
        None | Some(J::Null) => Some(crate::faults::ManagementFault::InternalServerError),
        Some(J::String(name)) => crate::faults::ManagementFault::from_name(name),
        Some(_) => None,
    };
    let Some(error) = error else {
        return Err(bad_request(expected));
    };
    let answer = switched(&api, api.faults.set_management_faults(rate, error))?;
    tracing::info!("fault injection: management API failure rate {rate} ({error:?})");
    Ok(answer)
}

async fn faults_kill_random(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let v = json_body(&body)?;
    let (Some(function), Some(rate)) = (
        v.get("function").and_then(J::as_str),
        v.get("rate").and_then(J::as_f64),
    ) else {
        return Err(bad_request(
            r#"expected {"function": "<LogicalId>" or "*", "rate": 0.05}"#,
        ));
    };
    let seed = match v.get("seed") {
        None | Some(J::Null) => None,
        Some(s) => Some(
            s.as_u64()
                .ok_or_else(|| bad_request("seed must be a whole number >= 0"))?,
        ),
    };
    let answer = switched(&api, api.faults.set_random_kills(function, rate, seed))?;
    tracing::info!("fault injection: kill {function} at random, rate {rate}");
    Ok(answer)
}

async fn faults_sns(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let v = json_body(&body)?;
    let Some(rate) = v.get("failureRate").and_then(J::as_f64) else {
        return Err(bad_request(r#"expected {"failureRate": 0.3}"#));
    };
    let answer = switched(&api, api.faults.set_sns_failure_rate(rate))?;
    tracing::info!("fault injection: SNS failure rate {rate}");
    Ok(answer)
}

async fn faults_streams(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let v = json_body(&body)?;
    let expected =
        r#"expected {"table": "<TableName>" (optional), "expiredIterators": N, "failures": N}"#;
    if !v.is_object() {
        return Err(bad_request(expected));
    }
    let count = |k: &str| match v.get(k) {
        None => Some(0),
        Some(n) => n.as_u64(),
    };
    let (Some(table), Some(expired), Some(failures)) = (
        optional_table(&v),
        count("expiredIterators"),
        count("failures"),
    ) else {
        return Err(bad_request(expected));
    };
    api.faults.arm_stream_faults(table, expired, failures);
    tracing::info!(
        "fault injection: GetRecords of {} fails: {expired} expired iterators, then {failures} 500s",
        table.unwrap_or("every table")
    );
    Ok(axum::Json(api.faults.describe()).into_response())
}

/// The body's `"table"`: `Some(None)` for none (every table), `None` when it is not a string.
fn optional_table(v: &J) -> Option<Option<&str>> {
    match v.get("table") {
        None | Some(J::Null) => Some(None),
        Some(J::String(t)) => Some(Some(t.as_str())),
        Some(_) => None,
    }
}

async fn faults_gsi_lag(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    dynamodb_faults_enabled(&api)?;
    let v = json_body(&body)?;
    let Some(lag) = v.get("lagMs").and_then(J::as_u64) else {
        return Err(bad_request(r#"expected {"lagMs": 500} (0 disarms)"#));
    };
    match api.faults.dynamodb().set_gsi_lag(lag).await {
        Ok(()) => Ok(axum::Json(api.faults.describe()).into_response()),
        Err(e) => Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

async fn faults_transaction_conflicts(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    dynamodb_faults_enabled(&api)?;
    let v = json_body(&body)?;
    let expected = r#"expected {"count": N, "rate": 0.1, "table": "<TableName>"} (each optional)"#;
    if !v.is_object() {
        return Err(bad_request(expected));
    }
    let count = match v.get("count") {
        None => Some(0),
        Some(n) => n.as_u64(),
    };
    let rate = match v.get("rate") {
        None => Some(0.0),
        Some(n) => n.as_f64(),
    };
    let (Some(count), Some(rate), Some(table)) = (count, rate, optional_table(&v)) else {
        return Err(bad_request(expected));
    };
    let conflicts =
        api.faults
            .dynamodb()
            .set_transaction_conflicts(count, rate, table.map(str::to_owned));
    switched(&api, conflicts)
}

async fn faults_drop_sockets(
    State(api): State<Arc<HttpApi>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let v = json_body(&body)?;
    let Some(share) = v.get("share").and_then(J::as_f64) else {
        return Err(bad_request(r#"expected {"share": 0.1}"#));
    };
    let dropped = api
        .faults
        .drop_sockets(share)
        .map_err(|e| bad_request(&e))?;
    Ok(axum::Json(json!({"dropped": dropped})).into_response())
}

async fn restart_dynamodb(State(api): State<Arc<HttpApi>>) -> Response {
    let Some(d) = &api.dynamodb else {
        return message(
            StatusCode::CONFLICT,
            "this local cloud did not start DynamoDB Local",
        );
    };
    match d.restart().await {
        Ok(took) => axum::Json(json!({
            "restarted": true,
            "tookMs": took.as_millis() as u64,
            "restarts": d.restarts(),
        }))
        .into_response(),
        Err(e) if d.db_path().is_none() => message(StatusCode::CONFLICT, &format!("{e:#}")),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

/// Matches `path` against a route template; returns the path parameters.
fn match_path(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut params = BTreeMap::new();
    for (i, seg) in t.iter().enumerate() {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if let Some(greedy) = name.strip_suffix('+') {
                let rest = p.get(i..)?.join("/");
                if rest.is_empty() {
                    return None;
                }
                params.insert(greedy.to_string(), decode(&rest));
                return Some(params);
            }
            let v = p.get(i).filter(|s| !s.is_empty())?;
            params.insert(name.to_string(), decode(v));
        } else if p.get(i) != Some(seg) {
            return None;
        }
    }
    (t.len() == p.len()).then_some(params)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The most specific route for a request: literal segments beat parameters beat greedy
/// parameters, and a method beats `ANY`; `$default` is the last resort.
pub fn select_route<'a>(
    routes: &'a [HttpRoute],
    method: &str,
    path: &str,
) -> Option<(&'a HttpRoute, BTreeMap<String, String>)> {
    type Candidate<'r> = ((bool, usize, bool), &'r HttpRoute, BTreeMap<String, String>);
    let mut best: Option<Candidate> = None;
    for r in routes {
        let (Some(m), Some(t)) = (&r.method, &r.path) else {
            continue;
        };
        if m != "ANY" && !m.eq_ignore_ascii_case(method) {
            continue;
        }
        let Some(params) = match_path(t, path) else {
            continue;
        };
        let literal = t
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.starts_with('{'))
            .count();
        let score = (!t.contains("+}"), literal, m != "ANY");
        if best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, r, params));
        }
    }
    if let Some((_, r, p)) = best {
        return Some((r, p));
    }
    routes
        .iter()
        .find(|r| r.path.is_none())
        .map(|r| (r, BTreeMap::new()))
}

/// Lower-case header names, repeated values comma-joined (as API Gateway does).
pub fn joined_headers(headers: &HeaderMap) -> Map<String, J> {
    let mut out: Map<String, J> = Map::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match out.get_mut(k.as_str()) {
            Some(J::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                out.insert(k.as_str().to_string(), J::String(v));
            }
        }
    }
    out
}

fn request_id() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes: [u8; 9] = rand::random();
    format!("{}=", URL_SAFE_NO_PAD.encode(bytes))
}

async fn gateway(
    State(api): State<Arc<HttpApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let path = parts.uri.path().to_string();
    let method = parts.method.as_str().to_string();
    let Some((route, params)) = select_route(&api.routes, &method, &path) else {
        if matches!(method.as_str(), "GET" | "HEAD") {
            let host = parts.headers.get("host").and_then(|h| h.to_str().ok());
            if let Some(page) = api.web.as_ref().and_then(|w| w.serve(&path, host)) {
                return page;
            }
        }
        return message(StatusCode::NOT_FOUND, "Not Found");
    };

    if let Some(t) = route.throttle
        && !api.throttles.admit(&route.route_key(), t)
    {
        tracing::info!(route = %route.route_key(), "throttled: 429");
        return message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }

    let mut headers = joined_headers(&parts.headers);
    let cookies: Vec<J> = headers
        .remove("cookie")
        .and_then(|c| c.as_str().map(str::to_owned))
        .map(|c| {
            c.split(';')
                .map(|s| J::String(s.trim().to_string()))
                .filter(|s| s.as_str() != Some(""))
                .collect()
        })
        .unwrap_or_default();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let mut query: Map<String, J> = Map::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(J::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k.into_owned(), J::String(v.into_owned()));
            }
        }
    }
    let now = chrono::Utc::now();
    let domain = headers
        .get("host")
        .and_then(J::as_str)
        .unwrap_or("localhost")
        .to_string();
    let user_agent = headers
        .get("user-agent")
        .and_then(J::as_str)
        .unwrap_or("")
        .to_string();
    let route_key = route.route_key();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": crate::template::LOCAL_ACCOUNT_ID,
            "apiId": api.api_id,
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or(""),
            "http": {
                "method": method,
                "path": path,
                "protocol": format!("{:?}", parts.version),
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": request_id(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = J::Array(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = J::Object(query);
    }
    if !params.is_empty() {
        event["pathParameters"] = serde_json::to_value(params).unwrap_or_default();
    }
    if !body.is_empty() {
        match std::str::from_utf8(&body) {
            Ok(text) => event["body"] = J::String(text.to_string()),
            Err(_) => {
                event["body"] = J::String(base64::engine::general_purpose::STANDARD.encode(&body));
                event["isBase64Encoded"] = J::Bool(true);
            }
        }
    }

    match api.functions.invoke(&route.function, &event).await {
        Ok(payload) => map_response(&payload),
        Err(_) => message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

/// Turns a function's payload into an HTTP response by API Gateway's format 2.0 rules.
pub fn map_response(payload: &[u8]) -> Response {
    let Ok(v) = serde_json::from_slice::<J>(payload) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let Some(status) = v.get("statusCode") else {
        let mut r = Response::new(Body::from(payload.to_vec()));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        return r;
    };
    let status = status
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok());
    let Some(status) = status else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let body = match v.get("body") {
        Some(J::String(s)) if v.get("isBase64Encoded").and_then(J::as_bool) == Some(true) => {
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => b,
                Err(_) => {
                    return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                }
            }
        }
        Some(J::String(s)) => s.clone().into_bytes(),
        Some(J::Null) | None => Vec::new(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let mut add = |k: &str, val: &J| {
        let text = match val {
            J::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::from_str(&text)) {
            h.append(name, value);
        }
    };
    if let Some(J::Object(m)) = v.get("headers") {
        for (k, val) in m {
            add(k, val);
        }
    }
    if let Some(J::Object(m)) = v.get("multiValueHeaders") {
        for (k, vals) in m {
            for val in vals.as_array().into_iter().flatten() {
                add(k, val);
            }
        }
    }
    if let Some(J::Array(cookies)) = v.get("cookies") {
        for c in cookies {
            add("set-cookie", c);
        }
    }
    r
}

#[cfg(test)]
mod tests;
