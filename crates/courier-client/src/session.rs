//! An authenticated WebSocket session: send a request, await its reply (matched by `requestId`),
//! and receive server events on a channel. One connection, no reconnect: see [`crate::Client`]
//! for the resilient client built on it.
//!
//! Text messages longer than [`MAX_FRAME_PAYLOAD`] bytes are sent fragmented (a `Text` frame
//! with `fin = false`, then `Continue` frames), because API Gateway closes the connection (1009)
//! on a frame over 32 KB while it accepts messages up to 128 KB.

use crate::ClientError;
use crate::protocol::{self, Receipt, Request};
use courier_core::protocol::ErrorDetail;
use courier_core::{ApiError, ErrorCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue};

/// Largest frame payload this client sends, in bytes (API Gateway's frame limit is 32 KB).
pub const MAX_FRAME_PAYLOAD: usize = 32_000;

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

/// Handshakes tried in all when the stage's `$connect` throttle refuses them (429 without
/// `Retry-After`): with the delays of [`throttled_connect_delay`], about 11 s of trying (6 to
/// 17 s), in which the default throttle (50 a second, burst 100) lets about 650 connections in.
const THROTTLED_CONNECT_TRIES: u32 = 8;

/// The wait before handshake `tries + 1`: 100 ms doubling to at most 5 s, each jittered by
/// ±50% so that clients refused together do not come back together.
fn throttled_connect_delay(tries: u32) -> Duration {
    let base = (100u64 << tries.saturating_sub(1).min(6)).min(5_000);
    Duration::from_millis(base / 2 + rand::random::<u64>() % (base + 1))
}

/// A copy of a handshake request (it is not `Clone`), to send it again.
fn copy_request(
    r: &tungstenite::handshake::client::Request,
) -> tungstenite::handshake::client::Request {
    let mut copy = tungstenite::handshake::client::Request::new(());
    *copy.method_mut() = r.method().clone();
    *copy.uri_mut() = r.uri().clone();
    *copy.version_mut() = r.version();
    *copy.headers_mut() = r.headers().clone();
    copy
}

/// Whether a URL has a path after its authority (`ws://host:1/x`), so a query can follow directly.
fn has_path(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'))
}

/// Requests waiting for their reply, and those that gave up waiting (a late reply, or the
/// gateway's error for them, may still come).
#[derive(Default)]
struct Waiting {
    replies: HashMap<String, oneshot::Sender<Value>>,
    orphans: HashSet<String>,
    /// Gateway errors that could not be matched to a request.
    unmatched_errors: u64,
}

type Pending = Arc<std::sync::Mutex<Waiting>>;
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
    closed: watch::Receiver<bool>,
    pongs: watch::Receiver<u64>,
    abort: watch::Sender<bool>,
}

/// Splits `text` into pieces of at most `max` bytes, at character boundaries.
pub fn fragments(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
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

    /// Connects with a one-time connect ticket (from `POST /v1/connect-tickets`,
    /// [`crate::AccountsClient::connect_ticket`]) in the `ticket` query parameter, as a browser
    /// must: it cannot set headers on a WebSocket handshake, and a key in the URL would end up in
    /// access logs. A ticket opens one connection, once.
    pub async fn connect_with_ticket(ws_url: &str, ticket: &str) -> Result<Self, ConnectError> {
        let sep = if ws_url.contains('?') {
            "&"
        } else if has_path(ws_url) {
            "?"
        } else {
            "/?"
        };
        let request = format!("{ws_url}{sep}ticket={ticket}")
            .into_client_request()
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        Self::open(request).await
    }

    async fn open(request: tungstenite::handshake::client::Request) -> Result<Self, ConnectError> {
        let mut tries = 1;
        let (ws, _) = loop {
            match tokio_tungstenite::connect_async(copy_request(&request)).await {
                Ok(ws) => break ws,
                // The stage's `$connect` throttle (a 429 of API Gateway's own, before any
                // function ran, so a ticket is not spent): wait and try again, as API Gateway
                // asks of clients. A 429 with `Retry-After` is Courier's failed-connect lockout,
                // which a few seconds do not lift: it is the caller's to handle.
                Err(tungstenite::Error::Http(resp))
                    if resp.status() == 429
                        && !resp.headers().contains_key("retry-after")
                        && tries < THROTTLED_CONNECT_TRIES =>
                {
                    tokio::time::sleep(throttled_connect_delay(tries)).await;
                    tries += 1;
                }
                Err(tungstenite::Error::Http(resp)) => {
                    return Err(ConnectError::Refused(resp.status().as_u16()));
                }
                Err(other) => return Err(ConnectError::Transport(other.to_string())),
            }
        };
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(false);
        let (pongs_tx, pongs) = watch::channel(0u64);
        let (abort, mut aborted) = watch::channel(false);
        let p = pending.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = stream.next() => m,
                    _ = aborted.wait_for(|a| *a) => break,
                };
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::debug!("websocket read failed: {e}");
                        break;
                    }
                    None => break,
                };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Pong(_) => {
                        pongs_tx.send_modify(|n| *n += 1);
                        continue;
                    }
                    Message::Close(frame) => {
                        tracing::debug!("closed by the server: {frame:?}");
                        break;
                    }
                    _ => continue,
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let reply_to = (value["type"] == "response")
                    .then(|| value["requestId"].as_str().map(str::to_owned))
                    .flatten();
                match reply_to {
                    Some(id) => {
                        let mut w = p.lock().unwrap();
                        w.orphans.remove(&id);
                        if let Some(waiter) = w.replies.remove(&id) {
                            let _ = waiter.send(value);
                        }
                    }
                    None => {
                        if is_gateway_error(&value) {
                            match_gateway_error(&mut p.lock().unwrap(), &value);
                        }
                        let _ = tx.send(value);
                    }
                }
            }
            // Mark closed before failing the waiters, so a request registered meanwhile sees it.
            closed_tx.send_replace(true);
            p.lock().unwrap().replies.clear();
        });
        Ok(Self {
            sink: Mutex::new(sink),
            pending,
            next_id: AtomicU64::new(1),
            events: Mutex::new(rx),
            closed,
            pongs,
            abort,
        })
    }

    /// Sends `action` with `params` (an object) and waits for its reply's `result`.
    pub async fn request(&self, action: &str, params: Value) -> Result<Value, ClientError> {
        let (id, frame) = self.frame(action, params)?;
        let reply = self.send_raw_and_wait(&id, &frame).await?;
        reply_result(reply)
    }

    /// Like [`Session::request`], failing with [`ClientError::Timeout`] when no reply comes in
    /// time (a reply that arrives later is dropped). If the gateway answered an error frame of
    /// its own meanwhile (`{"message": "Internal server error", ...}`: the function failed),
    /// which carries no request id of ours, the failure is an `INTERNAL` error instead.
    pub async fn request_with_timeout(
        &self,
        action: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let (id, frame) = self.frame(action, params)?;
        let errors_before = self.pending.lock().unwrap().unmatched_errors;
        match tokio::time::timeout(timeout, self.send_raw_and_wait(&id, &frame)).await {
            Ok(reply) => reply_result(reply?),
            Err(_) => {
                let mut w = self.pending.lock().unwrap();
                w.replies.remove(&id);
                if w.unmatched_errors > errors_before {
                    return Err(ClientError::Api(ErrorDetail {
                        code: courier_core::ErrorCode::Internal,
                        message: "no reply; the gateway reported an internal server error".into(),
                        retry_after: None,
                    }));
                }
                w.orphans.insert(id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Sends a typed request (see [`crate::protocol`]) and waits for its `result`.
    pub async fn call(&self, req: Request) -> Result<Value, ClientError> {
        self.request(req.action, req.params).await
    }

    fn frame(&self, action: &str, params: Value) -> Result<(String, String), ClientError> {
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
        frame.insert("action".into(), Value::String(action.into()));
        frame.insert("requestId".into(), Value::String(id.clone()));
        Ok((id, Value::Object(frame).to_string()))
    }

    /// Sends a frame as given and waits for the reply carrying `request_id` (for tests of bad input).
    pub async fn send_raw_and_wait(
        &self,
        request_id: &str,
        text: &str,
    ) -> Result<Value, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap()
            .replies
            .insert(request_id.to_owned(), tx);
        let gone = || ClientError::Transport("connection closed before the reply".into());
        if self.is_closed() {
            self.pending.lock().unwrap().replies.remove(request_id);
            return Err(gone());
        }
        if let Err(e) = self.send_raw(text).await {
            self.pending.lock().unwrap().replies.remove(request_id);
            return Err(e);
        }
        rx.await.map_err(|_| gone())
    }

    /// Sends a text message as given: one frame, or fragments of at most [`MAX_FRAME_PAYLOAD`]
    /// bytes when it is longer.
    pub async fn send_raw(&self, text: &str) -> Result<(), ClientError> {
        self.send_text_fragmented(text, MAX_FRAME_PAYLOAD).await
    }

    /// Sends a text message in frames of at most `max_frame` payload bytes.
    pub async fn send_text_fragmented(
        &self,
        text: &str,
        max_frame: usize,
    ) -> Result<(), ClientError> {
        let err = |e: tungstenite::Error| ClientError::Transport(e.to_string());
        let mut sink = self.sink.lock().await;
        if text.len() <= max_frame {
            return sink.send(Message::text(text)).await.map_err(err);
        }
        let parts = fragments(text, max_frame);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let opcode = if i == 0 { Data::Text } else { Data::Continue };
            let frame = Frame::message(part.as_bytes().to_vec(), OpCode::Data(opcode), i == last);
            sink.feed(Message::Frame(frame)).await.map_err(err)?;
        }
        sink.flush().await.map_err(err)
    }

    /// The next unsolicited frame (events, and replies that carry no request id). None once the
    /// connection has closed and every frame received before was taken.
    pub async fn next_event(&self) -> Option<Value> {
        self.events.lock().await.recv().await
    }

    /// Resolves when the connection has closed (at once if it already has).
    pub async fn closed(&self) {
        let mut c = self.closed.clone();
        let _ = c.wait_for(|closed| *closed).await;
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Sends a ping and waits up to `timeout` for a pong: whether the connection is alive.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let mut pongs = self.pongs.clone();
        pongs.borrow_and_update();
        if self.ping().await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(timeout, pongs.changed()).await,
            Ok(Ok(()))
        )
    }

    /// Sends a ping (keeps an idle connection open).
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.sink
            .lock()
            .await
            .send(Message::Ping(Default::default()))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.sink.lock().await.send(Message::Close(None)).await;
        })
        .await;
        // Stop reading soon even if the server never answers the close.
        let abort = self.abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            abort.send_replace(true);
        });
    }

    /// Drops the connection at once, without a closing handshake (for a connection found dead).
    pub fn abort(&self) {
        self.abort.send_replace(true);
    }

    /// `lookupUser`: the user id behind a phone number.
    pub async fn lookup_user(&self, phone: &str) -> Result<String, ClientError> {
        protocol::field_str(&self.call(protocol::lookup_user(phone)).await?, "userId")
    }

    /// `discoverContacts`: which of up to 1000 address-book numbers have an account (a few
    /// calls a day per account).
    pub async fn discover_contacts(
        &self,
        phones: &[String],
    ) -> Result<Vec<protocol::DiscoveredContact>, ClientError> {
        protocol::discovered(self.call(protocol::discover_contacts(phones)).await?)
    }

    /// `initiateDirectChatSession`.
    pub async fn initiate_direct_chat(
        &self,
        peer_user_id: &str,
        handshake: Option<&str>,
    ) -> Result<protocol::DirectChat, ClientError> {
        protocol::parse(
            self.call(protocol::initiate_direct_chat(peer_user_id, handshake))
                .await?,
        )
    }

    /// `listSessions`, every page.
    pub async fn list_sessions(&self) -> Result<Vec<protocol::SessionSummary>, ClientError> {
        protocol::all_sessions(|req| self.call(req)).await
    }

    /// `sendMessage` with the given `clientMsgId` (no retry: see [`crate::Client::send`]).
    pub async fn send_message(
        &self,
        message: &protocol::NewMessage,
        client_msg_id: &str,
    ) -> Result<protocol::SentMessage, ClientError> {
        protocol::parse(
            self.call(protocol::send_message(message, client_msg_id))
                .await?,
        )
    }

    /// `readNewMessages`.
    pub async fn read_new_messages(
        &self,
        session_id: &str,
        last_msg_id: Option<&str>,
        limit: Option<u32>,
    ) -> Result<protocol::MessagesPage, ClientError> {
        protocol::parse(
            self.call(protocol::read_new_messages(session_id, last_msg_id, limit))
                .await?,
        )
    }

    /// `ackMessages`: whether the watermark moved.
    pub async fn ack(
        &self,
        session_id: &str,
        msg_id: &str,
        status: Receipt,
    ) -> Result<bool, ClientError> {
        let r = self.call(protocol::ack(session_id, msg_id, status)).await?;
        Ok(protocol::field_bool(&r, "moved"))
    }

    /// `getMessageStatus`.
    pub async fn get_message_status(
        &self,
        msg_id: &str,
    ) -> Result<protocol::MessageStatus, ClientError> {
        protocol::parse(self.call(protocol::get_message_status(msg_id)).await?)
    }

    /// `deleteMessage`.
    pub async fn delete_message(&self, session_id: &str, msg_id: &str) -> Result<(), ClientError> {
        self.call(protocol::delete_message(session_id, msg_id))
            .await
            .map(drop)
    }

    /// `sendTyping`.
    pub async fn send_typing(&self, session_id: &str, typing: bool) -> Result<(), ClientError> {
        self.call(protocol::send_typing(session_id, typing))
            .await
            .map(drop)
    }

    /// `registerPushToken`.
    pub async fn register_push_token(
        &self,
        platform: protocol::PushPlatform,
        token: &str,
    ) -> Result<(), ClientError> {
        self.call(protocol::register_push_token(platform, token))
            .await
            .map(drop)
    }

    /// `deleteAccount`.
    pub async fn delete_account(&self) -> Result<(), ClientError> {
        self.call(protocol::delete_account()).await.map(drop)
    }

    /// Turns on two-step verification (or changes the PIN): re-registering this number will
    /// need `pin` (six digits) as well as the SMS code. The primary device needs no
    /// `current_pin`; a companion only changes an existing PIN, with it.
    pub async fn set_registration_pin(
        &self,
        pin: &str,
        current_pin: Option<&str>,
    ) -> Result<(), ClientError> {
        self.call(protocol::set_registration_pin(pin, current_pin))
            .await
            .map(drop)
    }

    /// Turns two-step verification off: the primary device, or a companion with `current_pin`.
    pub async fn remove_registration_pin(
        &self,
        current_pin: Option<&str>,
    ) -> Result<(), ClientError> {
        self.call(protocol::remove_registration_pin(current_pin))
            .await
            .map(drop)
    }

    /// Whether `pin` is the account's registration PIN (`NOT_FOUND` when it has none; wrong
    /// PINs count against the account's daily budget).
    pub async fn check_registration_pin(&self, pin: &str) -> Result<bool, ClientError> {
        let r = self.call(protocol::check_registration_pin(pin)).await?;
        Ok(r["correct"] == serde_json::Value::Bool(true))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The reader task holds the stream; stop it so the socket is released.
        self.abort.send_replace(true);
    }
}

/// The gateway's own error frame, `{"message": "...", "connectionId", "requestId"}` (its
/// request id is the gateway's, not ours).
fn is_gateway_error(v: &Value) -> bool {
    v.get("type").is_none() && v["message"].is_string() && v.get("connectionId").is_some()
}

/// Answers the request a gateway error is for, when that is unambiguous: exactly one request is
/// waiting and none gave up earlier. Otherwise counts it, for the timeout to report.
fn match_gateway_error(w: &mut Waiting, frame: &Value) {
    let only = (w.orphans.is_empty() && w.replies.len() == 1)
        .then(|| w.replies.keys().next().cloned())
        .flatten();
    if let Some((id, waiter)) = only.and_then(|id| w.replies.remove_entry(&id)) {
        let what = frame["message"].as_str().unwrap_or_default();
        // The stage's route throttle: the request was not served; it may be sent again later.
        let error = if what == "Too Many Requests" {
            ApiError::limit_exceeded("the gateway throttled this route: Too Many Requests", 1)
        } else {
            ApiError::new(ErrorCode::Internal, format!("the gateway answered: {what}"))
        };
        let reply = courier_core::protocol::reply_err(Some(&id), &error);
        let _ = waiter.send(serde_json::from_str(&reply).expect("a reply frame is JSON"));
        return;
    }
    if let Some(o) = w.orphans.iter().next().cloned() {
        w.orphans.remove(&o);
        return;
    }
    w.unmatched_errors += 1;
}

/// A reply's `result`, or its error.
fn reply_result(reply: Value) -> Result<Value, ClientError> {
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

#[cfg(test)]
mod tests {
    use super::fragments;

    #[test]
    fn fragments_at_char_boundaries() {
        assert_eq!(fragments("abc", 10), vec!["abc"]);
        assert_eq!(fragments("abcdef", 4), vec!["abcd", "ef"]);
        let s = "é".repeat(10); // 2 bytes each
        let parts = fragments(&s, 5);
        assert!(parts.iter().all(|p| p.len() <= 5 && !p.is_empty()));
        assert_eq!(parts.concat(), s);
        let s = "x".repeat(65_536);
        let parts = fragments(&s, 32_000);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![32_000, 32_000, 1_536]
        );
    }
}
