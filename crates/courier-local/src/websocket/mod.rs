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

mod authorize;
mod connection;
mod management;

use authorize::ConnectContext;
pub use authorize::policy_decision;
#[cfg(test)]
use authorize::wildcard_match;
use connection::upgrade;
use management::{manage_root, manage_stage};

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
