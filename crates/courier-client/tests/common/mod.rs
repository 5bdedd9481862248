//! An in-process fake of the WebSocket API (tokio-tungstenite on 127.0.0.1:0) implementing the
//! messaging actions of `docs/protocol.md` for one user `u_me` and a peer `u_peer`, with knobs
//! for failures: refuse the handshake, drop connections, drop or replace replies. It records
//! every request, every handshake attempt and every incoming frame header, and enforces API
//! Gateway's frame (32 KB) and message (128 KB) limits.
//!
//! With [`FakeServer::enable_e2ee`] it also keeps the key directory and `u_me`'s device queue,
//! and the peer is a real [`DeviceCrypto`]: it encrypts what it sends (sharing its room key
//! over Olm through the queue first) and decrypts what `u_me` sends.

#![allow(dead_code)]
// The handshake callback's error type is tungstenite's.
#![allow(clippy::result_large_err)]

use courier_client::crypto::OneTimeKey;
use courier_client::{CryptoStore, DeviceCrypto, Event};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

pub const KEY: &str = "ck_test";
pub const ME: &str = "u_me";
pub const PEER: &str = "u_peer";
pub const SESSION: &str = "s_me_peer";

/// A frame header as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameInfo {
    pub opcode: OpCode,
    pub fin: bool,
    pub len: u64,
}

/// What to do with a request instead of answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Handle it but send no reply.
    DropReply,
    /// Handle it, then drop the connection without replying.
    DropConnection,
    /// Do not handle it; answer as API Gateway does when the function fails.
    GatewayError,
}

enum Cmd {
    Send(String),
    Drop,
}

#[derive(Default)]
pub struct State {
    /// Handshake status to answer with instead of accepting: (status, how many times; 0 = always).
    pub refuse: Option<(u16, usize)>,
    /// Every handshake attempt, and whether it was accepted.
    pub attempts: Vec<(Instant, bool)>,
    /// Every request frame, parsed.
    pub requests: Vec<Value>,
    /// Messages per session.
    pub sessions: BTreeMap<String, Vec<Value>>,
    /// sendMessage results by (sender, clientMsgId).
    pub sent: HashMap<String, Value>,
    /// Watermarks of u_me: (delivered, read) per session.
    pub watermarks: HashMap<String, (u64, u64)>,
    /// Faults for the next requests of an action.
    pub faults: HashMap<String, Vec<Fault>>,
    /// Events pushed to each new connection right after the handshake.
    pub on_connect: Vec<Value>,
    /// Per connection: the headers of the frames received.
    pub frames: Vec<Arc<Mutex<Vec<u8>>>>,
    /// Close codes the server sent (1009 for a frame or message over the limits).
    pub closes: Vec<u16>,
    conns: Vec<mpsc::UnboundedSender<Cmd>>,
    /// The key directory and the encrypting peer, once enabled.
    pub e2ee: Option<FakeE2ee>,
}

/// `u_me`'s published keys and device queue, and the peer's crypto.
pub struct FakeE2ee {
    /// The peer's device `d_peer`.
    pub peer: DeviceCrypto,
    pub me_identity: Option<String>,
    pub me_signing: Option<String>,
    pub me_one_time_keys: Vec<OneTimeKey>,
    pub me_fallback: Option<OneTimeKey>,
    /// `d_me`'s device queue.
    pub queue: Vec<Value>,
    next_id: u64,
    /// Whether the peer's current room key went to `d_me`.
    shared: bool,
    /// What the peer decrypted from `u_me`'s messages, in order.
    pub received: Vec<String>,
}

#[derive(Clone)]
pub struct FakeServer {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<State>> = Arc::default();
        state
            .lock()
            .unwrap()
            .sessions
            .insert(SESSION.into(), Vec::new());
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(s.clone(), tcp));
            }
        });
        Self { url, state }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Turns on end-to-end encryption: `u_me`'s device state is created in `crypto_dir` (as
    /// the client would) with its keys already "uploaded" here, and the peer encrypts.
    pub fn enable_e2ee(&self, crypto_dir: &std::path::Path) {
        let (store, mut me) = CryptoStore::load_or_create(crypto_dir, ME, "d_me").unwrap();
        let keys = me.generate_one_time_keys(50);
        let fallback = me.generate_fallback_key();
        store.save(&me).unwrap();
        self.lock().e2ee = Some(FakeE2ee {
            peer: DeviceCrypto::new(PEER, "d_peer"),
            me_identity: Some(me.identity_key()),
            me_signing: Some(me.signing_key()),
            me_one_time_keys: keys,
            me_fallback: Some(fallback),
            queue: Vec::new(),
            next_id: 0,
            shared: false,
            received: Vec::new(),
        });
    }

    /// What the peer decrypted from `u_me`'s messages.
    pub fn peer_received(&self) -> Vec<String> {
        self.lock()
            .e2ee
            .as_ref()
            .map(|e| e.received.clone())
            .unwrap_or_default()
    }

    /// Stores a message from the peer (encrypted once E2EE is enabled, its room key queued
    /// for `d_me` first); pushes it as a `message` event when `live`.
    pub fn peer_sends(&self, text: &str, live: bool) -> Value {
        let (payload, key_message) = {
            let mut st = self.lock();
            match st.e2ee.as_mut() {
                None => (text.to_owned(), None),
                Some(e) => {
                    let mut key_message = None;
                    if !e.shared {
                        let room_key = e.peer.room_key(SESSION);
                        let otk = e.me_one_time_keys.remove(0);
                        let payload = e
                            .peer
                            .encrypt_to_device(
                                ME,
                                "d_me",
                                e.me_identity.as_deref().unwrap(),
                                Some(&otk.key),
                                room_key.as_bytes(),
                            )
                            .unwrap();
                        e.next_id += 1;
                        let dm = json!({"id": format!("dm{:04}", e.next_id), "sender": PEER,
                            "senderDevice": "d_peer", "payload": payload,
                            "sentAt": "2026-11-27T12:00:00.000Z"});
                        e.queue.push(dm.clone());
                        e.shared = true;
                        key_message = Some(dm);
                    }
                    (
                        e.peer.encrypt_message(SESSION, text.as_bytes()),
                        key_message,
                    )
                }
            }
        };
        if let (Some(dm), true) = (key_message, live) {
            self.push(&json!({"type": "event", "event": "deviceMessage", "message": dm}));
        }
        let m = self
            .lock()
            .store(SESSION, PEER, "d_peer", &uuid(), "text", &payload);
        if live {
            self.push(&message_event(&m));
        }
        m
    }

    /// Stores the peer's handshake (as `initiateDirectChatSession` does); pushes the
    /// `sessionStarted` event when `live`.
    pub fn peer_starts(&self, handshake: &str, live: bool) -> Value {
        let m = self
            .lock()
            .store(SESSION, PEER, "d_peer", &uuid(), "handshake", handshake);
        if live {
            self.push(
                &json!({"type": "event", "event": "sessionStarted", "sessionId": SESSION,
                "from": PEER, "handshake": handshake, "message": m}),
            );
        }
        m
    }

    /// Sends a frame to every open connection.
    pub fn push(&self, frame: &Value) {
        let text = frame.to_string();
        self.lock()
            .conns
            .retain(|c| c.send(Cmd::Send(text.clone())).is_ok());
    }

    /// Drops every open connection (no close frame: as a network failure).
    pub fn drop_connections(&self) {
        for c in self.lock().conns.drain(..) {
            let _ = c.send(Cmd::Drop);
        }
    }

    pub fn fault(&self, action: &str, faults: &[Fault]) {
        self.lock().faults.insert(action.into(), faults.to_vec());
    }

    pub fn requests(&self, action: &str) -> Vec<Value> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r["action"] == action)
            .cloned()
            .collect()
    }

    pub fn accepted(&self) -> Vec<Instant> {
        self.lock()
            .attempts
            .iter()
            .filter(|a| a.1)
            .map(|a| a.0)
            .collect()
    }

    /// The headers of the data frames each connection received.
    pub fn frames(&self) -> Vec<Vec<FrameInfo>> {
        self.lock()
            .frames
            .iter()
            .map(|log| parse_frames(&log.lock().unwrap()))
            .collect()
    }

    pub fn messages(&self) -> Vec<Value> {
        self.lock().sessions[SESSION].clone()
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn message_event(m: &Value) -> Value {
    json!({"type": "event", "event": "message", "message": m})
}

impl State {
    /// Stores a message in `session` (creating the session), as the server would.
    pub fn store(
        &mut self,
        session: &str,
        sender: &str,
        device: &str,
        cid: &str,
        kind: &str,
        payload: &str,
    ) -> Value {
        let msgs = self.sessions.entry(session.into()).or_default();
        let seq = msgs.len() as u64 + 1;
        let m = json!({
            "msgId": format!("{session}.{seq}"), "sessionId": session, "seq": seq,
            "sender": sender, "senderDevice": device, "clientMsgId": cid, "type": kind,
            "payload": payload, "attachments": [], "sentAt": "2026-11-27T12:00:00.000Z",
        });
        msgs.push(m.clone());
        m
    }

    fn handle(&mut self, req: &Value) -> Result<Value, (&'static str, String)> {
        let s = |k: &str| req[k].as_str().map(str::to_owned);
        match req["action"].as_str().unwrap_or("") {
            "listSessions" => {
                // Pages of at most two (the real server cuts pages to a byte budget too), so
                // every client test with several sessions pages through them.
                let after = s("after").unwrap_or_default();
                let limit = req["limit"].as_u64().unwrap_or(50).min(2) as usize;
                let rest: Vec<_> = self
                    .sessions
                    .iter()
                    .filter(|(id, _)| id.as_str() > after.as_str())
                    .collect();
                let sessions: Vec<Value> = rest
                    .iter()
                    .take(limit)
                    .map(|&(id, msgs)| {
                        let (d, r) = self.watermarks.get(id).copied().unwrap_or_default();
                        json!({"sessionId": id, "type": "direct", "members": [ME, PEER],
                            "lastSeq": msgs.len(), "lastMsgId": msgs.last().map(|m| m["msgId"].clone()),
                            "deliveredSeq": d, "readSeq": r})
                    })
                    .collect();
                Ok(json!({ "sessions": sessions, "hasMore": rest.len() > limit }))
            }
            "readNewMessages" => {
                let sid = s("sessionId").ok_or(("BAD_REQUEST", "sessionId".into()))?;
                let msgs = self
                    .sessions
                    .get(&sid)
                    .ok_or(("NOT_FOUND", "no such session".into()))?;
                let after = match s("lastMsgId") {
                    None => 0,
                    Some(id) => msgs
                        .iter()
                        .find(|m| m["msgId"] == id.as_str())
                        .ok_or(("NOT_FOUND", "no such message".into()))?["seq"]
                        .as_u64()
                        .unwrap(),
                };
                let limit = req["limit"].as_u64().unwrap_or(50) as usize;
                let rest: Vec<Value> = msgs.iter().skip(after as usize).cloned().collect();
                let page: Vec<Value> = rest.iter().take(limit).cloned().collect();
                Ok(json!({"messages": page, "hasMore": rest.len() > limit}))
            }
            "sendMessage" => {
                let sid = s("sessionId").ok_or(("BAD_REQUEST", "sessionId".into()))?;
                let cid = s("clientMsgId").ok_or(("BAD_REQUEST", "clientMsgId".into()))?;
                let payload = s("payload").ok_or(("BAD_REQUEST", "payload".into()))?;
                if payload.chars().count() > 65_536 {
                    return Err(("PAYLOAD_TOO_LARGE", "payload".into()));
                }
                if let Some(first) = self.sent.get(&cid) {
                    return Ok(first.clone());
                }
                if !self.sessions.contains_key(&sid) {
                    return Err(("NOT_FOUND", "no such session".into()));
                }
                let kind = s("type").unwrap_or_default();
                if let Some(e) = self.e2ee.as_mut() {
                    let text = e
                        .peer
                        .decrypt_message(&sid, ME, "d_me", &payload)
                        .map(|b| String::from_utf8(b).unwrap())
                        .unwrap_or_else(|err| format!("(peer could not decrypt: {err})"));
                    e.received.push(text);
                }
                let m = self.store(&sid, ME, "d_me", &cid, &kind, &payload);
                let r = json!({"msgId": m["msgId"], "seq": m["seq"], "sentAt": m["sentAt"]});
                self.sent.insert(cid, r.clone());
                Ok(r)
            }
            "ackMessages" => {
                let sid = s("sessionId").ok_or(("BAD_REQUEST", "sessionId".into()))?;
                let msg_id = s("msgId").ok_or(("BAD_REQUEST", "msgId".into()))?;
                let seq: u64 = msg_id.rsplit('.').next().unwrap().parse().unwrap();
                let w = self.watermarks.entry(sid).or_default();
                let slot = if req["status"] == "read" {
                    &mut w.1
                } else {
                    &mut w.0
                };
                let moved = seq > *slot;
                *slot = (*slot).max(seq);
                Ok(json!({ "moved": moved }))
            }
            "lookupUser" => match s("phone").as_deref() {
                Some("+14155550100") => Ok(json!({"userId": PEER})),
                _ => Err(("NOT_FOUND", "no account".into())),
            },
            "initiateDirectChatSession" => {
                let created = !self.sessions.contains_key(SESSION);
                self.sessions.entry(SESSION.into()).or_default();
                Ok(json!({"sessionId": SESSION, "created": created}))
            }
            "registerPushToken" => match s("platform").as_deref() {
                Some("apns" | "fcm") => Ok(json!({"registered": true})),
                _ => Err(("BAD_REQUEST", "platform".into())),
            },
            "deleteAccount" => {
                // Every later handshake is refused; the connection is closed after the reply.
                self.refuse = Some((401, 0));
                Ok(json!({"deleted": true}))
            }
            "getMessageStatus" => Ok(json!({"msgId": s("msgId"), "status": "sent",
                "recipients": [{"userId": PEER, "status": "sent", "at": null}]})),
            action => match self.e2ee.as_mut() {
                Some(e) => e.handle(action, req),
                None => Err(("UNKNOWN_ACTION", "unknown action".into())),
            },
        }
    }
}

impl FakeE2ee {
    fn handle(&mut self, action: &str, req: &Value) -> Result<Value, (&'static str, String)> {
        let users: Vec<&str> = req["userIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match action {
            "uploadKeys" => {
                let identity = req["identityKey"].as_str().map(str::to_owned);
                let signing = req["signingKey"].as_str().map(str::to_owned);
                if identity != self.me_identity || signing != self.me_signing {
                    self.me_one_time_keys.clear();
                    self.me_fallback = None;
                }
                self.me_identity = identity;
                self.me_signing = signing;
                let keys: Vec<OneTimeKey> =
                    serde_json::from_value(req["oneTimeKeys"].clone()).unwrap_or_default();
                self.me_one_time_keys.extend(keys);
                if let Ok(f) = serde_json::from_value(req["fallbackKey"].clone()) {
                    self.me_fallback = Some(f);
                }
                Ok(json!({"oneTimeKeyCount": self.me_one_time_keys.len()}))
            }
            "listDevices" => {
                let mut devices = vec![];
                if users.contains(&ME) {
                    devices.push(json!({"userId": ME, "deviceId": "d_me", "name": "cli",
                        "platform": "cli", "primary": true, "identityKey": self.me_identity,
                        "signingKey": self.me_signing, "oneTimeKeyCount": self.me_one_time_keys.len()}));
                }
                if users.contains(&PEER) {
                    devices.push(
                        json!({"userId": PEER, "deviceId": "d_peer", "name": "phone",
                        "platform": "ios", "primary": true, "identityKey": self.peer.identity_key(),
                        "signingKey": self.peer.signing_key()}),
                    );
                }
                Ok(json!({ "devices": devices }))
            }
            "claimKeys" if req["userId"] == PEER => {
                let otk = self.peer.generate_one_time_keys(1).remove(0);
                Ok(json!({"devices": [{"userId": PEER, "deviceId": "d_peer",
                    "identityKey": self.peer.identity_key(), "signingKey": self.peer.signing_key(),
                    "oneTimeKey": otk, "fallback": false}]}))
            }
            "claimKeys" => Err(("NOT_FOUND", "only the peer's keys are claimed here".into())),
            "sendToDevice" => {
                let mut queued = vec![];
                for m in req["messages"].as_array().into_iter().flatten() {
                    assert_eq!(
                        (m["userId"].as_str(), m["deviceId"].as_str()),
                        (Some(PEER), Some("d_peer"))
                    );
                    self.peer
                        .receive_to_device(
                            ME,
                            "d_me",
                            self.me_identity.as_deref().unwrap(),
                            m["payload"].as_str().unwrap(),
                        )
                        .unwrap();
                    queued.push(json!({"userId": PEER, "deviceId": "d_peer", "id": uuid()}));
                }
                Ok(json!({"queued": queued, "unknownDevices": []}))
            }
            "readDeviceMessages" => Ok(json!({"messages": self.queue, "hasMore": false})),
            "ackDeviceMessages" => {
                let ids: Vec<&str> = req["ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let before = self.queue.len();
                self.queue
                    .retain(|m| !ids.contains(&m["id"].as_str().unwrap_or("")));
                Ok(json!({"acked": before - self.queue.len()}))
            }
            _ => Err(("UNKNOWN_ACTION", "unknown action".into())),
        }
    }
}

/// A TCP stream that logs every byte read (to parse the frame headers afterwards).
struct Recording {
    inner: TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.log.lock().unwrap().extend_from_slice(&new);
        r
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The data-frame headers in a connection's byte log (after the HTTP upgrade request).
fn parse_frames(log: &[u8]) -> Vec<FrameInfo> {
    let Some(start) = log.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let mut cur = Cursor::new(&log[start + 4..]);
    let mut out = Vec::new();
    while let Ok(Some((h, len))) = FrameHeader::parse(&mut cur) {
        if matches!(h.opcode, OpCode::Data(_)) {
            out.push(FrameInfo {
                opcode: h.opcode,
                fin: h.is_final,
                len,
            });
        }
        cur.set_position(cur.position() + len);
    }
    out
}

async fn serve(state: Arc<Mutex<State>>, tcp: TcpStream) {
    let log: Arc<Mutex<Vec<u8>>> = Arc::default();
    let stream = Recording {
        inner: tcp,
        log: log.clone(),
    };
    let st = state.clone();
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let mut st = st.lock().unwrap();
        let refuse = match &mut st.refuse {
            Some((status, n)) => {
                let s = *status;
                if *n == 1 {
                    st.refuse = None;
                } else if *n > 1 {
                    *n -= 1;
                }
                Some(s)
            }
            None => None,
        };
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = match refuse {
            Some(s) => Some(s),
            None if auth.as_deref() != Some(&format!("Bearer {KEY}")) => Some(401),
            None => None,
        };
        st.attempts.push((Instant::now(), status.is_none()));
        match status {
            None => Ok(resp),
            Some(s) => {
                let mut r = ErrorResponse::new(Some("refused".into()));
                *r.status_mut() = StatusCode::from_u16(s).unwrap();
                Err(r)
            }
        }
    };
    let config = WebSocketConfig::default()
        .max_frame_size(Some(32 * 1024))
        .max_message_size(Some(128 * 1024));
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await
    else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let greet = {
        let mut st = state.lock().unwrap();
        st.conns.push(tx);
        st.frames.push(log);
        st.on_connect.clone()
    };
    for g in greet {
        if ws.send(WsMessage::text(g.to_string())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Send(t)) => {
                    if ws.send(WsMessage::text(t)).await.is_err() {
                        return;
                    }
                }
                Some(Cmd::Drop) | None => return,
            },
            msg = ws.next() => match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    let req: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    let (reply, fault) = {
                        let mut st = state.lock().unwrap();
                        st.requests.push(req.clone());
                        let action = req["action"].as_str().unwrap_or("").to_owned();
                        let fault = st.faults.get_mut(&action).and_then(|f| {
                            if f.is_empty() { None } else { Some(f.remove(0)) }
                        });
                        if fault == Some(Fault::GatewayError) {
                            let frame = json!({"message": "Internal server error",
                                "connectionId": "conn=", "requestId": "gw-1"});
                            (frame, None)
                        } else {
                        let reply = match st.handle(&req) {
                            Ok(result) => json!({"type": "response", "requestId": req["requestId"],
                                "ok": true, "result": result}),
                            Err((code, message)) => json!({"type": "response",
                                "requestId": req["requestId"], "ok": false,
                                "error": {"code": code, "message": message}}),
                        };
                        (reply, fault)
                        }
                    };
                    match fault {
                        Some(Fault::DropReply | Fault::GatewayError) => {}
                        Some(Fault::DropConnection) => return,
                        None => {
                            if ws.send(WsMessage::text(reply.to_string())).await.is_err() {
                                return;
                            }
                            if req["action"] == "deleteAccount" {
                                let _ = ws.close(None).await;
                                return;
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(WsError::Capacity(_))) => {
                    state.lock().unwrap().closes.push(1009);
                    return;
                }
                Some(Err(_)) | None => return,
            },
        }
    }
}

/// The next event, failing the test after `secs` seconds.
pub async fn next(events: &mut courier_client::client::Events, secs: u64) -> Event {
    tokio::time::timeout(Duration::from_secs(secs), events.recv())
        .await
        .expect("an event in time")
        .expect("the event channel is open")
}

/// Events until (and including) the first one matching `stop`.
pub async fn until(
    events: &mut courier_client::client::Events,
    stop: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let e = next(events, 10).await;
        let done = stop(&e);
        out.push(e);
        if done {
            return out;
        }
    }
}

/// The seqs of the `Message` events in `events`.
pub fn seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect()
}

/// Waits until `cond` holds, checking every 10 ms; fails the test naming `what` after 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
