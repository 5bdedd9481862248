//! The mixed load (`--mix`): many clients in one-to-one chats, groups of 10 and groups of 257 at
//! once, some messages attaching uploaded media, every recipient acknowledging `delivered`; then
//! the checks a user would make: nothing lost, nothing twice, the same order on every device,
//! every acknowledgement visible in `getMessageStatus`.
//!
//! Closed loop: `--in-flight` senders each send their next message when the last one was
//! answered, so the figure is what the stack sustains, not what was offered.

use crate::cloud::Stack;
use crate::load::{histogram, now_us, payload, sent_us};
use crate::{Args, baseline};
use anyhow::{Context, Result, bail};
use courier_client::Session;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// What kind of conversation a chat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Two users.
    Direct,
    /// A group of 10.
    Group10,
    /// A group of 257 (the largest allowed).
    Group257,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Direct => "one-to-one",
            Kind::Group10 => "group of 10",
            Kind::Group257 => "group of 257",
        }
    }
}

/// A conversation of the mix.
#[derive(Debug, Clone)]
pub struct Chat {
    /// Its session id.
    pub id: String,
    /// Client indexes of its members.
    pub members: Vec<usize>,
    /// Its kind.
    pub kind: Kind,
}

/// One planned message: who sends, where, and whether it attaches a media upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Index into the chats.
    pub chat: usize,
    /// Client index of the sender.
    pub sender: usize,
    /// Attach a freshly uploaded media object.
    pub media: bool,
}

/// A small deterministic generator (xorshift64*), so a run's plan can be repeated by `--seed`.
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Who is in which conversation, for `clients` clients: pairs (2k, 2k+1); groups of 10 over
/// consecutive clients; `big` groups of 257 over clients 0..257, 257..514, ... Every client is in
/// one pair and one group of 10 (a remainder of fewer than 10 forms no group).
pub fn topology(clients: usize, big: usize) -> Vec<(Kind, Vec<usize>)> {
    let mut out = Vec::new();
    for p in 0..clients / 2 {
        out.push((Kind::Direct, vec![2 * p, 2 * p + 1]));
    }
    for g in 0..clients / 10 {
        out.push((Kind::Group10, (10 * g..10 * g + 10).collect()));
    }
    for b in 0..big {
        out.push((Kind::Group257, (257 * b..257 * b + 257).collect()));
    }
    out
}

/// The shares of the message mix.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    /// Share of messages to groups of 10.
    pub group10: f64,
    /// Share of messages to groups of 257.
    pub group257: f64,
    /// Share of messages that attach an uploaded media object.
    pub media: f64,
}

/// `n` messages: a kind by the shares, a chat of that kind and a sender among its members,
/// uniformly.
pub fn plan(chats: &[(Kind, Vec<usize>)], n: u64, shares: Shares, rng: &mut Rng) -> Vec<Planned> {
    let of = |k: Kind| -> Vec<usize> {
        chats
            .iter()
            .enumerate()
            .filter(|(_, c)| c.0 == k)
            .map(|(i, _)| i)
            .collect()
    };
    let (direct, g10, g257) = (of(Kind::Direct), of(Kind::Group10), of(Kind::Group257));
    (0..n)
        .map(|_| {
            let r = rng.unit();
            let pool = if r < shares.group257 && !g257.is_empty() {
                &g257
            } else if r < shares.group257 + shares.group10 && !g10.is_empty() {
                &g10
            } else {
                &direct
            };
            let chat = pool[rng.below(pool.len())];
            let members = &chats[chat].1;
            Planned {
                chat,
                sender: members[rng.below(members.len())],
                media: rng.unit() < shares.media,
            }
        })
        .collect()
}

/// What one device received, per session in arrival order (first receipts only).
#[derive(Default)]
struct Inbox {
    by_session: HashMap<String, Vec<String>>,
    seen: HashSet<String>,
    duplicates: u64,
}

/// A message the stack acknowledged: where, at what position, from whom.
#[derive(Debug, Clone)]
struct SentRec {
    chat: usize,
    seq: u64,
    sender: usize,
    /// Recipients it must reach.
    want: u32,
}

struct State {
    inboxes: Vec<Mutex<Inbox>>,
    /// Distinct recipients that have each message.
    receivers: Mutex<HashMap<String, u32>>,
    sent: Mutex<HashMap<String, SentRec>>,
    progress: AtomicU64,
    acks: AtomicU64,
    ack_errors: AtomicU64,
    acks_pending: AtomicI64,
    latency: Mutex<Histogram<u64>>,
    /// Per kind: send until the last recipient has it.
    completion: Mutex<BTreeMap<Kind, Histogram<u64>>>,
    send_reply: Mutex<Histogram<u64>>,
    send_errors: AtomicU64,
    first_send_error: Mutex<Option<String>>,
    media_sent: AtomicU64,
    last_first_receipt: Mutex<Option<Instant>>,
    /// Recipients per chat (members - 1) and kind, by session id.
    chat_of: HashMap<String, (usize, u32, Kind)>,
}

impl State {
    /// Counts a send that got no `msgId` (keeping the first reason for the report).
    fn send_failed(&self, why: String) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        self.first_send_error.lock().unwrap().get_or_insert(why);
    }

    fn missing(&self) -> usize {
        let sent = self.sent.lock().unwrap();
        let r = self.receivers.lock().unwrap();
        sent.iter()
            .filter(|(id, s)| r.get(*id).copied().unwrap_or(0) < s.want)
            .count()
    }
}

fn spawn_reader(
    session: Arc<Session>,
    client: usize,
    state: Arc<State>,
    acks: mpsc::UnboundedSender<(String, String, u64)>,
) {
    tokio::spawn(async move {
        while let Some(ev) = session.next_event().await {
            if ev["event"].as_str() != Some("message") {
                continue;
            }
            let received_us = now_us();
            let m = &ev["message"];
            let (Some(msg_id), Some(session_id), Some(seq)) = (
                m["msgId"].as_str(),
                m["sessionId"].as_str(),
                m["seq"].as_u64(),
            ) else {
                continue;
            };
            let first = {
                let mut inbox = state.inboxes[client].lock().unwrap();
                if inbox.seen.insert(msg_id.to_owned()) {
                    inbox
                        .by_session
                        .entry(session_id.to_owned())
                        .or_default()
                        .push(msg_id.to_owned());
                    true
                } else {
                    inbox.duplicates += 1;
                    false
                }
            };
            if first {
                let (want, kind) = state
                    .chat_of
                    .get(session_id)
                    .map_or((0, Kind::Direct), |c| (c.1, c.2));
                let k = {
                    let mut r = state.receivers.lock().unwrap();
                    let k = r.entry(msg_id.to_owned()).or_insert(0);
                    *k += 1;
                    *k
                };
                *state.last_first_receipt.lock().unwrap() = Some(Instant::now());
                state.progress.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = m["payload"].as_str().and_then(sent_us) {
                    let us = u64::try_from(received_us - sent).unwrap_or(0).max(1);
                    state.latency.lock().unwrap().saturating_record(us);
                    if k == want {
                        state
                            .completion
                            .lock()
                            .unwrap()
                            .entry(kind)
                            .or_insert_with(histogram)
                            .saturating_record(us);
                    }
                }
            }
            state.acks_pending.fetch_add(1, Ordering::SeqCst);
            let _ = acks.send((session_id.to_owned(), msg_id.to_owned(), seq));
        }
    });
}

/// `delivered` receipts: receipts queued behind one in flight fold into one ack per session of
/// the latest message (a watermark covers everything before it), as the load generator does.
fn spawn_acker(
    session: Arc<Session>,
    mut rx: mpsc::UnboundedReceiver<(String, String, u64)>,
    state: Arc<State>,
    timeout: Duration,
) {
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut latest: BTreeMap<String, (u64, String)> = BTreeMap::new();
            let mut covered = 0i64;
            let mut fold = |(sid, mid, seq): (String, String, u64)| {
                covered += 1;
                let e = latest.entry(sid).or_insert((0, String::new()));
                if seq >= e.0 {
                    *e = (seq, mid);
                }
            };
            fold(first);
            while let Ok(a) = rx.try_recv() {
                fold(a);
            }
            for (sid, (_, mid)) in latest {
                let r = session
                    .request_with_timeout(
                        "ackMessages",
                        json!({"sessionId": sid, "msgId": mid, "status": "delivered"}),
                        timeout,
                    )
                    .await;
                state.acks.fetch_add(1, Ordering::Relaxed);
                if r.is_err() {
                    state.ack_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            state.acks_pending.fetch_sub(covered, Ordering::SeqCst);
            state.progress.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Uploads `bytes` random-looking bytes as the caller's media; its id.
async fn upload(
    session: &Session,
    http: &reqwest::Client,
    bytes: usize,
    timeout: Duration,
) -> Result<String> {
    let r = session
        .request_with_timeout(
            "createMediaUpload",
            json!({"contentType": "application/octet-stream", "size": bytes}),
            timeout,
        )
        .await
        .context("createMediaUpload")?;
    let id = r["mediaId"].as_str().context("no mediaId")?.to_owned();
    let url = r["uploadUrl"].as_str().context("no uploadUrl")?;
    let mut put = http.put(url).body(vec![0x5a; bytes]);
    if let Some(h) = r["uploadHeaders"].as_object() {
        for (k, v) in h {
            if k != "content-length" {
                put = put.header(k, v.as_str().unwrap_or_default());
            }
        }
    }
    put.send()
        .await?
        .error_for_status()
        .context("PUT to the upload URL")?;
    Ok(id)
}

/// Runs the mixed load and its checks against `stack`; prints the report and returns it as JSON.
pub async fn run(args: &Args, stack: &Stack) -> Result<Value> {
    let n = args.clients;
    let big = args.big_groups;
    if n < 10 || !n.is_multiple_of(10) || n < 257 * big {
        bail!("--mix: --clients must be a multiple of 10 and at least 257 × --big-groups");
    }
    let t = Instant::now();
    let test_numbers = courier_core::usecases::register_account::TestNumbers::from_config(
        args.test_phone_prefix.as_deref().unwrap_or_default(),
        args.test_phone_code.as_deref().unwrap_or_default(),
    )
    .map_err(anyhow::Error::msg)?;
    let creds = crate::load::register(stack, n, test_numbers.as_ref()).await?;
    eprintln!("registered {n} users in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let sessions = crate::load::connect(stack, &creds).await?;
    eprintln!(
        "connected {n} clients in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let shape = topology(n, big);
    let mut chats = Vec::with_capacity(shape.len());
    for (kind, members) in &shape {
        let first = members[0];
        let id = match kind {
            Kind::Direct => sessions[first]
                .request_with_timeout(
                    "initiateDirectChatSession",
                    json!({"peerUserId": creds[members[1]].user_id}),
                    args.request_timeout,
                )
                .await
                .context("initiateDirectChatSession")?["sessionId"]
                .as_str()
                .context("no sessionId")?
                .to_owned(),
            _ => {
                let others: Vec<&str> = members[1..]
                    .iter()
                    .map(|m| creds[*m].user_id.as_str())
                    .collect();
                sessions[first]
                    .request_with_timeout(
                        "initiateGroupChatSession",
                        json!({"name": kind.name(), "members": others}),
                        args.request_timeout,
                    )
                    .await
                    .context("initiateGroupChatSession")?["groupId"]
                    .as_str()
                    .context("no groupId")?
                    .to_owned()
            }
        };
        chats.push(Chat {
            id,
            members: members.clone(),
            kind: *kind,
        });
    }
    eprintln!(
        "opened {} one-to-one chats, {} groups of 10, {} groups of 257",
        count_kind(&chats, Kind::Direct),
        count_kind(&chats, Kind::Group10),
        count_kind(&chats, Kind::Group257)
    );
    // Group creation posts `system` messages; let them arrive before anything is counted.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let state = Arc::new(State {
        inboxes: (0..n).map(|_| Mutex::default()).collect(),
        receivers: Mutex::default(),
        sent: Mutex::default(),
        progress: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        ack_errors: AtomicU64::new(0),
        acks_pending: AtomicI64::new(0),
        latency: Mutex::new(histogram()),
        completion: Mutex::default(),
        send_reply: Mutex::new(histogram()),
        send_errors: AtomicU64::new(0),
        first_send_error: Mutex::default(),
        media_sent: AtomicU64::new(0),
        last_first_receipt: Mutex::default(),
        chat_of: chats
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), (i, c.members.len() as u32 - 1, c.kind)))
            .collect(),
    });
    for (i, s) in sessions.iter().enumerate() {
        // The group-creation events came before the state existed: drop them.
        while tokio::time::timeout(Duration::from_millis(1), s.next_event())
            .await
            .is_ok_and(|e| e.is_some())
        {}
        let (tx, rx) = mpsc::unbounded_channel();
        spawn_reader(s.clone(), i, state.clone(), tx);
        spawn_acker(s.clone(), rx, state.clone(), args.request_timeout);
    }

    let shares = Shares {
        group10: args.group10_share,
        group257: args.group257_share,
        media: args.media_share,
    };
    let mut rng = Rng::new(args.seed);
    let planned = Arc::new(plan(&shape, args.messages, shares, &mut rng));
    // The baseline runs before the load, on the same DynamoDB Local: its writes to a stream-enabled
    // table grow costly once other streams hold many records (see baseline.rs), so after 50,000
    // messages it would measure the run's leftovers, not the calls.
    let baseline = if args.baseline_messages > 0 {
        let base_plan = plan(
            &shape,
            args.baseline_messages,
            Shares {
                media: 0.0,
                ..shares
            },
            &mut rng,
        );
        let ctx = baseline::Context {
            chats: &chats,
            creds: &creds,
            stack,
            in_flight: args.in_flight,
            payload_bytes: args.payload_bytes,
            ack_share: BASELINE_ACK_SHARE,
        };
        let b = baseline::run(&ctx, &base_plan).await;
        match &b {
            Ok(b) => eprintln!(
                "baseline: {:.1} msg/s ({} DynamoDB calls in {:.1} s)",
                b.per_sec, b.calls, b.secs
            ),
            Err(e) => eprintln!("baseline failed: {e:#}"),
        }
        Some(b)
    } else {
        None
    };
    let chats = Arc::new(chats);
    let by_kind = planned.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(chats[p.chat].kind).or_insert(0u64) += 1;
        m
    });
    eprintln!(
        "sending {} messages ({}) with {} in flight, {} attaching media",
        args.messages,
        by_kind
            .iter()
            .map(|(k, v)| format!("{v} {}", k.name()))
            .collect::<Vec<_>>()
            .join(", "),
        args.in_flight,
        planned.iter().filter(|p| p.media).count()
    );
    let memory = stack
        .pid()
        .zip(args.memory_every)
        .map(|(pid, every)| (pid, crate::mem::Sampler::start(pid, every)));
    let next = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::new();
    let started = Instant::now();
    let last_reply = Arc::new(Mutex::new(started));
    let mut workers = JoinSet::new();
    for _ in 0..args.in_flight {
        let (planned, chats, sessions, state, next, http, last_reply) = (
            planned.clone(),
            chats.clone(),
            sessions.clone(),
            state.clone(),
            next.clone(),
            http.clone(),
            last_reply.clone(),
        );
        let (bytes, timeout) = (args.payload_bytes, args.request_timeout);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = planned.get(i as usize) else {
                    break;
                };
                let session = &sessions[p.sender];
                let chat = &chats[p.chat];
                let t0 = Instant::now();
                let mut params = json!({
                    "sessionId": chat.id,
                    "clientMsgId": format!("mix{i}"),
                    "type": "text",
                    "payload": payload(now_us(), i, bytes),
                });
                if p.media {
                    match upload(session, &http, 1024, timeout).await {
                        Ok(id) => {
                            params["type"] = json!("media");
                            params["attachments"] = json!([id]);
                            state.media_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            state.send_failed(format!("media upload: {e:#}"));
                            continue;
                        }
                    }
                }
                match session
                    .request_with_timeout("sendMessage", params, timeout)
                    .await
                {
                    Ok(r) => {
                        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                        state
                            .send_reply
                            .lock()
                            .unwrap()
                            .saturating_record(us.max(1));
                        *last_reply.lock().unwrap() = Instant::now();
                        match (r["msgId"].as_str(), r["seq"].as_u64()) {
                            (Some(id), Some(seq)) => {
                                state.sent.lock().unwrap().insert(
                                    id.to_owned(),
                                    SentRec {
                                        chat: p.chat,
                                        seq,
                                        sender: p.sender,
                                        want: chat.members.len() as u32 - 1,
                                    },
                                );
                            }
                            _ => state.send_failed(format!("a reply without msgId or seq: {r}")),
                        }
                    }
                    Err(e) => state.send_failed(e.to_string()),
                }
                if i > 0 && i.is_multiple_of(5000) {
                    eprintln!("  {i} sent after {:.0} s", started.elapsed().as_secs_f64());
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let send_secs = last_reply
        .lock()
        .unwrap()
        .duration_since(started)
        .as_secs_f64();
    eprintln!("sent in {send_secs:.1} s; waiting for the last deliveries and receipts");

    // Drain: every message at every recipient and every receipt answered, or nothing moved
    // for `--drain`.
    let mut last = (state.progress.load(Ordering::Relaxed), Instant::now());
    let missing = loop {
        let missing = state.missing();
        if missing == 0 && state.acks_pending.load(Ordering::SeqCst) == 0 {
            break 0;
        }
        let p = state.progress.load(Ordering::Relaxed);
        if p != last.0 {
            last = (p, Instant::now());
        }
        if last.1.elapsed() > args.drain {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let delivery_secs = state
        .last_first_receipt
        .lock()
        .unwrap()
        .map_or(0.0, |t| t.duration_since(started).as_secs_f64());
    let memory = memory.map(|(pid, s)| s.stop(pid, started));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The checks.
    let sent = state.sent.lock().unwrap().clone();
    let receivers = state.receivers.lock().unwrap().clone();
    let expected_of = |chat: usize| chats[chat].members.len() as u64 - 1;
    let lost: u64 = sent
        .iter()
        .map(|(id, s)| expected_of(s.chat) - u64::from(receivers.get(id).copied().unwrap_or(0)))
        .sum();
    let deliveries: u64 = receivers
        .iter()
        .filter(|(id, _)| sent.contains_key(*id))
        .map(|(_, k)| u64::from(*k))
        .sum();
    let unexpected = receivers
        .keys()
        .filter(|id| !sent.contains_key(*id))
        .count() as u64;
    let mut duplicates = 0;
    // Per chat, the acknowledged messages in sequence order; each seq must be unique.
    let mut canonical: Vec<Vec<(u64, String, usize)>> = vec![Vec::new(); chats.len()];
    for (id, s) in &sent {
        canonical[s.chat].push((s.seq, id.clone(), s.sender));
    }
    let mut seq_clashes = 0;
    for c in &mut canonical {
        c.sort();
        seq_clashes += c.windows(2).filter(|w| w[0].0 == w[1].0).count();
    }
    // Every member device must have seen exactly the others' messages. Live events are not
    // promised in `seq` order (docs/protocol.md: each send delivers its own message, so in a busy
    // group one can overtake another; the SDK's `Client` reorders by `seq`), so arrival order is
    // measured, not required: how many (device, chat) pairs saw a message after a later one, and
    // how many deliveries arrived after a later message of their chat.
    let (mut incomplete, mut incomplete_pairs) = (Vec::new(), 0u64);
    let mut devices_checked = 0;
    let (mut out_of_order_pairs, mut overtaken) = (0u64, 0u64);
    for (i, inbox) in state.inboxes.iter().enumerate() {
        let inbox = inbox.lock().unwrap();
        duplicates += inbox.duplicates;
        for (ci, chat) in chats.iter().enumerate() {
            if !chat.members.contains(&i) {
                continue;
            }
            devices_checked += 1;
            let want: Vec<&String> = canonical[ci]
                .iter()
                .filter(|(_, _, sender)| *sender != i)
                .map(|(_, id, _)| id)
                .collect();
            let got: Vec<&String> = inbox
                .by_session
                .get(&chat.id)
                .map(|v| v.iter().filter(|id| sent.contains_key(*id)).collect())
                .unwrap_or_default();
            let mut sorted_got = got.clone();
            sorted_got.sort_by_key(|id| sent[*id].seq);
            if want != sorted_got {
                incomplete_pairs += 1;
                if incomplete.len() >= 10 {
                    continue;
                }
                incomplete.push(format!(
                    "client {i} in {} {}: {} expected, {} received, not the same messages",
                    chat.kind.name(),
                    chat.id,
                    want.len(),
                    got.len(),
                ));
            } else if want != got {
                out_of_order_pairs += 1;
                let mut highest = 0;
                for id in &got {
                    let seq = sent[*id].seq;
                    if seq < highest {
                        overtaken += 1;
                    }
                    highest = highest.max(seq);
                }
            }
        }
    }
    // Every acknowledgement must show in getMessageStatus: the last message of every chat
    // (every recipient acknowledged it, directly or by a later one) and a sample of the rest.
    let mut to_check: Vec<(String, usize, usize)> = canonical
        .iter()
        .enumerate()
        .filter_map(|(ci, c)| c.last().map(|(_, id, s)| (id.clone(), ci, *s)))
        .collect();
    let all: Vec<(&String, &SentRec)> = sent.iter().collect();
    for _ in 0..args.status_sample.min(all.len()) {
        let (id, s) = all[rng.below(all.len())];
        to_check.push((id.clone(), s.chat, s.sender));
    }
    let mut status_mismatches = Vec::new();
    let mut status_checked = 0;
    for (id, ci, sender) in &to_check {
        let r = sessions[*sender]
            .request_with_timeout(
                "getMessageStatus",
                json!({"msgId": id}),
                args.request_timeout,
            )
            .await;
        status_checked += 1;
        let want = expected_of(*ci) as usize;
        let ok = r.as_ref().is_ok_and(|v| {
            let recips = v["recipients"].as_array().map_or(&[][..], |a| a.as_slice());
            v["status"] != "sent"
                && recips.len() == want
                && recips
                    .iter()
                    .all(|x| x["status"] == "delivered" || x["status"] == "read")
        });
        if !ok && status_mismatches.len() < 20 {
            status_mismatches.push(format!(
                "{id} in a {}: {}",
                chats[*ci].kind.name(),
                match &r {
                    Ok(v) => format!(
                        "status {} with {} recipients",
                        v["status"],
                        v["recipients"].as_array().map_or(0, Vec::len)
                    ),
                    Err(e) => e.to_string(),
                }
            ));
        }
    }

    let latency = state.latency.lock().unwrap().clone();
    let send_reply = state.send_reply.lock().unwrap().clone();
    let completion = state.completion.lock().unwrap().clone();
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let throughput = sent.len() as f64 / send_secs.max(1e-9);
    let mut report = json!({
        "clients": n,
        "chats": {"oneToOne": count_kind(&chats, Kind::Direct), "groupsOf10": count_kind(&chats, Kind::Group10), "groupsOf257": count_kind(&chats, Kind::Group257)},
        "messagesPlanned": args.messages,
        "messagesByKind": by_kind.iter().map(|(k, v)| (k.name().to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "inFlight": args.in_flight,
        "sent": sent.len(),
        "mediaMessages": state.media_sent.load(Ordering::Relaxed),
        "sendErrors": state.send_errors.load(Ordering::Relaxed),
        "firstSendError": *state.first_send_error.lock().unwrap(),
        "deliveries": deliveries,
        "lost": lost,
        "duplicates": duplicates,
        "unexpected": unexpected,
        "undeliveredAtDrainEnd": missing,
        "seqClashes": seq_clashes,
        "devicesChecked": devices_checked,
        "incompletePairs": incomplete_pairs,
        "arrivedOutOfOrderPairs": out_of_order_pairs,
        "overtakenDeliveries": overtaken,
        "incompleteExamples": incomplete,
        "acks": state.acks.load(Ordering::Relaxed),
        "ackErrors": state.ack_errors.load(Ordering::Relaxed),
        "statusChecked": status_checked,
        "statusMismatches": status_mismatches,
        "sendSecs": send_secs,
        "deliverySecs": delivery_secs,
        "messagesPerSec": throughput,
        "deliveriesPerSec": deliveries as f64 / delivery_secs.max(1e-9),
        "latencyMs": {"p50": ms(&latency, 0.5), "p90": ms(&latency, 0.9), "p99": ms(&latency, 0.99), "max": latency.max() as f64 / 1000.0},
        "sendReplyMs": {"p50": ms(&send_reply, 0.5), "p90": ms(&send_reply, 0.9), "p99": ms(&send_reply, 0.99), "max": send_reply.max() as f64 / 1000.0},
        "completionMs": completion.iter().map(|(k, h)| (k.name().to_owned(), json!({"p50": ms(h, 0.5), "p99": ms(h, 0.99), "n": h.len()}))).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(samples) = &memory {
        report["memory"] = json!(samples);
        eprintln!("\nmemory (MiB, processes):\n{}", crate::mem::table(samples));
        eprintln!("CPU while sending:\n{}", crate::mem::cpu_table(samples));
    }

    match baseline {
        Some(Ok(b)) => {
            report["dynamodbLocalBaseline"] = json!({
                "messages": b.messages,
                "secs": b.secs,
                "messagesPerSec": b.per_sec,
                "dynamodbCalls": b.calls,
                "ackShare": BASELINE_ACK_SHARE,
                "errors": b.errors,
            });
            report["fractionOfDynamodbLocal"] = json!(throughput / b.per_sec.max(1e-9));
        }
        Some(Err(e)) => report["dynamodbLocalBaseline"] = json!({"error": format!("{e:#}")}),
        None => {}
    }

    for s in sessions.iter() {
        s.close().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    print(&report);
    Ok(report)
}

/// The share of deliveries the baseline acknowledges: all of them, as if no client folded its
/// receipts (the run's clients fold some, about 2% in a 5,000-message run), so the baseline does
/// at least the run's work.
const BASELINE_ACK_SHARE: f64 = 1.0;

fn count_kind(chats: &[Chat], k: Kind) -> usize {
    chats.iter().filter(|c| c.kind == k).count()
}

fn print(r: &Value) {
    println!("\nCourier mixed load: {} clients", r["clients"]);
    println!("  chats                {}", r["chats"]);
    println!("  messages by kind     {}", r["messagesByKind"]);
    println!(
        "  sent                 {} ({} with media), {} send errors {}",
        r["sent"], r["mediaMessages"], r["sendErrors"], r["firstSendError"]
    );
    println!(
        "  deliveries           {} ; lost {} ; duplicates {} ; unexpected {}",
        r["deliveries"], r["lost"], r["duplicates"], r["unexpected"]
    );
    println!(
        "  completeness         {} devices × chats checked, {} miss or add a message; seq clashes {}",
        r["devicesChecked"], r["incompletePairs"], r["seqClashes"]
    );
    println!(
        "  arrival order        {} devices × chats got a message after a later one; {} deliveries overtaken (the SDK reorders by seq)",
        r["arrivedOutOfOrderPairs"], r["overtakenDeliveries"]
    );
    println!(
        "  receipts             {} acks ({} failed); getMessageStatus checked {}, mismatches {}",
        r["acks"],
        r["ackErrors"],
        r["statusChecked"],
        r["statusMismatches"].as_array().map_or(0, Vec::len)
    );
    println!(
        "  throughput           {:.1} msg/s sent ({:.1} s), {:.1} deliveries/s",
        r["messagesPerSec"].as_f64().unwrap_or(0.0),
        r["sendSecs"].as_f64().unwrap_or(0.0),
        r["deliveriesPerSec"].as_f64().unwrap_or(0.0)
    );
    println!("  delivery latency ms  {}", r["latencyMs"]);
    println!("  send reply ms        {}", r["sendReplyMs"]);
    println!("  until all have it    {}", r["completionMs"]);
    if let Some(b) = r.get("dynamodbLocalBaseline") {
        println!("  DynamoDB Local alone {b}");
        println!(
            "  fraction of it       {:.2}",
            r["fractionOfDynamodbLocal"].as_f64().unwrap_or(0.0)
        );
    }
    for e in r["incompleteExamples"].as_array().into_iter().flatten() {
        println!("  incomplete: {e}");
    }
    for e in r["statusMismatches"].as_array().into_iter().flatten() {
        println!("  status: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_puts_everyone_in_a_pair_and_a_group_of_ten() {
        let t = topology(1000, 2);
        let count = |k: Kind| t.iter().filter(|c| c.0 == k).count();
        assert_eq!(
            (
                count(Kind::Direct),
                count(Kind::Group10),
                count(Kind::Group257)
            ),
            (500, 100, 2)
        );
        assert!(t.iter().all(|(k, m)| m.len()
            == match k {
                Kind::Direct => 2,
                Kind::Group10 => 10,
                Kind::Group257 => 257,
            }));
        assert!(t.iter().flat_map(|c| c.1.iter()).all(|m| *m < 1000));
        assert_eq!(t.last().unwrap().1, (257..514).collect::<Vec<_>>());
    }

    #[test]
    fn the_plan_follows_the_shares_and_senders_are_members() {
        let t = topology(1000, 2);
        let shares = Shares {
            group10: 0.2,
            group257: 0.01,
            media: 0.05,
        };
        let p = plan(&t, 20_000, shares, &mut Rng::new(7));
        assert_eq!(p.len(), 20_000);
        assert!(p.iter().all(|m| t[m.chat].1.contains(&m.sender)));
        let share = |k: Kind| p.iter().filter(|m| t[m.chat].0 == k).count() as f64 / 20_000.0;
        assert!(
            (share(Kind::Group10) - 0.2).abs() < 0.02,
            "{}",
            share(Kind::Group10)
        );
        assert!((share(Kind::Group257) - 0.01).abs() < 0.005);
        let media = p.iter().filter(|m| m.media).count() as f64 / 20_000.0;
        assert!((media - 0.05).abs() < 0.01, "{media}");
        // The same seed plans the same messages.
        assert_eq!(p, plan(&t, 20_000, shares, &mut Rng::new(7)));
        assert_ne!(p, plan(&t, 20_000, shares, &mut Rng::new(8)));
    }
}
