//! The load: register, pair, connect, send open-loop, receive and acknowledge, drain.

use crate::cloud::Stack;
use crate::emf;
use crate::{Args, emf::Cost};
use anyhow::{Context, Result, bail};
use courier_client::{AccountsClient, Session};
use courier_core::protocol::{Credentials, DeviceInfo, Platform};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// Set-up requests (registration, connects) in flight at once: the local cloud runs at most
/// 8 processes per function.
const SETUP_CONCURRENCY: usize = 8;

/// The longest a drain waits, even while deliveries still trickle in.
const MAX_DRAIN: Duration = Duration::from_secs(300);

/// What the load measured.
pub struct Results {
    /// Messages whose `sendMessage` succeeded.
    pub sent: u64,
    /// `sendMessage` requests that failed or timed out.
    pub send_errors: u64,
    /// The first send error, for the report.
    pub first_send_error: Option<String>,
    /// Deliveries of sent messages (first receipt per message and recipient).
    pub received: u64,
    /// Receipts beyond the first of a message by a recipient.
    pub duplicates: u64,
    /// Deliveries that never happened (a sent message some recipient never got).
    pub lost: u64,
    /// Recipients per message (1 one-to-one; members - 1 in a group).
    pub recipients: u64,
    /// Time from send until the last recipient had the message, microseconds.
    pub completion: Histogram<u64>,
    /// Messages received that no successful send reported (a send whose reply was lost).
    pub unexpected: u64,
    /// Seconds from the first send to the last send reply.
    pub send_secs: f64,
    /// Seconds from the first send to the last first receipt.
    pub delivery_secs: f64,
    /// Delivery latency, microseconds.
    pub latency: Histogram<u64>,
    /// `sendMessage` reply time, microseconds.
    pub send_reply: Histogram<u64>,
    /// `ackMessages` requests sent, and those that failed.
    pub acks: u64,
    /// Failed acks.
    pub ack_errors: u64,
    /// `status` events received (the peers' receipts).
    pub status_events: u64,
    /// The cost by operation during the load, if the logs were readable.
    pub cost: Option<BTreeMap<String, Cost>>,
    /// One-to-one sessions.
    pub sessions: usize,
    /// The local cloud's memory during the measured load (`--memory-every`).
    pub memory: Option<Vec<crate::mem::Sample>>,
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// A message payload carrying its send time: `{"t":<µs since the epoch>,"n":<i>,"p":"xx.."}`
/// padded to `bytes`.
pub fn payload(sent_us: i64, n: u64, bytes: usize) -> String {
    let head = format!("{{\"t\":{sent_us},\"n\":{n},\"p\":\"");
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// The send time in a payload made by [`payload`].
pub fn sent_us(payload: &str) -> Option<i64> {
    serde_json::from_str::<Value>(payload).ok()?["t"].as_i64()
}

#[derive(Default)]
struct Received {
    /// Receipts per (message, recipient client).
    counts: HashMap<(String, usize), u32>,
    /// Distinct recipients that have each message.
    receivers: HashMap<String, u32>,
    last_first_receipt: Option<Instant>,
}

struct Stats {
    /// Bumped on every first receipt and every ack done: the drain waits while it moves.
    progress: AtomicU64,
    sent: Mutex<HashSet<String>>,
    send_errors: AtomicU64,
    first_send_error: Mutex<Option<String>>,
    last_send_reply: Mutex<Option<Instant>>,
    received: Mutex<Received>,
    latency: Mutex<Histogram<u64>>,
    completion: Mutex<Histogram<u64>>,
    send_reply: Mutex<Histogram<u64>>,
    /// Recipients per message.
    expected: u32,
    acks: AtomicU64,
    ack_errors: AtomicU64,
    acks_pending: AtomicI64,
    status_events: AtomicU64,
}

impl Stats {
    fn new(expected: u32) -> Arc<Stats> {
        Arc::new(Stats {
            expected,
            completion: Mutex::new(histogram()),
            progress: AtomicU64::new(0),
            sent: Mutex::default(),
            send_errors: AtomicU64::new(0),
            first_send_error: Mutex::default(),
            last_send_reply: Mutex::default(),
            received: Mutex::default(),
            latency: Mutex::new(histogram()),
            send_reply: Mutex::new(histogram()),
            acks: AtomicU64::new(0),
            ack_errors: AtomicU64::new(0),
            acks_pending: AtomicI64::new(0),
            status_events: AtomicU64::new(0),
        })
    }

    /// Sent messages not received yet.
    fn missing(&self) -> usize {
        let sent = self.sent.lock().unwrap();
        let r = self.received.lock().unwrap();
        sent.iter()
            .filter(|id| r.receivers.get(*id).copied().unwrap_or(0) < self.expected)
            .count()
    }
}

/// The phase (warm-up, then the measured load) that events are counted in.
type Current = Arc<std::sync::RwLock<Arc<Stats>>>;

/// One simulated client: a user with one device and one open connection.
struct Client {
    session: Arc<Session>,
    chat: String,
}

/// A fresh, valid US number (random, so runs on a long-lived stack do not collide).
fn fresh_phone() -> String {
    const AREAS: [u32; 8] = [415, 650, 212, 310, 617, 206, 312, 512];
    loop {
        let r = uuid::Uuid::new_v4().as_u128();
        let area = AREAS[(r % 8) as usize];
        let exchange = 200 + ((r >> 8) % 800) as u32;
        let line = ((r >> 24) % 10_000) as u32;
        let phone = format!("+1{area}{exchange}{line:04}");
        if courier_core::PhoneNumber::parse(&phone).is_ok() {
            return phone;
        }
    }
}

async fn code_for(http: &reqwest::Client, base: &str, phone: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<Value> = http
            .get(format!("{base}/_local/outbox/sms"))
            .send()
            .await?
            .error_for_status()
            .context("GET /_local/outbox/sms (the benchmark needs the local cloud's SMS outbox)")?
            .json()
            .await?;
        let code = all
            .iter()
            .rev()
            .filter(|m| m["phoneNumber"] == phone)
            .find_map(|m| courier_core::memory::extract_code(m["message"].as_str()?));
        if let Some(code) = code {
            return Ok(code);
        }
        if Instant::now() > deadline {
            bail!("no SMS code for {phone} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs an HTTP API call again while the stage's throttle answers 429 (the template's 25
/// requests a second per route, as on AWS; a set-up of hundreds of users goes over it), waiting a
/// second between tries, for at most a minute.
async fn throttled<T, F, Fut>(call: F) -> Result<T, courier_client::ClientError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, courier_client::ClientError>>,
{
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(e) if is_throttled(&e) && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(1000 + rand_ms())).await;
            }
            other => return other,
        }
    }
}

fn is_throttled(e: &courier_client::ClientError) -> bool {
    matches!(
        e,
        courier_client::ClientError::Unexpected { status: 429, .. }
    ) || e.code() == Some(courier_core::ErrorCode::LimitExceeded)
}

/// Up to 250 ms of jitter, so that throttled set-up calls do not come back in step.
fn rand_ms() -> u64 {
    u64::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_micros())
            % 250,
    )
}

pub async fn register(
    stack: &Stack,
    n: usize,
    test_numbers: Option<&courier_core::usecases::register_account::TestNumbers>,
) -> Result<Vec<Credentials>> {
    let accounts = AccountsClient::new(&stack.http_url);
    let http = reqwest::Client::new();
    let limit = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (accounts, http, limit) = (accounts.clone(), http.clone(), limit.clone());
        let base = stack.http_url.clone();
        let test = test_numbers.cloned();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let phone = match &test {
                Some(t) => t
                    .random_number()
                    .context("no valid number under the test prefix")?,
                None => fresh_phone(),
            };
            throttled(|| accounts.register(&phone))
                .await
                .with_context(|| format!("registerAccount {phone}"))?;
            let code = match &test {
                Some(t) => t.code.expose().to_owned(),
                None => code_for(&http, &base, &phone).await?,
            };
            let device = DeviceInfo {
                name: format!("bench {i}"),
                platform: Platform::Cli,
            };
            let creds = throttled(|| accounts.verify(&phone, &code, device.clone()))
                .await
                .with_context(|| format!("validateAccount {phone}"))?;
            anyhow::Ok((i, creds))
        });
    }
    let mut out: Vec<Option<Credentials>> = vec![None; n];
    while let Some(r) = tasks.join_next().await {
        let (i, c) = r??;
        out[i] = Some(c);
    }
    Ok(out
        .into_iter()
        .map(|c| c.expect("every task ran"))
        .collect())
}

pub async fn connect(stack: &Stack, creds: &[Credentials]) -> Result<Vec<Arc<Session>>> {
    let limit = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for (i, c) in creds.iter().enumerate() {
        let (ws, key, limit) = (stack.ws_url.clone(), c.api_key.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let s = Session::connect(&ws, &key)
                .await
                .with_context(|| format!("connecting client {i}"))?;
            anyhow::Ok((i, Arc::new(s)))
        });
    }
    let mut out: Vec<Option<Arc<Session>>> = vec![None; creds.len()];
    while let Some(r) = tasks.join_next().await {
        let (i, s) = r??;
        out[i] = Some(s);
    }
    Ok(out
        .into_iter()
        .map(|s| s.expect("every task ran"))
        .collect())
}

/// Reads one client's events: records each `message` (latency on first receipt, duplicates
/// after) and queues its `delivered` receipt.
fn spawn_reader(
    session: Arc<Session>,
    client: usize,
    current: Current,
    acks: Option<mpsc::UnboundedSender<Ack>>,
) {
    tokio::spawn(async move {
        while let Some(ev) = session.next_event().await {
            let received_us = now_us();
            let at = Instant::now();
            let stats = current.read().unwrap().clone();
            match ev["event"].as_str() {
                Some("message") => {
                    let m = &ev["message"];
                    let Some(msg_id) = m["msgId"].as_str() else {
                        continue;
                    };
                    let (first, last_recipient) = {
                        let mut r = stats.received.lock().unwrap();
                        let n = r.counts.entry((msg_id.to_owned(), client)).or_insert(0);
                        *n += 1;
                        let first = *n == 1;
                        let mut last_recipient = false;
                        if first {
                            r.last_first_receipt = Some(at);
                            let k = r.receivers.entry(msg_id.to_owned()).or_insert(0);
                            *k += 1;
                            last_recipient = *k == stats.expected;
                            stats.progress.fetch_add(1, Ordering::Relaxed);
                        }
                        (first, last_recipient)
                    };
                    if first && let Some(sent) = m["payload"].as_str().and_then(sent_us) {
                        let us = u64::try_from(received_us - sent).unwrap_or(0).max(1);
                        stats.latency.lock().unwrap().saturating_record(us);
                        if last_recipient {
                            stats.completion.lock().unwrap().saturating_record(us);
                        }
                    }
                    let Some(acks) = &acks else {
                        continue;
                    };
                    let (Some(session_id), Some(seq)) =
                        (m["sessionId"].as_str(), m["seq"].as_u64())
                    else {
                        continue;
                    };
                    stats.acks_pending.fetch_add(1, Ordering::SeqCst);
                    let _ = acks.send(Ack {
                        stats: stats.clone(),
                        session_id: session_id.to_owned(),
                        msg_id: msg_id.to_owned(),
                        seq,
                    });
                }
                Some("status") => {
                    stats.status_events.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
}

struct Ack {
    /// The phase the message was received in.
    stats: Arc<Stats>,
    session_id: String,
    msg_id: String,
    seq: u64,
}

/// Acknowledges `delivered` as a client does: one `ackMessages` per received message, except that
/// receipts already queued behind one in flight are folded into one ack of the latest (the
/// watermark covers every message up to it).
fn spawn_acker(session: Arc<Session>, mut rx: mpsc::UnboundedReceiver<Ack>, timeout: Duration) {
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Per session: the latest receipt, and how many queued receipts (by phase) it covers.
            let mut latest: BTreeMap<String, (u64, String, Arc<Stats>)> = BTreeMap::new();
            let mut covered: Vec<Arc<Stats>> = Vec::new();
            let mut fold = |a: Ack| {
                covered.push(a.stats.clone());
                let e = latest
                    .entry(a.session_id)
                    .or_insert((0, String::new(), a.stats.clone()));
                if a.seq >= e.0 {
                    *e = (a.seq, a.msg_id, a.stats);
                }
            };
            fold(first);
            while let Ok(a) = rx.try_recv() {
                fold(a);
            }
            for (session_id, (_, msg_id, stats)) in latest {
                let r = session
                    .request_with_timeout(
                        "ackMessages",
                        json!({"sessionId": session_id, "msgId": msg_id, "status": "delivered"}),
                        timeout,
                    )
                    .await;
                stats.acks.fetch_add(1, Ordering::Relaxed);
                if r.is_err() {
                    stats.ack_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            for stats in covered {
                stats.acks_pending.fetch_sub(1, Ordering::SeqCst);
                stats.progress.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Sends `total` messages open-loop at `rate` per second, round-robin over the clients, each to
/// the client's one-to-one session; returns when every send has its reply (or failed).
async fn send_phase(
    clients: &[Arc<Client>],
    stats: &Arc<Stats>,
    args: &Args,
    total: u64,
    first_n: u64,
) -> Instant {
    let n = clients.len();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = JoinSet::new();
    let started = Instant::now();
    for i in first_n..first_n + total {
        tick.tick().await;
        let client = clients[(i as usize) % n].clone();
        let stats = stats.clone();
        let (bytes, timeout) = (args.payload_bytes, args.request_timeout);
        sends.spawn(async move {
            let t0 = Instant::now();
            let params = json!({
                "sessionId": client.chat,
                "clientMsgId": format!("b{i}"),
                "type": "text",
                "payload": payload(now_us(), i, bytes),
            });
            match client
                .session
                .request_with_timeout("sendMessage", params, timeout)
                .await
            {
                Ok(r) => {
                    let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                    stats
                        .send_reply
                        .lock()
                        .unwrap()
                        .saturating_record(us.max(1));
                    *stats.last_send_reply.lock().unwrap() = Some(Instant::now());
                    match r["msgId"].as_str() {
                        Some(id) => {
                            stats.sent.lock().unwrap().insert(id.to_owned());
                        }
                        None => {
                            stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) => {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    stats
                        .first_send_error
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| e.to_string());
                }
            }
        });
    }
    while sends.join_next().await.is_some() {}
    started
}

/// Waits until every sent message was received and every receipt acknowledged, or until
/// nothing moved for `quiet` (at most [`MAX_DRAIN`]). The number of messages still missing.
async fn drain(stats: &Stats, quiet: Duration) -> usize {
    let hard = Instant::now() + MAX_DRAIN;
    let mut last = (stats.progress.load(Ordering::Relaxed), Instant::now());
    loop {
        let missing = stats.missing();
        if missing == 0 && stats.acks_pending.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let p = stats.progress.load(Ordering::Relaxed);
        if p != last.0 {
            last = (p, Instant::now());
        }
        if last.1.elapsed() > quiet || Instant::now() > hard {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the whole load against `stack`.
pub async fn run(args: &Args, stack: &Stack) -> Result<Results> {
    let n = args.clients;
    let t = Instant::now();
    let test_numbers = courier_core::usecases::register_account::TestNumbers::from_config(
        args.test_phone_prefix.as_deref().unwrap_or_default(),
        args.test_phone_code.as_deref().unwrap_or_default(),
    )
    .map_err(anyhow::Error::msg)?;
    let creds = register(stack, n, test_numbers.as_ref()).await?;
    eprintln!("registered {n} users in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let sessions = connect(stack, &creds).await?;
    eprintln!(
        "connected {n} clients in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut chats = vec![String::new(); n];
    if args.group {
        let others: Vec<_> = creds[1..].iter().map(|c| c.user_id.to_string()).collect();
        let r = sessions[0]
            .request_with_timeout(
                "initiateGroupChatSession",
                json!({"name": "bench", "members": others}),
                args.request_timeout,
            )
            .await
            .context("initiateGroupChatSession")?;
        let id = r["groupId"]
            .as_str()
            .context("initiateGroupChatSession returned no groupId")?;
        chats.iter_mut().for_each(|c| *c = id.to_owned());
        eprintln!("created a group of {n}");
    }
    for pair in 0..if args.group { 0 } else { n / 2 } {
        let (a, b) = (2 * pair, 2 * pair + 1);
        let r = sessions[a]
            .request_with_timeout(
                "initiateDirectChatSession",
                json!({"peerUserId": creds[b].user_id}),
                args.request_timeout,
            )
            .await
            .with_context(|| format!("initiateDirectChatSession for pair {pair}"))?;
        let id = r["sessionId"]
            .as_str()
            .context("initiateDirectChatSession returned no sessionId")?
            .to_owned();
        chats[a] = id.clone();
        chats[b] = id;
    }
    if !args.group {
        eprintln!("opened {} one-to-one sessions", n / 2);
    }
    let expected = if args.group { n as u32 - 1 } else { 1 };

    let clients: Vec<Arc<Client>> = sessions
        .into_iter()
        .zip(chats)
        .map(|(session, chat)| Arc::new(Client { session, chat }))
        .collect();
    let warmup = Stats::new(expected);
    let current: Current = Arc::new(std::sync::RwLock::new(warmup.clone()));
    for (i, c) in clients.iter().enumerate() {
        if args.no_receipts {
            spawn_reader(c.session.clone(), i, current.clone(), None);
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            spawn_reader(c.session.clone(), i, current.clone(), Some(tx));
            spawn_acker(c.session.clone(), rx, args.request_timeout);
        }
    }

    // Warm-up at the same rate (cold function processes, DynamoDB Local's JIT), not measured.
    let warmup_total = (args.rate * args.warmup.as_secs_f64()).round() as u64;
    if warmup_total > 0 {
        eprintln!(
            "warming up: {warmup_total} messages at {} msg/s (not measured)",
            args.rate
        );
        send_phase(&clients, &warmup, args, warmup_total, 0).await;
        let missing = drain(&warmup, args.drain).await;
        if missing > 0 {
            eprintln!("warm-up: {missing} messages still undelivered; measuring anyway");
        }
    }
    // Let the stragglers settle, then mark the logs: what is appended from here on is the
    // measured load's cost.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let marks = match &stack.logs_dir {
        Some(dir) => Some(emf::mark(dir)?),
        None => None,
    };
    let stats = Stats::new(expected);
    *current.write().unwrap() = stats.clone();

    let total = (args.rate * args.duration.as_secs_f64()).round() as u64;
    eprintln!(
        "sending {total} messages at {} msg/s for {:.1} s from {n} clients",
        args.rate,
        args.duration.as_secs_f64()
    );
    let sampling = stack
        .pid()
        .zip(args.memory_every)
        .map(|(pid, every)| (pid, Instant::now(), crate::mem::Sampler::start(pid, every)));
    let started = send_phase(&clients, &stats, args, total, warmup_total).await;
    eprintln!(
        "sent in {:.1} s; waiting for the last deliveries and receipts",
        started.elapsed().as_secs_f64()
    );
    let missing = drain(&stats, args.drain).await;
    if missing > 0 {
        eprintln!(
            "drain: nothing moved for {:.0} s with {missing} messages undelivered",
            args.drain.as_secs_f64()
        );
    }
    let memory = sampling.map(|(pid, t0, s)| s.stop(pid, t0));
    // Late duplicates (a retried fan-out) and the last EMF lines reaching the log files.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cost = match &marks {
        Some(m) => Some(emf::since(m)?),
        None => None,
    };
    for c in &clients {
        c.session.close().await;
    }
    // Let the $disconnect invocations finish before the cloud is stopped.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sent = stats.sent.lock().unwrap().clone();
    let received = std::mem::take(&mut *stats.received.lock().unwrap());
    let lost = sent
        .iter()
        .map(|id| u64::from(expected - received.receivers.get(id).copied().unwrap_or(0)))
        .sum();
    let unexpected = received
        .receivers
        .keys()
        .filter(|id| !sent.contains(*id))
        .count() as u64;
    let duplicates = received
        .counts
        .values()
        .map(|c| u64::from(c.saturating_sub(1)))
        .sum();
    let first_receipts = received
        .counts
        .keys()
        .filter(|(id, _)| sent.contains(id))
        .count() as u64;
    let send_end = stats.last_send_reply.lock().unwrap().unwrap_or(started);
    let delivery_end = received.last_first_receipt.unwrap_or(started);
    let latency = stats.latency.lock().unwrap().clone();
    let completion = stats.completion.lock().unwrap().clone();
    let send_reply = stats.send_reply.lock().unwrap().clone();
    Ok(Results {
        sent: sent.len() as u64,
        send_errors: stats.send_errors.load(Ordering::Relaxed),
        first_send_error: stats.first_send_error.lock().unwrap().clone(),
        received: first_receipts,
        duplicates,
        lost,
        unexpected,
        send_secs: send_end.duration_since(started).as_secs_f64(),
        delivery_secs: delivery_end.duration_since(started).as_secs_f64(),
        latency,
        completion,
        recipients: u64::from(expected),
        send_reply,
        acks: stats.acks.load(Ordering::Relaxed),
        ack_errors: stats.ack_errors.load(Ordering::Relaxed),
        status_events: stats.status_events.load(Ordering::Relaxed),
        cost,
        sessions: if args.group { 1 } else { n / 2 },
        memory,
    })
}

#[cfg(test)]
mod tests;
