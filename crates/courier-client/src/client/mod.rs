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

mod actions;
mod driver;
mod sync;

pub use driver::{BackoffTimer, TokioTimer};

/// The `reason` of an [`crate::Event::Undecryptable`] for a message whose room key had not
/// arrived when the sync ended: it may still come (the message is then emitted after all), so a
/// client that stops soon after should read the message again next time rather than skip it.
pub const ROOM_KEY_PENDING: &str = "its room key has not arrived";
use driver::{SendOrder, drive, open, until_stopped};
use sync::{check_alive, emit, open_e2ee};

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
