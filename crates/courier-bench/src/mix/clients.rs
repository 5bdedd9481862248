//! What each simulated client runs beside its sends: a reader that records what arrives and an
//! acker that acknowledges it, as a phone would.

use super::*;

/// What one device received, per session in arrival order (first receipts only).
#[derive(Default)]
pub(super) struct Inbox {
    pub(super) by_session: HashMap<String, Vec<String>>,
    pub(super) seen: HashSet<String>,
    pub(super) duplicates: u64,
}

/// A message the stack acknowledged: where, at what position, from whom.
#[derive(Debug, Clone)]
pub(super) struct SentRec {
    pub(super) chat: usize,
    pub(super) seq: u64,
    pub(super) sender: usize,
    /// Recipients it must reach.
    pub(super) want: u32,
}

pub(super) struct State {
    pub(super) inboxes: Vec<Mutex<Inbox>>,
    /// Distinct recipients that have each message.
    pub(super) receivers: Mutex<HashMap<String, u32>>,
    pub(super) sent: Mutex<HashMap<String, SentRec>>,
    pub(super) progress: AtomicU64,
    pub(super) acks: AtomicU64,
    pub(super) ack_errors: AtomicU64,
    pub(super) acks_pending: AtomicI64,
    pub(super) latency: Mutex<Histogram<u64>>,
    /// Per kind: send until the last recipient has it.
    pub(super) completion: Mutex<BTreeMap<Kind, Histogram<u64>>>,
    pub(super) send_reply: Mutex<Histogram<u64>>,
    pub(super) send_errors: AtomicU64,
    pub(super) first_send_error: Mutex<Option<String>>,
    pub(super) media_sent: AtomicU64,
    pub(super) last_first_receipt: Mutex<Option<Instant>>,
    /// Recipients per chat (members - 1) and kind, by session id.
    pub(super) chat_of: HashMap<String, (usize, u32, Kind)>,
}

impl State {
    /// Counts a send that got no `msgId` (keeping the first reason for the report).
    pub(super) fn send_failed(&self, why: String) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        self.first_send_error.lock().unwrap().get_or_insert(why);
    }

    pub(super) fn missing(&self) -> usize {
        let sent = self.sent.lock().unwrap();
        let r = self.receivers.lock().unwrap();
        sent.iter()
            .filter(|(id, s)| r.get(*id).copied().unwrap_or(0) < s.want)
            .count()
    }
}

pub(super) fn spawn_reader(
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
pub(super) fn spawn_acker(
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
pub(super) async fn upload(
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
