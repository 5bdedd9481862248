//! The resilient messaging client: one logical connection that survives drops.
//!
//! - Connects with the API key and reconnects by itself when the socket drops or the server
//!   closes it, with exponential backoff and jitter ([`ClientConfig::backoff_initial`] doubling to
//!   [`ClientConfig::backoff_max`], reset once a connection stayed up for
//!   [`ClientConfig::healthy_after`]). A handshake refused with 401 (revoked key) stops it:
//!   [`Event::Unauthorized`] is emitted, the event channel ends and calls fail with
//!   [`ClientError::Unauthorized`].
//! - After every (re)connect it syncs: `listSessions`, then for each session whose `lastSeq` is
//!   beyond its cursor, `readNewMessages` page by page from the cursor; each unseen message is
//!   emitted once, in session order, and acknowledged `delivered` up to the last one.
//! - Live `message` events are de-duplicated (by seq against the cursor, and by msgId), held back
//!   if they arrive ahead of a gap (which is then read at once), and acknowledged `delivered`
//!   ([`ClientConfig::auto_ack_delivered`]).
//! - Sends carry a `clientMsgId` generated once; after a transport failure (no reply within
//!   [`ClientConfig::request_timeout`], a dropped connection) the same request is sent again until
//!   a reply or a non-retryable error, so the server stores and delivers it once.
//!
//! Events come out of the `mpsc` receiver returned with the client, in the order they happen.

use crate::ClientError;
use crate::cursors::{Cursors, Origin, Tracker};
use crate::protocol::{self, DeliveryStatus, Event, Message, NewMessage, Request, SessionSummary};
use crate::session::{ConnectError, Session};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// The receiving end of a client's events. It ends after [`Client::close`] or
/// [`Event::Unauthorized`].
pub type Events = mpsc::UnboundedReceiver<Event>;

/// How a [`Client`] behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The WebSocket API URL.
    pub ws_url: String,
    /// The device's API key.
    pub api_key: String,
    /// Send the key as the `token` query parameter instead of the `Authorization` header.
    pub token_in_query: bool,
    /// How long to wait for each reply (default 10 s).
    pub request_timeout: Duration,
    /// Acknowledge `delivered` for every message received (default true).
    pub auto_ack_delivered: bool,
    /// Sync after every (re)connect (default true).
    pub sync_on_connect: bool,
    /// First reconnect delay (default 100 ms); it doubles after each failure.
    pub backoff_initial: Duration,
    /// Longest reconnect delay (default 10 s).
    pub backoff_max: Duration,
    /// A connection that stayed up this long resets the backoff (default 10 s).
    pub healthy_after: Duration,
    /// Ping this often on an idle connection (default 5 minutes; the idle limit is 10).
    pub keepalive: Option<Duration>,
    /// `limit` for `readNewMessages` during sync (default 100).
    pub page_size: u32,
    /// How many recent message ids to remember for de-duplication (default 10,000).
    pub seen_capacity: usize,
    /// How long a call keeps retrying after transport failures (default: until it gets an
    /// answer or the client stops).
    pub retry_deadline: Option<Duration>,
    /// Where each session's reading starts (see [`Client::cursors`]).
    pub cursors: Cursors,
}

impl ClientConfig {
    /// The defaults for one device.
    pub fn new(ws_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            ws_url: ws_url.into(),
            api_key: api_key.into(),
            token_in_query: false,
            request_timeout: Duration::from_secs(10),
            auto_ack_delivered: true,
            sync_on_connect: true,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(300)),
            page_size: 100,
            seen_capacity: 10_000,
            retry_deadline: None,
            cursors: Cursors::default(),
        }
    }
}

/// The connection as calls see it.
#[derive(Clone)]
enum Conn {
    Connecting,
    Up(Arc<Session>),
    Stopped { unauthorized: bool },
}

struct State {
    tracker: Tracker,
    events: Option<mpsc::UnboundedSender<Event>>,
    sessions: BTreeMap<String, SessionSummary>,
}

struct Inner {
    config: ClientConfig,
    conn: watch::Sender<Conn>,
    state: Mutex<State>,
    stop: watch::Sender<bool>,
    sync_now: Notify,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Stops the driver when the last [`Client`] clone is dropped.
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// The resilient client; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

impl Client {
    /// Connects once (failing with [`ClientError::Unauthorized`] if the key is refused, or the
    /// transport error), then stays connected in the background.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let first = open(&config).await.map_err(|e| match e {
            ConnectError::Refused(401) => ClientError::Unauthorized,
            other => ClientError::Transport(other.to_string()),
        })?;
        Ok(Self::spawn(config, Some(first)))
    }

    /// Starts connecting in the background (offline is fine: it keeps trying).
    pub fn start(config: ClientConfig) -> (Client, Events) {
        Self::spawn(config, None)
    }

    fn spawn(mut config: ClientConfig, first: Option<Session>) -> (Client, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cursors = std::mem::take(&mut config.cursors);
        let tracker = Tracker::new(cursors, config.seen_capacity);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            config,
            conn: watch::channel(Conn::Connecting).0,
            state: Mutex::new(State {
                tracker,
                events: Some(tx),
                sessions: BTreeMap::new(),
            }),
            stop: stop.clone(),
            sync_now: Notify::new(),
            driver: Mutex::new(None),
        });
        let handle = tokio::spawn(drive(inner.clone(), first));
        *inner.driver.lock().unwrap() = Some(handle);
        (
            Client {
                inner,
                _stop: Arc::new(StopOnDrop(stop)),
            },
            rx,
        )
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.inner.conn.borrow(), Conn::Up(s) if !s.is_closed())
    }

    /// What this client has seen, per session: save it and pass it back in
    /// [`ClientConfig::cursors`] next time to resume where it left off.
    pub fn cursors(&self) -> Cursors {
        self.inner.state.lock().unwrap().tracker.cursors.clone()
    }

    /// Folds in cursors (e.g. saved by another process); messages at or below them are not
    /// emitted again.
    pub fn import_cursors(&self, cursors: &Cursors) {
        self.inner
            .state
            .lock()
            .unwrap()
            .tracker
            .cursors
            .merge(cursors);
    }

    /// The sessions as of the last sync.
    pub fn known_sessions(&self) -> Vec<SessionSummary> {
        let st = self.inner.state.lock().unwrap();
        st.sessions.values().cloned().collect()
    }

    /// Asks for a sync now (e.g. after a push notification); [`Event::Synced`] follows.
    pub fn request_sync(&self) {
        self.inner.sync_now.notify_one();
    }

    /// Stops: closes the connection, ends the event channel. Calls in flight fail with
    /// [`ClientError::Closed`].
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        let handle = self.inner.driver.lock().unwrap().take();
        if let Some(h) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }

    /// Sends a typed request; with `retry`, again after transport failures (the request must be
    /// idempotent) until an answer, a non-retryable error or [`ClientConfig::retry_deadline`].
    pub async fn call(&self, req: Request, retry: bool) -> Result<Value, ClientError> {
        let cfg = &self.inner.config;
        let deadline = cfg.retry_deadline.map(|d| Instant::now() + d);
        let expired = || deadline.is_some_and(|d| Instant::now() >= d);
        let mut pause = Duration::from_millis(100);
        loop {
            let session = match self.session(Instant::now() + cfg.request_timeout).await {
                Ok(s) => s,
                Err(ClientError::Timeout) if retry && !expired() => continue,
                Err(e) => return Err(e),
            };
            let result = session
                .request_with_timeout(req.action, req.params.clone(), cfg.request_timeout)
                .await;
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if let Conn::Stopped { unauthorized } = *self.inner.conn.borrow() {
                return Err(if unauthorized {
                    ClientError::Unauthorized
                } else {
                    ClientError::Closed
                });
            }
            if !retry || !err.is_retryable() || expired() {
                return Err(err);
            }
            tracing::debug!(action = req.action, "retrying after: {err}");
            match &err {
                ClientError::Timeout => check_alive(session),
                ClientError::Api(d) => {
                    let wait = d.retry_after.map_or(pause, Duration::from_secs);
                    let mut stop = self.inner.stop.subscribe();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = until_stopped(&mut stop) => {}
                    }
                    pause = (pause * 2).min(cfg.backoff_max);
                }
                _ => {}
            }
        }
    }

    /// The live session, waiting until `deadline` for one.
    async fn session(&self, deadline: Instant) -> Result<Arc<Session>, ClientError> {
        let mut rx = self.inner.conn.subscribe();
        let wait = rx.wait_for(|c| match c {
            Conn::Connecting => false,
            Conn::Up(s) => !s.is_closed(),
            Conn::Stopped { .. } => true,
        });
        match tokio::time::timeout_at(deadline, wait).await {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(c)) => match &*c {
                Conn::Up(s) => Ok(s.clone()),
                Conn::Stopped { unauthorized: true } => Err(ClientError::Unauthorized),
                _ => Err(ClientError::Closed),
            },
        }
    }

    /// `lookupUser`: the user id behind a phone number.
    pub async fn lookup_user(&self, phone: &str) -> Result<String, ClientError> {
        let r = self.call(protocol::lookup_user(phone), true).await?;
        protocol::field_str(&r, "userId")
    }

    /// `initiateGroupChatSession`: the new group's id (also its session id). Not retried after
    /// a lost reply (a retry would create a second group).
    pub async fn create_group(
        &self,
        name: &str,
        description: Option<&str>,
        members: &[String],
    ) -> Result<String, ClientError> {
        let r = self
            .call(protocol::initiate_group(name, description, members), false)
            .await?;
        protocol::field_str(&r, "groupId")
    }

    /// `addUserToGroup`, `removeUserFromGroup` or `promoteUserToAdmin` (each idempotent).
    pub async fn group_member(
        &self,
        action: protocol::GroupAction,
        group_id: &str,
        user_id: &str,
    ) -> Result<Value, ClientError> {
        self.call(protocol::group_member(action, group_id, user_id), true)
            .await
    }

    /// `getGroup`: name, description, members with roles.
    pub async fn get_group(&self, group_id: &str) -> Result<Value, ClientError> {
        self.call(protocol::get_group(group_id), true).await
    }

    /// `deleteGroup`.
    pub async fn delete_group(&self, group_id: &str) -> Result<Value, ClientError> {
        self.call(protocol::delete_group(group_id), true).await
    }

    /// `initiateDirectChatSession` (idempotent: the same two users always get the same session).
    pub async fn initiate_direct_chat(
        &self,
        peer_user_id: &str,
        handshake: Option<&str>,
    ) -> Result<protocol::DirectChat, ClientError> {
        let req = protocol::initiate_direct_chat(peer_user_id, handshake);
        protocol::parse(self.call(req, true).await?)
    }

    /// `listSessions`.
    pub async fn list_sessions(&self) -> Result<Vec<SessionSummary>, ClientError> {
        let r = self.call(protocol::list_sessions(), true).await?;
        protocol::parse(r["sessions"].clone())
    }

    /// Sends a text message (its payload made by [`crate::payload::encode`]).
    pub async fn send_text(
        &self,
        session_id: &str,
        text: &str,
    ) -> Result<protocol::SentMessage, ClientError> {
        self.send(NewMessage::text(session_id, text)).await
    }

    /// `sendMessage` with a payload already encoded.
    pub async fn send_message(
        &self,
        session_id: &str,
        kind: protocol::MessageType,
        payload: &str,
    ) -> Result<protocol::SentMessage, ClientError> {
        self.send(NewMessage {
            session_id: session_id.to_owned(),
            kind,
            payload: payload.to_owned(),
            attachments: Vec::new(),
            client_msg_id: None,
        })
        .await
    }

    /// `sendMessage`, retried on the same `clientMsgId` (generated here unless given) until a
    /// reply or a non-retryable error. The message is recorded as seen, so a sync does not
    /// emit it back.
    pub async fn send(&self, message: NewMessage) -> Result<protocol::SentMessage, ClientError> {
        let cid = message
            .client_msg_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.inner.state.lock().unwrap().tracker.sending(&cid);
        let result = self
            .call(protocol::send_message(&message, &cid), true)
            .await
            .and_then(protocol::parse::<protocol::SentMessage>);
        let unblocked = {
            let mut st = self.inner.state.lock().unwrap();
            let st = &mut *st;
            let mut unblocked = false;
            if let Ok(sent) = &result {
                let out = st
                    .tracker
                    .note_own(&message.session_id, sent.seq, &sent.msg_id);
                unblocked = !out.emit.is_empty();
                emit(&st.events, out.emit);
            }
            st.tracker.sent(&cid);
            unblocked
        };
        if unblocked {
            self.inner.ack_cursor(&message.session_id);
        }
        result
    }

    /// `readNewMessages` (direct access; the client's own sync does this by itself).
    pub async fn read_new_messages(
        &self,
        session_id: &str,
        last_msg_id: Option<&str>,
        limit: Option<u32>,
    ) -> Result<protocol::MessagesPage, ClientError> {
        let req = protocol::read_new_messages(session_id, last_msg_id, limit);
        protocol::parse(self.call(req, true).await?)
    }

    /// `ackMessages`: whether the watermark moved.
    pub async fn ack(
        &self,
        session_id: &str,
        msg_id: &str,
        status: DeliveryStatus,
    ) -> Result<bool, ClientError> {
        let r = self
            .call(protocol::ack(session_id, msg_id, status), true)
            .await?;
        Ok(protocol::field_bool(&r, "moved"))
    }

    /// `getMessageStatus`.
    pub async fn get_message_status(
        &self,
        msg_id: &str,
    ) -> Result<protocol::MessageStatus, ClientError> {
        protocol::parse(
            self.call(protocol::get_message_status(msg_id), true)
                .await?,
        )
    }

    /// `registerPushToken`.
    pub async fn register_push_token(
        &self,
        platform: protocol::PushPlatform,
        token: &str,
    ) -> Result<(), ClientError> {
        let req = protocol::register_push_token(platform, token);
        self.call(req, true).await.map(drop)
    }

    /// `deleteAccount` (not retried). On success the client stops, as the server closes every
    /// connection of the account.
    pub async fn delete_account(&self) -> Result<(), ClientError> {
        self.call(protocol::delete_account(), false).await?;
        self.close().await;
        Ok(())
    }
}

impl Inner {
    fn emit(&self, events: Vec<Event>) {
        let st = self.state.lock().unwrap();
        emit(&st.events, events);
    }

    /// Offers a message and emits what it produces; returns (cursor moved, gap).
    fn offer(&self, m: &Message, event: Event, origin: Origin) -> (bool, bool) {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        let out = st.tracker.offer(m, event, origin);
        emit(&st.events, out.emit);
        (out.advanced, out.gap)
    }

    /// Acknowledges `delivered` up to the session's cursor, in the background.
    fn ack_cursor(self: &Arc<Self>, session_id: &str) {
        if !self.config.auto_ack_delivered {
            return;
        }
        let Some(msg_id) = self.cursor_msg_id(session_id) else {
            return;
        };
        let Conn::Up(session) = self.conn.borrow().clone() else {
            return;
        };
        let req = protocol::ack(session_id, &msg_id, DeliveryStatus::Delivered);
        let timeout = self.config.request_timeout;
        tokio::spawn(async move {
            if let Err(e) = session
                .request_with_timeout(req.action, req.params, timeout)
                .await
            {
                tracing::debug!("ack delivered failed: {e}");
            }
        });
    }

    fn cursor_msg_id(&self, session_id: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        st.tracker.cursors.get(session_id)?.msg_id.clone()
    }

    async fn request(&self, session: &Arc<Session>, req: Request) -> Result<Value, ClientError> {
        let r = session
            .request_with_timeout(req.action, req.params, self.config.request_timeout)
            .await;
        if matches!(r, Err(ClientError::Timeout)) {
            check_alive(session.clone());
        }
        r
    }

    /// Catches up every session.
    async fn sync_all(&self, session: &Arc<Session>) -> Result<(), ClientError> {
        let r = self.request(session, protocol::list_sessions()).await?;
        let sessions: Vec<SessionSummary> = protocol::parse(r["sessions"].clone())?;
        {
            let mut st = self.state.lock().unwrap();
            st.sessions = sessions
                .iter()
                .map(|s| (s.session_id.clone(), s.clone()))
                .collect();
        }
        for s in &sessions {
            let seq = self
                .state
                .lock()
                .unwrap()
                .tracker
                .cursors
                .seq(&s.session_id);
            if s.last_seq > seq {
                self.read_session(session, &s.session_id).await?;
            }
            if self.config.auto_ack_delivered {
                let cursor = {
                    let st = self.state.lock().unwrap();
                    st.tracker.cursors.get(&s.session_id).cloned()
                };
                if let Some(msg_id) = cursor
                    .filter(|c| c.seq > s.delivered_seq)
                    .and_then(|c| c.msg_id)
                {
                    let req = protocol::ack(&s.session_id, &msg_id, DeliveryStatus::Delivered);
                    self.request(session, req).await?;
                }
            }
        }
        Ok(())
    }

    /// Reads a session from its cursor to the end.
    async fn read_session(
        &self,
        session: &Arc<Session>,
        session_id: &str,
    ) -> Result<(), ClientError> {
        loop {
            let (seq, after) = {
                let st = self.state.lock().unwrap();
                let c = st.tracker.cursors.get(session_id);
                (c.map_or(0, |c| c.seq), c.and_then(|c| c.msg_id.clone()))
            };
            let req = protocol::read_new_messages(
                session_id,
                after.as_deref(),
                Some(self.config.page_size),
            );
            let page: protocol::MessagesPage = protocol::parse(self.request(session, req).await?)?;
            for m in &page.messages {
                if m.session_id != session_id {
                    continue;
                }
                self.offer(m, Event::for_message(m.clone()), Origin::Read);
            }
            let moved = self.state.lock().unwrap().tracker.cursors.seq(session_id) > seq;
            if !page.has_more || !moved {
                return Ok(());
            }
        }
    }

    /// Handles one unsolicited frame.
    async fn on_frame(self: &Arc<Self>, session: &Arc<Session>, frame: Value) {
        let event = Event::from_frame(frame);
        let message = match &event {
            Event::Message(m) => Some(m.clone()),
            Event::SessionStarted {
                message: Some(m), ..
            } => Some(m.clone()),
            _ => None,
        };
        let Some(m) = message else {
            self.emit(vec![event]);
            return;
        };
        let event = match event {
            Event::Message(m) => Event::for_message(m),
            other => other,
        };
        let (advanced, gap) = self.offer(&m, event, Origin::Live);
        let mut advanced = advanced;
        if gap {
            match self.read_session(session, &m.session_id).await {
                Ok(()) => advanced = true,
                Err(e) => tracing::debug!("reading a gap failed: {e}"),
            }
        }
        if advanced {
            self.ack_cursor(&m.session_id);
        }
    }
}

fn emit(tx: &Option<mpsc::UnboundedSender<Event>>, events: Vec<Event>) {
    if let Some(tx) = tx {
        for e in events {
            let _ = tx.send(e);
        }
    }
}

/// After a timeout: probe the connection, and drop it if it does not answer (so the client
/// reconnects instead of waiting on a dead socket).
fn check_alive(session: Arc<Session>) {
    tokio::spawn(async move {
        if !session.probe(Duration::from_secs(5)).await {
            tracing::debug!("connection did not answer a ping; dropping it");
            session.abort();
        }
    });
}

async fn open(config: &ClientConfig) -> Result<Session, ConnectError> {
    if config.token_in_query {
        Session::connect_with_token(&config.ws_url, &config.api_key).await
    } else {
        Session::connect(&config.ws_url, &config.api_key).await
    }
}

/// Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling to the max.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            initial,
            max,
            next: initial,
            seed,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        // xorshift: good enough to spread reconnects.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = d / 2;
        let span = half.as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { self.seed % (span + 1) })
    }
}

/// Resolves once the stop flag is set.
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The background task: connect, sync, read events, reconnect.
async fn drive(inner: Arc<Inner>, mut first: Option<Session>) {
    let cfg = inner.config.clone();
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    let mut stop = inner.stop.subscribe();
    let unauthorized = 'outer: loop {
        if *stop.borrow() {
            break false;
        }
        let session = match first.take() {
            Some(s) => s,
            None => {
                let attempt = tokio::select! {
                    r = open(&cfg) => r,
                    _ = until_stopped(&mut stop) => break false,
                };
                match attempt {
                    Ok(s) => s,
                    Err(ConnectError::Refused(401)) => break true,
                    Err(e) => {
                        tracing::debug!("connect failed: {e}");
                        let wait = backoff.delay();
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => continue,
                            _ = until_stopped(&mut stop) => break false,
                        }
                    }
                }
            }
        };
        let session = Arc::new(session);
        let up_since = Instant::now();
        inner.conn.send_replace(Conn::Up(session.clone()));
        inner.emit(vec![Event::Connected]);

        let mut want_sync = cfg.sync_on_connect;
        let mut keepalive = cfg
            .keepalive
            .map(|p| tokio::time::interval_at(Instant::now() + p, p));
        loop {
            if want_sync {
                want_sync = false;
                let sync = tokio::select! {
                    r = inner.sync_all(&session) => r,
                    _ = until_stopped(&mut stop) => {
                        session.close().await;
                        break 'outer false;
                    }
                };
                match sync {
                    Ok(()) => inner.emit(vec![Event::Synced]),
                    Err(e) if e.is_retryable() => tracing::debug!("sync interrupted: {e}"),
                    Err(e) => inner.emit(vec![Event::Error(format!("sync failed: {e}"))]),
                }
            }
            let tick = async {
                match keepalive.as_mut() {
                    Some(k) => {
                        k.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = session.next_event() => match frame {
                    Some(v) => inner.on_frame(&session, v).await,
                    None => break,
                },
                _ = inner.sync_now.notified() => want_sync = true,
                _ = tick => {
                    let _ = session.ping().await;
                }
                _ = until_stopped(&mut stop) => {
                    session.close().await;
                    break 'outer false;
                }
            }
        }
        inner.conn.send_replace(Conn::Connecting);
        inner.emit(vec![Event::Disconnected]);
        if up_since.elapsed() >= cfg.healthy_after {
            backoff.reset();
        }
        let wait = backoff.delay();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = until_stopped(&mut stop) => break false,
        }
    };
    if let Conn::Up(s) = inner.conn.borrow().clone() {
        s.abort();
    }
    inner.conn.send_replace(Conn::Stopped { unauthorized });
    let mut st = inner.state.lock().unwrap();
    if unauthorized {
        emit(&st.events, vec![Event::Unauthorized]);
    }
    st.events = None;
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..12 {
            let d = b.delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            ceiling = (ceiling * 2).min(Duration::from_secs(10));
        }
        assert_eq!(ceiling, Duration::from_secs(10));
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
    }
}
