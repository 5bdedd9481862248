//! An authenticated WebSocket session: send a request, await its reply (matched by `requestId`),
//! and receive server events on a channel.

use crate::ClientError;
use courier_core::protocol::ErrorDetail;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue};

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The gateway refused the handshake with this HTTP status (401: missing, wrong or revoked key).
    #[error("connection refused with HTTP {0}")]
    Refused(u16),
    /// Anything else.
    #[error("connection failed: {0}")]
    Transport(String),
}

/// Whether a URL has a path after its authority (`ws://host:1/x`), so a query can follow directly.
fn has_path(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'))
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;
type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// One open WebSocket.
pub struct Session {
    sink: Mutex<Sink>,
    pending: Pending,
    next_id: AtomicU64,
    events: Mutex<mpsc::UnboundedReceiver<Value>>,
    closed: Arc<tokio::sync::Notify>,
}

impl Session {
    /// Connects to `ws_url` with the device's API key in the `Authorization` header.
    pub async fn connect(ws_url: &str, api_key: &str) -> Result<Self, ConnectError> {
        let mut request = ws_url
            .into_client_request()
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        let auth = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        request.headers_mut().insert("authorization", auth);
        Self::open(request).await
    }

    /// Connects with the key in the `token` query parameter, as browsers must.
    pub async fn connect_with_token(ws_url: &str, api_key: &str) -> Result<Self, ConnectError> {
        let sep = if ws_url.contains('?') {
            "&"
        } else if has_path(ws_url) {
            "?"
        } else {
            "/?"
        };
        let request = format!("{ws_url}{sep}token={api_key}")
            .into_client_request()
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        Self::open(request).await
    }

    async fn open(request: tungstenite::handshake::client::Request) -> Result<Self, ConnectError> {
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(resp) => ConnectError::Refused(resp.status().as_u16()),
                other => ConnectError::Transport(other.to_string()),
            })?;
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = Arc::new(tokio::sync::Notify::new());
        let (p, c) = (pending.clone(), closed.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else {
                    if msg.is_close() {
                        break;
                    }
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let reply_to = (value["type"] == "response")
                    .then(|| value["requestId"].as_str().map(str::to_owned))
                    .flatten();
                match reply_to {
                    Some(id) => {
                        if let Some(waiter) = p.lock().await.remove(&id) {
                            let _ = waiter.send(value);
                        }
                    }
                    None => {
                        let _ = tx.send(value);
                    }
                }
            }
            p.lock().await.clear();
            c.notify_waiters();
            c.notify_one();
        });
        Ok(Self {
            sink: Mutex::new(sink),
            pending,
            next_id: AtomicU64::new(1),
            events: Mutex::new(rx),
            closed,
        })
    }

    /// Sends `action` with `params` (an object) and waits for its reply's `result`.
    pub async fn request(&self, action: &str, params: Value) -> Result<Value, ClientError> {
        let id = format!("c-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut frame = match params {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            other => {
                return Err(ClientError::Transport(format!(
                    "params must be an object, got {other}"
                )));
            }
        };
        frame.insert("action".into(), json!(action));
        frame.insert("requestId".into(), json!(id));
        let reply = self
            .send_raw_and_wait(&id, &Value::Object(frame).to_string())
            .await?;
        if reply["ok"] == true {
            Ok(reply["result"].clone())
        } else {
            serde_json::from_value::<ErrorDetail>(reply["error"].clone())
                .map(|d| Err(ClientError::Api(d)))
                .unwrap_or_else(|_| {
                    Err(ClientError::Unexpected {
                        status: 0,
                        body: reply.to_string(),
                    })
                })
        }
    }

    /// Sends a frame as given and waits for the reply carrying `request_id` (for tests of bad input).
    pub async fn send_raw_and_wait(
        &self,
        request_id: &str,
        text: &str,
    ) -> Result<Value, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(request_id.to_owned(), tx);
        self.send_raw(text).await?;
        rx.await
            .map_err(|_| ClientError::Transport("connection closed before the reply".into()))
    }

    /// Sends a text frame as given.
    pub async fn send_raw(&self, text: &str) -> Result<(), ClientError> {
        self.sink
            .lock()
            .await
            .send(Message::text(text))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// The next unsolicited frame (events, and replies that carry no request id).
    pub async fn next_event(&self) -> Option<Value> {
        self.events.lock().await.recv().await
    }

    /// Resolves when the server has closed the connection.
    pub async fn closed(&self) {
        self.closed.notified().await
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.sink.lock().await.send(Message::Close(None)).await;
    }
}
