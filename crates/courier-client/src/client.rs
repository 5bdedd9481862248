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
//! - With [`ClientConfig::encryption`] set, messages are end-to-end encrypted (see
//!   [`crate::e2ee`]): keys are published on every connect, [`Client::send_text`] shares the
//!   chat's room key with every member device and sends the Megolm ciphertext, the device queue
//!   is read on every sync and live (room keys), and every `text`/`media` message is decrypted
//!   before it is emitted ([`Message::text`]); one that cannot be is emitted as
//!   [`Event::Undecryptable`] (held first until the device queue was read, and emitted as a
//!   message if its key comes later). Without it, payloads are plain text (the load generator
//!   and tests that exercise the server alone).
//!
//! Events come out of the `mpsc` receiver returned with the client, in the order they happen.

use crate::ClientError;
use crate::crypto::CryptoError;
use crate::cursors::{Cursors, Origin, Tracker};
use crate::e2ee::{self, Caller, Decrypted, E2ee, SafetyInfo};
use crate::protocol::{
    self, DeviceMessage, Event, Message, MessageKind, NewMessage, Receipt, Request, SessionSummary,
};
use crate::session::{ConnectError, Session};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
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
    /// Send a heartbeat request this often (default 5 minutes; API Gateway's idle limit is 10),
    /// and drop the connection when it gets no reply within `request_timeout`
    /// ([`crate::heartbeat`]).
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
    /// End-to-end encryption: where this device's crypto state lives. None: plain payloads.
    pub encryption: Option<Encryption>,
    /// What the reconnect backoff waits with (default [`TokioTimer`]: it sleeps).
    pub backoff_timer: Arc<dyn BackoffTimer>,
}

/// End-to-end encryption settings: the device's crypto state directory and who it is (from
/// the credentials).
#[derive(Debug, Clone)]
pub struct Encryption {
    /// The [`crate::CryptoStore`] directory (created 0700 if missing).
    pub dir: PathBuf,
    /// The account.
    pub user_id: String,
    /// This device.
    pub device_id: String,
}

impl ClientConfig {
    /// The defaults for one device.
    pub fn new(ws_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            ws_url: ws_url.into(),
            api_key: api_key.into(),
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
            encryption: None,
            backoff_timer: Arc::new(TokioTimer),
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
    /// Held messages already reported as undecryptable.
    reported: HashSet<String>,
}

struct Inner {
    config: ClientConfig,
    e2ee: Option<Arc<E2ee>>,
    /// Set once this connection's keys were published (or publishing failed): sends wait for
    /// it, so a peer can look up the sender's keys.
    published: watch::Sender<bool>,
    conn: watch::Sender<Conn>,
    state: Mutex<State>,
    stop: watch::Sender<bool>,
    sync_now: Notify,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// One send at a time per session (see [`Client::send`]).
    send_order: SendOrder,
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
        let e2ee = open_e2ee(&config)?;
        let first = open(&config).await.map_err(|e| match e {
            ConnectError::Refused(401) => ClientError::Unauthorized,
            other => ClientError::Transport(other.to_string()),
        })?;
        Ok(Self::spawn(config, e2ee, Some(first)))
    }

    /// Starts connecting in the background (offline is fine: it keeps trying). A crypto state
    /// that cannot be opened is fatal: [`Event::Error`] and the client stops.
    pub fn start(config: ClientConfig) -> (Client, Events) {
        match open_e2ee(&config) {
            Ok(e2ee) => Self::spawn(config, e2ee, None),
            Err(e) => {
                let (client, events) = Self::spawn(config, None, None);
                client.inner.emit(vec![Event::Error(e.to_string())]);
                client.inner.stop.send_replace(true);
                (client, events)
            }
        }
    }

    fn spawn(
        mut config: ClientConfig,
        e2ee: Option<Arc<E2ee>>,
        first: Option<Session>,
    ) -> (Client, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cursors = std::mem::take(&mut config.cursors);
        let tracker = Tracker::new(cursors, config.seen_capacity);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            config,
            e2ee,
            published: watch::channel(false).0,
            conn: watch::channel(Conn::Connecting).0,
            state: Mutex::new(State {
                tracker,
                events: Some(tx),
                sessions: BTreeMap::new(),
                reported: HashSet::new(),
            }),
            stop: stop.clone(),
            sync_now: Notify::new(),
            driver: Mutex::new(None),
            send_order: SendOrder::default(),
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

    /// `discoverContacts`: which of up to 1000 address-book numbers (E.164; others are
    /// skipped) have an account, for address-book sync. Each call spends one of the account's
    /// few a day, so it is not retried: past the budget it answers `LIMIT_EXCEEDED` at once,
    /// with the seconds until the next day in `retryAfter`.
    pub async fn discover_contacts(
        &self,
        phones: &[String],
    ) -> Result<Vec<protocol::DiscoveredContact>, ClientError> {
        protocol::discovered(
            self.call(protocol::discover_contacts(phones), false)
                .await?,
        )
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

    /// `listSessions`, every page.
    pub async fn list_sessions(&self) -> Result<Vec<SessionSummary>, ClientError> {
        protocol::all_sessions(|req| self.call(req, true)).await
    }

    /// Sends a text message: end-to-end encrypted when the client has
    /// [`ClientConfig::encryption`] (the chat's room key is shared first with every member
    /// device that lacks it), else as made by [`crate::payload::encode`].
    ///
    /// A member device whose identity key changed fails the send with
    /// [`ClientError::Crypto`] ([`CryptoError::IdentityChanged`]) before anything is sent.
    pub async fn send_text(
        &self,
        session_id: &str,
        text: &str,
    ) -> Result<protocol::SentMessage, ClientError> {
        self.send_content(session_id, MessageKind::Text, text, Vec::new())
            .await
    }

    /// Sends `content` as a message of `kind` with `attachments`: end-to-end encrypted when
    /// the client has encryption, else as is (text and media descriptors alike).
    pub(crate) async fn send_content(
        &self,
        session_id: &str,
        kind: MessageKind,
        content: &str,
        attachments: Vec<String>,
    ) -> Result<protocol::SentMessage, ClientError> {
        let payload = match self.inner.e2ee.clone() {
            None => crate::payload::encode(content),
            Some(e2ee) => {
                self.keys_published().await;
                let members = self.members(session_id).await?;
                e2ee.encrypt_for(self, session_id, &members, content)
                    .await?
            }
        };
        self.send(NewMessage {
            session_id: session_id.to_owned(),
            kind,
            payload,
            attachments,
            client_msg_id: None,
        })
        .await
    }

    /// Waits (at most one request timeout) until this connection's keys were published (or
    /// publishing failed: see [`Event::Error`]). Sends wait for it by themselves.
    pub async fn keys_published(&self) {
        let mut rx = self.inner.published.subscribe();
        let _ = tokio::time::timeout(self.inner.config.request_timeout, rx.wait_for(|p| *p)).await;
    }

    /// The member user ids of a chat: a group's from `getGroup`, a direct chat's from the
    /// sessions list.
    pub async fn members(&self, session_id: &str) -> Result<Vec<String>, ClientError> {
        if session_id.starts_with("g_") {
            let g = self.get_group(session_id).await?;
            return Ok(g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["userId"].as_str().map(str::to_owned))
                .collect());
        }
        let known = {
            let st = self.inner.state.lock().unwrap();
            st.sessions.get(session_id).map(|s| s.members.clone())
        };
        if let Some(members) = known.filter(|m| !m.is_empty()) {
            return Ok(members);
        }
        let sessions = self.list_sessions().await?;
        let mut st = self.inner.state.lock().unwrap();
        for s in &sessions {
            st.sessions
                .entry(s.session_id.clone())
                .or_insert_with(|| s.clone());
        }
        sessions
            .into_iter()
            .find(|s| s.session_id == session_id)
            .map(|s| s.members)
            .ok_or_else(|| ClientError::Unexpected {
                status: 0,
                body: format!("session {session_id} is not among this user's sessions"),
            })
    }

    /// Whether messages are end-to-end encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.inner.e2ee.is_some()
    }

    fn e2ee(&self) -> Result<&Arc<E2ee>, ClientError> {
        self.inner
            .e2ee
            .as_ref()
            .ok_or_else(|| ClientError::Store("end-to-end encryption is not configured".into()))
    }

    /// The safety number with `user_id` and both sides' device fingerprints.
    pub async fn safety(&self, user_id: &str) -> Result<SafetyInfo, ClientError> {
        self.e2ee()?.safety(self, user_id).await
    }

    /// Whether every device of `user_id` presents the identity key pinned for it (false after
    /// an [`Event::IdentityChanged`], until [`Client::accept_identity`]).
    pub async fn is_trusted(&self, user_id: &str) -> Result<bool, ClientError> {
        self.e2ee()?.is_trusted(self, user_id).await
    }

    /// Trusts the identity keys `user_id`'s devices present now (after a reported change);
    /// room keys from them are accepted from then on. Returns how many devices were pinned.
    pub async fn accept_identity(&self, user_id: &str) -> Result<usize, ClientError> {
        let n = self.e2ee()?.accept_identity(self, user_id).await?;
        // Device messages left in the queue because of the change are read now.
        self.request_sync();
        Ok(n)
    }

    /// `uploadKeys`: how many unclaimed one-time keys this device has now. (An encrypting
    /// client publishes its keys by itself on every connect.)
    pub async fn upload_keys(
        &self,
        identity_key: &str,
        signing_key: &str,
        one_time_keys: &[crate::crypto::OneTimeKey],
        fallback_key: Option<&crate::crypto::OneTimeKey>,
    ) -> Result<u32, ClientError> {
        let req = protocol::upload_keys(identity_key, signing_key, one_time_keys, fallback_key);
        let r = self.call(req, true).await?;
        Ok(r["oneTimeKeyCount"].as_u64().unwrap_or(0) as u32)
    }

    /// `claimKeys` (not retried: a lost reply used up one-time keys, and a retry claims new ones
    /// anyway).
    pub async fn claim_keys(
        &self,
        user_id: &str,
        device_ids: Option<&[String]>,
    ) -> Result<Vec<protocol::KeyBundle>, ClientError> {
        e2ee::claim_keys(self, user_id, device_ids).await
    }

    /// `listDevices`.
    pub async fn list_devices(
        &self,
        user_ids: &[String],
    ) -> Result<Vec<protocol::UserDevice>, ClientError> {
        e2ee::list_devices(self, user_ids).await
    }

    /// `removeDevice`.
    pub async fn remove_device(&self, device_id: &str) -> Result<(), ClientError> {
        self.call(protocol::remove_device(device_id), true)
            .await
            .map(drop)
    }

    /// `approveDeviceLink` (from the primary device): the device linked.
    pub async fn approve_device_link(
        &self,
        code: &str,
    ) -> Result<protocol::LinkedDevice, ClientError> {
        protocol::parse(
            self.call(protocol::approve_device_link(code), false)
                .await?,
        )
    }

    /// `sendToDevice` (1 to 100 messages).
    pub async fn send_to_device(
        &self,
        messages: &[protocol::OutgoingDeviceMessage],
    ) -> Result<protocol::SendToDeviceResult, ClientError> {
        e2ee::send_to_device(self, messages).await
    }

    /// `readDeviceMessages` (an encrypting client reads its queue by itself).
    pub async fn read_device_messages(
        &self,
        limit: Option<u32>,
    ) -> Result<protocol::DeviceMessagesPage, ClientError> {
        e2ee::read_device_messages(self, limit).await
    }

    /// `ackDeviceMessages`: how many were removed from the queue.
    pub async fn ack_device_messages(&self, ids: &[String]) -> Result<u64, ClientError> {
        e2ee::ack_device_messages(self, ids).await
    }

    /// `sendMessage` with a payload already encoded.
    pub async fn send_message(
        &self,
        session_id: &str,
        kind: protocol::MessageKind,
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
    ///
    /// Sends to one session go out one at a time, in the order they were called: the next
    /// waits for the previous one's reply (or final failure). API Gateway runs the frames of a
    /// connection concurrently, so two `sendMessage` frames in flight at once could be stored
    /// in either order; waiting is what keeps a sender's order (docs/protocol.md). Sends to
    /// different sessions still overlap.
    pub async fn send(&self, message: NewMessage) -> Result<protocol::SentMessage, ClientError> {
        let _turn = self.inner.send_order.turn(&message.session_id).await;
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
                self.inner.emit_revealed(st, out.emit);
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
        status: Receipt,
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

    /// `setRegistrationPin`: two-step verification; re-registering the number will need `pin`
    /// (six digits). The primary needs no `current_pin`; a companion changes an existing PIN
    /// only with it (`PIN_REQUIRED` without, `WRONG_PIN` when wrong, `FORBIDDEN` when the
    /// account has none). Retried after a lost reply only without `current_pin`: once the PIN
    /// changed, the old one would be a wrong try.
    pub async fn set_registration_pin(
        &self,
        pin: &str,
        current_pin: Option<&str>,
    ) -> Result<(), ClientError> {
        let req = protocol::set_registration_pin(pin, current_pin);
        self.call(req, current_pin.is_none()).await.map(drop)
    }

    /// `removeRegistrationPin`: two-step verification off; from a companion only with
    /// `current_pin` (as [`Self::set_registration_pin`]).
    pub async fn remove_registration_pin(
        &self,
        current_pin: Option<&str>,
    ) -> Result<(), ClientError> {
        let req = protocol::remove_registration_pin(current_pin);
        self.call(req, current_pin.is_none()).await.map(drop)
    }

    /// `checkRegistrationPin`: whether `pin` is the account's registration PIN (any device; the
    /// reminder that keeps the user remembering it). `NOT_FOUND` when the account has none;
    /// wrong PINs count against the account's daily budget (`LIMIT_EXCEEDED` past it), so not
    /// retried after a lost reply.
    pub async fn check_registration_pin(&self, pin: &str) -> Result<bool, ClientError> {
        let r = self
            .call(protocol::check_registration_pin(pin), false)
            .await?;
        Ok(r["correct"] == serde_json::Value::Bool(true))
    }
}

/// Status posts.
impl Client {
    /// `postStatus`: returns `(statusId, expiresAt)`. With end-to-end encryption the text is
    /// encrypted once for the audience (`getStatusAudience`, every page) and this user's other
    /// devices. Not retried after a lost reply (a retry would post it twice).
    pub async fn post_status(
        &self,
        text: &str,
        attachments: &[String],
    ) -> Result<(String, String), ClientError> {
        let payload = match self.inner.e2ee.clone() {
            Some(e2ee) => {
                self.keys_published().await;
                let audience = self.status_audience().await?;
                e2ee.encrypt_status(self, &audience, text).await?
            }
            None => crate::payload::encode(text),
        };
        let r = self
            .call(protocol::post_status(&payload, attachments), false)
            .await?;
        Ok((
            protocol::field_str(&r, "statusId")?,
            protocol::field_str(&r, "expiresAt")?,
        ))
    }

    /// `getStatusAudience`, every page: who may see this user's statuses (its contacts, or
    /// nobody).
    pub async fn status_audience(&self) -> Result<Vec<String>, ClientError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let r = self
                .call(
                    protocol::status_audience(out.last().map(String::as_str)),
                    true,
                )
                .await?;
            let page: Vec<String> = protocol::parse(r["userIds"].clone())?;
            let done = page.is_empty() || !protocol::field_bool(&r, "hasMore");
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// `viewStatus`, every page: the user's live statuses this user may see, oldest first,
    /// each with its `text` when it could be decrypted (a key that has not arrived yet is
    /// looked for once in this device's queue).
    pub async fn view_status(
        &self,
        user_id: &str,
    ) -> Result<Vec<protocol::StatusPost>, ClientError> {
        let mut out: Vec<protocol::StatusPost> = Vec::new();
        loop {
            let after = out.last().map(|s| s.status_id.clone());
            let r = self
                .call(protocol::view_status(user_id, after.as_deref()), true)
                .await?;
            let page: Vec<protocol::StatusPost> = protocol::parse(r["statuses"].clone())?;
            let done = page.is_empty() || !protocol::field_bool(&r, "hasMore");
            out.extend(page);
            if done {
                break;
            }
        }
        let Some(e2ee) = self.inner.e2ee.clone() else {
            for s in &mut out {
                s.text = crate::payload::decode(&s.payload);
            }
            return Ok(out);
        };
        let mut drained = false;
        for s in &mut out {
            let mut result = e2ee.decrypt_status(s);
            if matches!(result, Err(CryptoError::UnknownSession { .. })) && !drained {
                drained = true;
                let session = self
                    .session(Instant::now() + self.inner.config.request_timeout)
                    .await?;
                self.inner.drain_device_queue(&session).await?;
                result = e2ee.decrypt_status(s);
            }
            match result {
                Ok(text) => s.text = Some(text),
                Err(e) => tracing::debug!(status_id = s.status_id, "status not decrypted: {e}"),
            }
        }
        Ok(out)
    }

    /// `getStatusViewers`, every page: who viewed one of this user's statuses, and when first.
    pub async fn status_viewers(
        &self,
        status_id: &str,
    ) -> Result<Vec<protocol::StatusViewer>, ClientError> {
        let mut out: Vec<protocol::StatusViewer> = Vec::new();
        loop {
            let after = out.last().map(|v| v.user_id.clone());
            let r = self
                .call(protocol::status_viewers(status_id, after.as_deref()), true)
                .await?;
            let page: Vec<protocol::StatusViewer> = protocol::parse(r["viewers"].clone())?;
            let done = page.is_empty() || !protocol::field_bool(&r, "hasMore");
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// `removeStatus`.
    pub async fn remove_status(&self, status_id: &str) -> Result<(), ClientError> {
        self.call(protocol::remove_status(status_id), true)
            .await
            .map(drop)
    }
}

impl Caller for Client {
    fn call(&self, req: Request) -> impl Future<Output = Result<Value, ClientError>> + Send {
        Client::call(self, req, true)
    }
}

/// Requests on one connection, without retries (the driver's own calls).
struct OnConnection<'a> {
    inner: &'a Inner,
    session: &'a Arc<Session>,
}

impl Caller for OnConnection<'_> {
    fn call(&self, req: Request) -> impl Future<Output = Result<Value, ClientError>> + Send {
        self.inner.request(self.session, req)
    }
}

fn open_e2ee(config: &ClientConfig) -> Result<Option<Arc<E2ee>>, ClientError> {
    let Some(enc) = &config.encryption else {
        return Ok(None);
    };
    E2ee::open(&enc.dir, &enc.user_id, &enc.device_id)
        .map(|e| Some(Arc::new(e)))
        .map_err(|e| ClientError::Store(e.to_string()))
}

/// What a message turns into once read: the message with its text, nothing yet (held for its
/// key), or an undecryptable notice.
fn reveal(e2ee: Option<&E2ee>, events: Vec<Event>) -> (Vec<Event>, bool) {
    let mut out = Vec::with_capacity(events.len());
    let mut held = false;
    for event in events {
        let Event::Message(mut m) = event else {
            out.push(event);
            continue;
        };
        match e2ee {
            None => {
                if matches!(m.kind, MessageKind::Text | MessageKind::Media) {
                    m.text = crate::payload::decode(&m.payload);
                }
                out.push(Event::Message(m));
            }
            Some(e2ee) => match e2ee.decrypt(&m) {
                Decrypted::Text(t) => {
                    m.text = Some(t);
                    out.push(Event::Message(m));
                }
                Decrypted::NotEncrypted => out.push(Event::Message(m)),
                Decrypted::Held => held = true,
                Decrypted::Failed(reason) => out.push(Event::Undecryptable { message: m, reason }),
            },
        }
    }
    (out, held)
}

/// The events for messages a room key released.
fn released(list: Vec<(Message, Decrypted)>) -> Vec<Event> {
    list.into_iter()
        .filter_map(|(mut m, d)| match d {
            Decrypted::Text(t) => {
                m.text = Some(t);
                Some(Event::Message(m))
            }
            Decrypted::NotEncrypted => Some(Event::Message(m)),
            Decrypted::Held => None,
            Decrypted::Failed(reason) => Some(Event::Undecryptable { message: m, reason }),
        })
        .collect()
}

impl Inner {
    fn emit(&self, events: Vec<Event>) {
        let st = self.state.lock().unwrap();
        emit(&st.events, events);
    }

    /// Emits what the tracker let through, decrypted; returns whether a message was held for
    /// its key.
    fn emit_revealed(&self, st: &State, events: Vec<Event>) -> bool {
        let (events, held) = reveal(self.e2ee.as_deref(), events);
        emit(&st.events, events);
        held
    }

    /// Offers a message and emits what it produces; returns (cursor moved, gap, held).
    fn offer(&self, m: &Message, event: Event, origin: Origin) -> (bool, bool, bool) {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        let out = st.tracker.offer(m, event, origin);
        let held = self.emit_revealed(st, out.emit);
        (out.advanced, out.gap, held)
    }

    /// Publishes this device's keys (once per connection); sends wait for it.
    async fn publish_keys(&self, session: &Arc<Session>) {
        let Some(e2ee) = &self.e2ee else {
            self.published.send_replace(true);
            return;
        };
        let c = OnConnection {
            inner: self,
            session,
        };
        if let Err(e) = e2ee.publish_keys(&c).await {
            self.emit(vec![Event::Error(format!("publishing keys failed: {e}"))]);
        }
        self.published.send_replace(true);
    }

    /// Handles one device message; returns whether it may be acknowledged.
    async fn on_device_message(
        &self,
        c: &impl Caller,
        dm: &DeviceMessage,
    ) -> Result<bool, ClientError> {
        let Some(e2ee) = &self.e2ee else {
            self.emit(vec![Event::DeviceMessage(dm.clone())]);
            return Ok(false);
        };
        match e2ee.receive_device_message(c, dm).await {
            Ok(None) => Ok(true),
            Ok(Some(list)) => {
                let events = released(list);
                if !events.is_empty() {
                    let mut st = self.state.lock().unwrap();
                    for e in &events {
                        if let Event::Message(m) = e {
                            st.reported.remove(&m.msg_id);
                        }
                    }
                    emit(&st.events, events);
                }
                Ok(true)
            }
            Err(ClientError::Crypto(CryptoError::IdentityChanged { user, device, .. })) => {
                self.emit(vec![Event::IdentityChanged {
                    user_id: user,
                    device_id: device,
                }]);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads and handles this device's whole queue, acknowledging what was handled.
    async fn drain_device_queue(&self, session: &Arc<Session>) -> Result<(), ClientError> {
        if self.e2ee.is_none() {
            return Ok(());
        }
        let c = OnConnection {
            inner: self,
            session,
        };
        loop {
            let page = e2ee::read_device_messages(&c, Some(100)).await?;
            let mut acks = Vec::new();
            for dm in &page.messages {
                if self.on_device_message(&c, dm).await? {
                    acks.push(dm.id.clone());
                }
            }
            if !acks.is_empty() {
                e2ee::ack_device_messages(&c, &acks).await?;
            }
            if !page.has_more || acks.is_empty() {
                return Ok(());
            }
        }
    }

    /// After the device queue was read: every message still held for its key is reported
    /// as undecryptable (once; it is still emitted if the key comes later).
    fn report_held(&self) {
        let Some(e2ee) = &self.e2ee else { return };
        let held = e2ee.held();
        let mut st = self.state.lock().unwrap();
        let mut events = Vec::new();
        for m in held {
            if st.reported.insert(m.msg_id.clone()) {
                events.push(Event::Undecryptable {
                    message: m,
                    reason: "its room key has not arrived".into(),
                });
            }
        }
        emit(&st.events, events);
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
        let req = protocol::ack(session_id, &msg_id, Receipt::Delivered);
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

    /// Catches up every session (and first and last, the device queue: room keys).
    async fn sync_all(&self, session: &Arc<Session>) -> Result<(), ClientError> {
        self.drain_device_queue(session).await?;
        self.sync_sessions(session).await?;
        self.drain_device_queue(session).await?;
        self.report_held();
        Ok(())
    }

    async fn sync_sessions(&self, session: &Arc<Session>) -> Result<(), ClientError> {
        let sessions = protocol::all_sessions(|req| self.request(session, req)).await?;
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
                    let req = protocol::ack(&s.session_id, &msg_id, Receipt::Delivered);
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
        if let (Event::DeviceMessage(dm), Some(_)) = (&event, &self.e2ee) {
            let c = OnConnection {
                inner: self,
                session,
            };
            match self.on_device_message(&c, dm).await {
                Ok(true) => {
                    if let Err(e) =
                        e2ee::ack_device_messages(&c, std::slice::from_ref(&dm.id)).await
                    {
                        tracing::debug!("ackDeviceMessages failed: {e}");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!("handling a device message failed: {e}"),
            }
            return;
        }
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
        let (advanced, gap, held) = self.offer(&m, event, Origin::Live);
        let mut advanced = advanced;
        if gap {
            match self.read_session(session, &m.session_id).await {
                Ok(()) => advanced = true,
                Err(e) => tracing::debug!("reading a gap failed: {e}"),
            }
        }
        if held || gap {
            // The room key is queued before the message is sent: read the queue now.
            match self.drain_device_queue(session).await {
                Ok(()) => self.report_held(),
                Err(e) => tracing::debug!("reading the device queue failed: {e}"),
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
    Session::connect(&config.ws_url, &config.api_key).await
}

/// What the reconnect backoff waits with: [`TokioTimer`] sleeps; a test passes a clock of its
/// own, which sees every delay the client chose and decides when each wait ends, so the schedule
/// is checked without measuring time.
pub trait BackoffTimer: Send + Sync + std::fmt::Debug {
    /// Waits `delay` before the next connection attempt.
    fn sleep(&self, delay: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The default [`BackoffTimer`]: `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

impl BackoffTimer for TokioTimer {
    fn sleep(&self, delay: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(delay))
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
                            _ = cfg.backoff_timer.sleep(wait) => continue,
                            _ = until_stopped(&mut stop) => break false,
                        }
                    }
                }
            }
        };
        let session = Arc::new(session);
        let up_since = Instant::now();
        inner.published.send_replace(false);
        inner.conn.send_replace(Conn::Up(session.clone()));
        inner.emit(vec![Event::Connected]);
        tokio::select! {
            () = inner.publish_keys(&session) => {}
            _ = until_stopped(&mut stop) => {
                session.close().await;
                break 'outer false;
            }
        }

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
                _ = tick => crate::heartbeat::spawn(session.clone(), cfg.request_timeout),
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
            _ = cfg.backoff_timer.sleep(wait) => {}
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

/// A queue per session for [`Client::send`]: tokio's mutex hands its lock out first come, first
/// served, so sends to one session are made in the order they were called.
#[derive(Default)]
struct SendOrder {
    sessions: Mutex<std::collections::HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

impl SendOrder {
    /// Waits for `session_id`'s earlier sends; the turn lasts as long as the guard.
    async fn turn(&self, session_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut sessions = self.sessions.lock().unwrap();
            // Forget the sessions nobody is sending to (their lock is gone).
            sessions.retain(|_, w| w.strong_count() > 0);
            match sessions.get(session_id).and_then(std::sync::Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    sessions.insert(session_id.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use super::SendOrder;
    use futures_util::FutureExt as _;

    #[tokio::test]
    async fn sends_to_one_session_take_turns_in_call_order() {
        let order = SendOrder::default();
        let first = order.turn("s").await;
        // Another session is not held up.
        assert!(order.turn("t").now_or_never().is_some());
        let mut second = Box::pin(order.turn("s"));
        assert!(
            second.as_mut().now_or_never().is_none(),
            "waits for the first"
        );
        let mut third = Box::pin(order.turn("s"));
        assert!(third.as_mut().now_or_never().is_none());
        drop(first);
        let second = second.await;
        // First come, first served: the third still waits for the second.
        assert!(third.as_mut().now_or_never().is_none());
        drop(second);
        third.await;
    }

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
