//! The WebSocket API and its management API (`/@connections/{id}`), with API Gateway's semantics.
//!
//! An upgrade request runs the `$connect` authorizer and integration before the handshake is
//! completed, so a refusal is an HTTP status (401, 403, 500 or the integration's own), as on AWS.
//! Each text message is routed by the route selection expression and invoked at once, so the
//! messages of one connection run concurrently and may finish in any order, as on API Gateway;
//! a two-way route's `body` is sent back (unless it is over the message limit: then nothing is).
//! Frames over the frame limit
//! and messages over the message limit close the connection with 1009; idle and lifetime limits
//! close it with 1001. However a connection ends, `$disconnect` runs exactly once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{Map, Value as J, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use crate::faults::{Faults, ManagementOp, management_error, message_body};
use crate::http_api::joined_headers;
use crate::runtime::{Functions, InvokeError};
use crate::template::{LOCAL_ACCOUNT_ID, WebSocketApi, WsRoute};

/// API Gateway's WebSocket limits (shorter values make tests fast).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest frame a client may send (32 KB on AWS).
    pub max_frame_bytes: usize,
    /// Largest message after reassembly (128 KB on AWS).
    pub max_message_bytes: usize,
    /// A connection with no client traffic for this long is closed (10 min on AWS).
    pub idle_timeout: Duration,
    /// A connection is closed after this long whatever it does (2 h on AWS).
    pub max_lifetime: Duration,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(7200),
        }
    }
}

enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, &'static str),
    /// Drop the TCP stream without a close frame (the fault switch).
    Abort,
}

enum Incoming {
    Text(String),
    Binary,
}

/// A live connection.
struct Conn {
    id: String,
    connected_at: DateTime<Utc>,
    last_active: Mutex<DateTime<Utc>>,
    source_ip: String,
    user_agent: String,
    /// `principalId` and context from the authorizer; `None` without one.
    authorizer: Option<Map<String, J>>,
    out: mpsc::UnboundedSender<Outgoing>,
}

/// The WebSocket gateway: routes, functions and live connections.
pub struct WsGateway {
    api: WebSocketApi,
    functions: Functions,
    limits: WsLimits,
    region: String,
    connections: Mutex<HashMap<String, Arc<Conn>>>,
    shutdown: CancellationToken,
    faults: Faults,
    /// The stage's route throttles (`$connect` and every route).
    throttles: crate::throttle::Throttles,
}

impl WsGateway {
    /// A gateway for `api` whose routes invoke `functions`; management calls consult `faults`.
    pub fn new(
        api: WebSocketApi,
        functions: Functions,
        limits: WsLimits,
        region: String,
        shutdown: CancellationToken,
        faults: Faults,
    ) -> Self {
        Self {
            api,
            functions,
            limits,
            region,
            connections: Mutex::default(),
            shutdown,
            faults,
            throttles: Default::default(),
        }
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.connections.lock().unwrap().get(id).cloned()
    }
}

impl crate::faults::SocketDropper for WsGateway {
    fn drop_random_sockets(&self, share: f64) -> usize {
        let mut conns: Vec<Arc<Conn>> =
            self.connections.lock().unwrap().values().cloned().collect();
        if conns.is_empty() || share == 0.0 {
            return 0;
        }
        let n = ((conns.len() as f64 * share).round() as usize).clamp(1, conns.len());
        let mut rng = rand::rng();
        for i in 0..n {
            let j = rng.random_range(i..conns.len());
            conns.swap(i, j);
        }
        for c in &conns[..n] {
            // Gone for the management API at once (a post now is 410, not a lost write).
            self.connections.lock().unwrap().remove(&c.id);
            tracing::warn!(connection = %c.id, "fault injection: dropping the socket without a close frame");
            let _ = c.out.send(Outgoing::Abort);
        }
        n
    }
}

/// The router for upgrades and the management API; serve it with connect info.
pub fn router(gw: Arc<WsGateway>) -> Router {
    Router::new()
        .route("/", get(upgrade_root))
        .route("/{stage}", get(upgrade_stage))
        .route("/@connections/{id}", any(manage_root))
        .route("/{stage}/@connections/{id}", any(manage_stage))
        .with_state(gw)
}

fn random_id(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A connection id shaped like API Gateway's: 16 characters of base64 ending in `=`.
fn connection_id() -> String {
    format!("{}=", random_id(15))
}

fn request_id() -> String {
    format!("{}=", random_id(15))
}

fn multi_value_headers(headers: &HeaderMap) -> Map<String, J> {
    let mut out: Map<String, J> = Map::new();
    for (k, v) in headers {
        let v = J::String(String::from_utf8_lossy(v.as_bytes()).into_owned());
        match out.get_mut(k.as_str()) {
            Some(J::Array(a)) => a.push(v),
            _ => {
                out.insert(k.as_str().to_string(), J::Array(vec![v]));
            }
        }
    }
    out
}

fn query_maps(query: &str) -> (Map<String, J>, Map<String, J>) {
    let mut single = Map::new();
    let mut multi: Map<String, J> = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        single.insert(k.to_string(), J::String(v.to_string()));
        match multi.get_mut(k.as_ref()) {
            Some(J::Array(a)) => a.push(J::String(v.into_owned())),
            _ => {
                multi.insert(k.into_owned(), J::Array(vec![J::String(v.into_owned())]));
            }
        }
    }
    (single, multi)
}

async fn upgrade_root(
    State(gw): State<Arc<WsGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    upgrade(gw, peer, req).await
}

async fn upgrade_stage(
    State(gw): State<Arc<WsGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    req: Request,
) -> Response {
    if stage != gw.api.stage {
        return message_body(StatusCode::FORBIDDEN, "Forbidden");
    }
    upgrade(gw, peer, req).await
}

struct ConnectContext {
    connection_id: String,
    request_id: String,
    connected_at: DateTime<Utc>,
    source_ip: String,
    user_agent: String,
    domain: String,
}

impl WsGateway {
    fn request_context(&self, c: &ConnectContext, route_key: &str, event_type: &str) -> J {
        let now = Utc::now();
        json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": c.request_id,
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "messageDirection": "IN",
            "stage": self.api.stage,
            "connectedAt": c.connected_at.timestamp_millis(),
            "requestTimeEpoch": now.timestamp_millis(),
            "identity": {"sourceIp": c.source_ip, "userAgent": c.user_agent},
            "requestId": c.request_id,
            "domainName": c.domain,
            "connectionId": c.connection_id,
            "apiId": self.api.api_id,
        })
    }

    fn route(&self, key: &str) -> Option<&WsRoute> {
        self.api.routes.get(key)
    }

    /// Runs the authorizer; `Err` is the refusal to send instead of the handshake.
    async fn authorize(
        &self,
        route: &WsRoute,
        function: &str,
        c: &ConnectContext,
        headers: &HeaderMap,
        query: &str,
    ) -> Result<Map<String, J>, Response> {
        let (q, mq) = query_maps(query);
        let mut event = json!({
            "type": "REQUEST",
            "methodArn": format!(
                "arn:aws:execute-api:{}:{}:{}/{}/{}",
                self.region, LOCAL_ACCOUNT_ID, self.api.api_id, self.api.stage, route.route_key
            ),
            "headers": joined_headers(headers),
            "multiValueHeaders": multi_value_headers(headers),
            "stageVariables": {},
            "requestContext": self.request_context(c, &route.route_key, "CONNECT"),
        });
        if !q.is_empty() {
            event["queryStringParameters"] = J::Object(q);
            event["multiValueQueryStringParameters"] = J::Object(mq);
        }
        let started = std::time::Instant::now();
        let payload = match self.functions.invoke(function, &event).await {
            Ok(p) => p,
            Err(InvokeError::Function { error_message, .. }) if error_message == "Unauthorized" => {
                return Err(message_body(StatusCode::UNAUTHORIZED, "Unauthorized"));
            }
            Err(_) => {
                return Err(message_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
        };
        let v: J = serde_json::from_slice(&payload).unwrap_or(J::Null);
        let method_arn = event["methodArn"].as_str().unwrap_or_default();
        match policy_decision(&v, method_arn) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("the authorizer's policy does not allow {method_arn}: 403");
                return Err(message_body(StatusCode::FORBIDDEN, "Forbidden"));
            }
            Err(why) => {
                tracing::warn!("the authorizer's answer is not a valid policy: {why}");
                return Err(message_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
        }
        let mut ctx = Map::new();
        if let Some(J::Object(m)) = v.get("context") {
            ctx.extend(m.clone());
        }
        ctx.insert(
            "principalId".into(),
            v.get("principalId").cloned().unwrap_or(J::Null),
        );
        ctx.insert(
            "integrationLatency".into(),
            J::from(started.elapsed().as_millis() as u64),
        );
        Ok(ctx)
    }
}

/// Whether an authorizer's answer allows invoking `method_arn`, as API Gateway evaluates it: a
/// statement applies when one of its `Action`s matches `execute-api:Invoke` and one of its
/// `Resource`s matches the method ARN (IAM wildcards: `*` any run of characters, `?` one; actions
/// ignore case, resources do not). An applicable `Deny` wins; otherwise an applicable `Allow` is
/// needed. `Err` for an answer that is no policy at all (API Gateway answers 500 then).
pub fn policy_decision(answer: &J, method_arn: &str) -> Result<bool, String> {
    if answer.get("principalId").is_none() {
        return Err("no principalId".into());
    }
    let statements: Vec<&J> = match answer.pointer("/policyDocument/Statement") {
        Some(J::Array(a)) => a.iter().collect(),
        Some(s @ J::Object(_)) => vec![s],
        _ => return Err("no policyDocument.Statement".into()),
    };
    let strings = |v: Option<&J>| -> Vec<String> {
        match v {
            Some(J::String(s)) => vec![s.clone()],
            Some(J::Array(a)) => a.iter().filter_map(J::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let mut allowed = false;
    for st in statements {
        let applies = strings(st.get("Action")).iter().any(|a| {
            wildcard_match(
                &a.to_ascii_lowercase(),
                &"execute-api:Invoke".to_ascii_lowercase(),
            )
        }) && strings(st.get("Resource"))
            .iter()
            .any(|r| wildcard_match(r, method_arn));
        if !applies {
            continue;
        }
        match st.get("Effect").and_then(J::as_str) {
            Some(e) if e.eq_ignore_ascii_case("Deny") => return Ok(false),
            Some(e) if e.eq_ignore_ascii_case("Allow") => allowed = true,
            other => return Err(format!("Effect {other:?}")),
        }
    }
    Ok(allowed)
}

/// IAM's wildcard match: `*` matches any run of characters (`/` and `:` included), `?` one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Greedy with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

async fn upgrade(gw: Arc<WsGateway>, peer: SocketAddr, mut req: Request) -> Response {
    let headers = req.headers().clone();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return message_body(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
    };
    if !is_upgrade {
        return message_body(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let query = req.uri().query().unwrap_or("").to_string();
    let c = ConnectContext {
        connection_id: connection_id(),
        request_id: request_id(),
        connected_at: Utc::now(),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        domain: headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_string(),
    };

    let connect = gw.route("$connect").cloned();
    // The stage's `$connect` throttle refuses before the authorizer runs, as API Gateway does.
    if let Some(t) = connect.as_ref().and_then(|r| r.throttle)
        && !gw.throttles.admit("$connect", t)
    {
        tracing::info!("$connect throttled: 429");
        return message_body(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let mut authorizer = None;
    if let Some(route) = &connect
        && let (Some(func), "CUSTOM") = (
            &route.authorizer_function,
            route.authorization_type.as_str(),
        )
    {
        match gw.authorize(route, func, &c, &headers, &query).await {
            Ok(ctx) => authorizer = Some(ctx),
            Err(refusal) => return refusal,
        }
    }

    let mut subprotocol = None;
    if let Some(func) = connect.as_ref().and_then(|r| r.function.as_deref()) {
        let (q, mq) = query_maps(&query);
        let mut ctx = gw.request_context(&c, "$connect", "CONNECT");
        if let Some(a) = &authorizer {
            ctx["authorizer"] = J::Object(a.clone());
        }
        let mut event = json!({
            "headers": joined_headers(&headers),
            "multiValueHeaders": multi_value_headers(&headers),
            "requestContext": ctx,
            "isBase64Encoded": false,
        });
        if !q.is_empty() {
            event["queryStringParameters"] = J::Object(q);
            event["multiValueQueryStringParameters"] = J::Object(mq);
        }
        match gw.functions.invoke(func, &event).await {
            Ok(payload) => {
                let v: J = serde_json::from_slice(&payload).unwrap_or(J::Null);
                let status = v.get("statusCode").and_then(J::as_u64).unwrap_or(200);
                if !(200..300).contains(&status) {
                    let status =
                        StatusCode::from_u16(status as u16).unwrap_or(StatusCode::FORBIDDEN);
                    let body = v.get("body").and_then(J::as_str).unwrap_or("").to_string();
                    // The integration's headers go with its refusal (Retry-After on a 429).
                    let mut refusal = (status, body).into_response();
                    if let Some(h) = v.get("headers").and_then(J::as_object) {
                        for (name, value) in h {
                            if let (Ok(name), Some(Ok(value))) = (
                                header::HeaderName::from_bytes(name.as_bytes()),
                                value.as_str().map(header::HeaderValue::from_str),
                            ) {
                                refusal.headers_mut().insert(name, value);
                            }
                        }
                    }
                    return refusal;
                }
                subprotocol = v.get("headers").and_then(|h| {
                    h.as_object()?.iter().find_map(|(k, v)| {
                        k.eq_ignore_ascii_case("sec-websocket-protocol")
                            .then(|| v.as_str().map(str::to_owned))
                            .flatten()
                    })
                });
            }
            Err(_) => {
                return message_body(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
            }
        }
    }

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        id: c.connection_id.clone(),
        connected_at: c.connected_at,
        last_active: Mutex::new(c.connected_at),
        source_ip: c.source_ip.clone(),
        user_agent: c.user_agent.clone(),
        authorizer,
        out: out_tx,
    });
    gw.connections
        .lock()
        .unwrap()
        .insert(conn.id.clone(), conn.clone());
    tracing::info!(connection = %conn.id, "connected");

    let config = WebSocketConfig::default()
        .max_frame_size(Some(gw.limits.max_frame_bytes))
        .max_message_size(Some(gw.limits.max_message_bytes));
    let gw2 = gw.clone();
    let domain = c.domain.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run_connection(gw2, conn, ws, out_rx, domain).await;
            }
            Err(e) => {
                tracing::warn!("upgrade failed: {e}");
                gw2.connections.lock().unwrap().remove(&conn.id);
                gw2.disconnect(&conn, &domain, 1006, "Connection dropped")
                    .await;
            }
        }
    });

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Sends a close frame and waits (briefly) for the client's.
async fn close_gracefully(ws: &mut Socket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Closes after a protocol-level error (the read side may hold half a frame): writes the close
/// frame directly and drains what the client still sends, so it can read the close.
async fn close_after_error(ws: &mut Socket, code: u16, reason: &'static str) {
    let mut frame = vec![0x88, (2 + reason.len()) as u8];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    let io = ws.get_mut();
    if io.write_all(&frame).await.is_err() || io.flush().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let _ = io.shutdown().await;
}

async fn run_connection(
    gw: Arc<WsGateway>,
    conn: Arc<Conn>,
    mut ws: Socket,
    mut out_rx: mpsc::UnboundedReceiver<Outgoing>,
    domain: String,
) {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let dispatcher = tokio::spawn(dispatch(gw.clone(), conn.clone(), in_rx, domain.clone()));
    let lifetime = tokio::time::sleep(gw.limits.max_lifetime);
    tokio::pin!(lifetime);
    let idle = tokio::time::sleep(gw.limits.idle_timeout);
    tokio::pin!(idle);
    let touch = |idle: &mut std::pin::Pin<&mut tokio::time::Sleep>| {
        *conn.last_active.lock().unwrap() = Utc::now();
        idle.as_mut()
            .reset(tokio::time::Instant::now() + gw.limits.idle_timeout);
    };
    let (code, reason): (u16, &str) = loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    touch(&mut idle);
                    let _ = in_tx.send(Incoming::Text(t.to_string()));
                }
                Some(Ok(Message::Binary(_))) => {
                    touch(&mut idle);
                    let _ = in_tx.send(Incoming::Binary);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => touch(&mut idle),
                Some(Ok(Message::Close(frame))) => {
                    let _ = ws.close(None).await;
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    break (code, "Connection closed normally by client");
                }
                Some(Err(WsError::Capacity(_))) => {
                    close_after_error(&mut ws, 1009, "Message too big").await;
                    break (1009, "Message too big");
                }
                Some(Err(_)) | None => break (1006, "Connection dropped"),
            },
            Some(out) = out_rx.recv() => match out {
                Outgoing::Text(s) => {
                    if ws.send(Message::text(s)).await.is_err() {
                        break (1006, "Connection dropped");
                    }
                }
                Outgoing::Binary(b) => {
                    if ws.send(Message::binary(b)).await.is_err() {
                        break (1006, "Connection dropped");
                    }
                }
                Outgoing::Close(code, reason) => {
                    close_gracefully(&mut ws, code, reason).await;
                    break (code, reason);
                }
                Outgoing::Abort => {
                    // No close frame: shut the TCP stream down (FIN) and let go of it.
                    let _ = ws.get_mut().shutdown().await;
                    break (1006, "Connection dropped");
                }
            },
            _ = &mut idle => {
                close_gracefully(&mut ws, 1001, "Going away").await;
                break (1001, "Going away");
            }
            _ = &mut lifetime => {
                close_gracefully(&mut ws, 1001, "Going away").await;
                break (1001, "Going away");
            }
            _ = gw.shutdown.cancelled() => {
                close_gracefully(&mut ws, 1001, "Going away").await;
                return;
            }
        }
    };
    drop(ws);
    gw.connections.lock().unwrap().remove(&conn.id);
    tracing::info!(connection = %conn.id, code, "disconnected: {reason}");
    drop(in_tx);
    let _ = dispatcher.await;
    gw.disconnect(&conn, &domain, code, reason).await;
}

impl WsGateway {
    fn context_for(&self, conn: &Conn, domain: &str) -> ConnectContext {
        ConnectContext {
            connection_id: conn.id.clone(),
            request_id: request_id(),
            connected_at: conn.connected_at,
            source_ip: conn.source_ip.clone(),
            user_agent: conn.user_agent.clone(),
            domain: domain.to_string(),
        }
    }

    async fn disconnect(&self, conn: &Conn, domain: &str, code: u16, reason: &str) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let Some(func) = self.route("$disconnect").and_then(|r| r.function.clone()) else {
            return;
        };
        let c = self.context_for(conn, domain);
        let mut ctx = self.request_context(&c, "$disconnect", "DISCONNECT");
        ctx["disconnectStatusCode"] = J::from(code);
        ctx["disconnectReason"] = J::String(reason.to_string());
        if let Some(a) = &conn.authorizer {
            ctx["authorizer"] = J::Object(a.clone());
        }
        let event = json!({
            "headers": {"Host": domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {"Host": [domain]},
            "requestContext": ctx,
            "isBase64Encoded": false,
        });
        let _ = self.functions.invoke(&func, &event).await;
    }

    /// Picks the route for a message by the route selection expression.
    fn select_route(&self, body: &str) -> Option<&WsRoute> {
        let expr = self.api.route_selection_expression.as_str();
        let selected = expr.strip_prefix("$request.body.").and_then(|path| {
            let v: J = serde_json::from_str(body).ok()?;
            let mut cur = &v;
            for part in path.split('.') {
                cur = cur.get(part)?;
            }
            let key = cur.as_str()?;
            if key.starts_with('$') {
                return None;
            }
            self.api.routes.get(key)
        });
        selected.or_else(|| self.api.routes.get("$default"))
    }

    async fn handle_message(&self, conn: &Conn, body: String, domain: &str) {
        let c = self.context_for(conn, domain);
        let error_frame = |message: &str| {
            json!({"message": message, "connectionId": conn.id, "requestId": c.request_id})
                .to_string()
        };
        let Some(route) = self.select_route(&body).cloned() else {
            let _ = conn.out.send(Outgoing::Text(error_frame("Forbidden")));
            return;
        };
        let Some(func) = route.function.as_deref() else {
            let _ = conn.out.send(Outgoing::Text(error_frame("Forbidden")));
            return;
        };
        // The stage's route throttle: the function is not invoked, the client gets the
        // gateway's own error frame (no request id of the client's, like its other errors).
        if let Some(t) = route.throttle
            && !self.throttles.admit(&route.route_key, t)
        {
            tracing::info!(route = %route.route_key, "throttled");
            let _ = conn
                .out
                .send(Outgoing::Text(error_frame("Too Many Requests")));
            return;
        }
        let mut ctx = self.request_context(&c, &route.route_key, "MESSAGE");
        ctx["messageId"] = J::String(format!("{}=", random_id(15)));
        if let Some(a) = &conn.authorizer {
            ctx["authorizer"] = J::Object(a.clone());
        }
        let event = json!({
            "requestContext": ctx,
            "body": body,
            "isBase64Encoded": false,
        });
        match self.functions.invoke(func, &event).await {
            Ok(payload) => {
                if !route.two_way {
                    return;
                }
                let v: J = serde_json::from_slice(&payload).unwrap_or(J::Null);
                if let Some(b) = v.get("body") {
                    let text = match b {
                        J::String(s) => s.clone(),
                        J::Null => String::new(),
                        other => other.to_string(),
                    };
                    if text.len() > self.limits.max_message_bytes {
                        // API Gateway's message payload quota (128 KB) holds for what it sends
                        // too: a route response over it never reaches the client, which waits
                        // for a reply that does not come.
                        tracing::warn!(
                            connection = %conn.id,
                            bytes = text.len(),
                            "route response over the message limit: not sent"
                        );
                    } else if !text.is_empty() {
                        let _ = conn.out.send(Outgoing::Text(text));
                    }
                }
            }
            Err(_) => {
                let _ = conn
                    .out
                    .send(Outgoing::Text(error_frame("Internal server error")));
            }
        }
    }
}

async fn dispatch(
    gw: Arc<WsGateway>,
    conn: Arc<Conn>,
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    domain: String,
) {
    while let Some(inc) = rx.recv().await {
        match inc {
            // Each message is its own invocation, started at once, as API Gateway does: two
            // frames of one connection may run at the same time and finish in either order.
            Incoming::Text(body) => {
                let (gw, conn, domain) = (gw.clone(), conn.clone(), domain.clone());
                tokio::spawn(async move { gw.handle_message(&conn, body, &domain).await });
            }
            Incoming::Binary => {
                let frame = json!({
                    "message": "Binary frames are not supported",
                    "connectionId": conn.id,
                    "requestId": request_id(),
                });
                let _ = conn.out.send(Outgoing::Text(frame.to_string()));
            }
        }
    }
}

fn gone(id: &str) -> Response {
    management_error(
        StatusCode::GONE,
        "GoneException",
        &format!("Connection {id} is gone"),
    )
}

async fn manage_root(
    State(gw): State<Arc<WsGateway>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    manage(gw, id, req).await
}

async fn manage_stage(
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

async fn manage(gw: Arc<WsGateway>, id: String, req: Request) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:execute-api:us-east-1:000000000000:websocketapi/prod/$connect";

    fn policy(statements: J) -> J {
        json!({"principalId": "u", "policyDocument": {"Version": "2012-10-17", "Statement": statements}})
    }

    #[test]
    fn iam_wildcards() {
        assert!(wildcard_match("*", ARN));
        assert!(wildcard_match(
            "arn:aws:execute-api:*:*:websocketapi/prod/*",
            ARN
        ));
        assert!(wildcard_match(
            "arn:aws:execute-api:us-east-1:000000000000:websocketapi/pro?/$connect",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:us-east-1:000000000000:websocketapi/dev/*",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:us-east-1:000000000000:WebSocketApi/prod/$connect",
            ARN
        ));
        assert!(!wildcard_match(&ARN[..ARN.len() - 1], ARN));
        assert!(wildcard_match("a*b*c", "a-b-b-c"));
        assert!(!wildcard_match("a*b*c", "a-b-b-"));
    }

    #[test]
    fn policies_as_api_gateway_evaluates_them() {
        let allow =
            |r: J| json!({"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": r});
        assert_eq!(policy_decision(&policy(allow(json!(ARN))), ARN), Ok(true));
        assert_eq!(
            policy_decision(&policy(json!([allow(json!(["x", "*/prod/*"]))])), ARN),
            Ok(true)
        );
        assert_eq!(
            policy_decision(
                &policy(allow(json!("arn:aws:execute-api:*:*:other/*"))),
                ARN
            ),
            Ok(false)
        );
        // The action must cover execute-api:Invoke.
        let wrong_action =
            json!({"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": "*"});
        assert_eq!(policy_decision(&policy(wrong_action), ARN), Ok(false));
        let deny = json!({"Effect": "Deny", "Action": "*", "Resource": ARN});
        assert_eq!(
            policy_decision(&policy(json!([allow(json!("*")), deny])), ARN),
            Ok(false)
        );
        assert!(policy_decision(&json!({"principalId": "u"}), ARN).is_err());
        assert!(policy_decision(&json!({"policyDocument": {"Statement": []}}), ARN).is_err());
    }
}
