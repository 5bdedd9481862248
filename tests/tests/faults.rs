//! Faults on the local cloud, each under a modest load of real resilient clients
//! (`courier_client::Client`, plain text): function processes killed at random, DynamoDB Local
//! restarted mid-run, sockets dropped without a close frame, the management API and SNS failing
//! a share of calls. After each, the invariants of design.md are checked as a user would see
//! them:
//!
//! - every send that was acknowledged (got a `msgId`) is stored once, and every other member's
//!   device got it, once (the client's events carry no msgId twice), in session order;
//! - per-session order is the same on every device (each device's seqs rise);
//! - no message was stored twice (a retried send reused its `clientMsgId`); a send that failed
//!   failed with a clear error and is stored at most once;
//! - every client is connected again at the end, on its own (the test never reconnects one),
//!   and a last round of messages sent after the fault reaches everyone.
//!
//! Each test starts its own cloud (the fault switch is global) and they run one at a time, so
//! the figures they print (`cargo test -p courier-tests --test faults -- --nocapture`) are not
//! mixed up.

use courier_client::protocol::{Event, Message, PushPlatform, SentMessage};
use courier_client::{Client, ClientConfig, ClientError, Session};
use courier_core::ErrorCode;
use courier_core::protocol::Credentials;
use courier_tests::{TestCloud, eventually};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test at a time: each starts a cloud with two emulators on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Users in the load: pairs (0,1), (2,3), ... chat directly; 0..GROUP are also in one group.
const USERS: usize = 12;
const GROUP: usize = 6;
/// Messages each member sends into each of its sessions during the fault.
const PER_SESSION: usize = 10;
/// Pause between one device's sends, so the load spans the fault.
const PACE: Duration = Duration::from_millis(60);
/// How long the devices get to catch up once the fault is over.
const SETTLE: Duration = Duration::from_secs(40);

#[derive(Default)]
struct Log {
    messages: Vec<Message>,
    connected: usize,
    disconnected: usize,
}

struct Device {
    creds: Credentials,
    client: Client,
    log: Arc<Mutex<Log>>,
}

fn config(cloud: &TestCloud, creds: &Credentials) -> ClientConfig {
    let mut c = ClientConfig::new(&cloud.ws_url, &creds.api_key);
    // Short, so a request whose function was killed is sent again soon.
    c.request_timeout = Duration::from_secs(3);
    c.backoff_max = Duration::from_secs(2);
    c.retry_deadline = Some(Duration::from_secs(45));
    c
}

async fn device(cloud: &TestCloud, creds: Credentials) -> Device {
    let (client, mut events) = Client::connect(config(cloud, &creds)).await.unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let mut l = l.lock().unwrap();
            match e {
                Event::Message(m) => l.messages.push(m),
                Event::Connected => l.connected += 1,
                Event::Disconnected => l.disconnected += 1,
                _ => {}
            }
        }
    });
    Device { creds, client, log }
}

struct World {
    devices: Vec<Device>,
    /// Session id and its members (device indexes).
    sessions: Vec<(String, Vec<usize>)>,
}

impl World {
    async fn new(cloud: &TestCloud) -> World {
        let mut devices = Vec::new();
        for _ in 0..USERS {
            devices.push(device(cloud, cloud.sign_up().await).await);
        }
        let mut sessions = Vec::new();
        for i in (0..USERS).step_by(2) {
            let chat = devices[i]
                .client
                .initiate_direct_chat(&devices[i + 1].creds.user_id, None)
                .await
                .unwrap();
            sessions.push((chat.session_id, vec![i, i + 1]));
        }
        let members: Vec<String> = (1..GROUP)
            .map(|i| devices[i].creds.user_id.clone())
            .collect();
        let group = devices[0]
            .client
            .create_group("faults", None, &members)
            .await
            .unwrap();
        sessions.push((group, (0..GROUP).collect()));
        World { devices, sessions }
    }

    fn sessions_of(&self, i: usize) -> Vec<String> {
        self.sessions
            .iter()
            .filter(|(_, m)| m.contains(&i))
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// One send and how it ended.
struct Sent {
    session: String,
    sender: usize,
    text: String,
    result: Result<SentMessage, ClientError>,
    started: Instant,
    took: Duration,
}

/// How far a load is: a fault can wait for a share of its sends to be done, so it strikes
/// while the rest are in flight, however fast or slow the machine is.
#[derive(Clone)]
struct Progress {
    done: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
    changed: Arc<tokio::sync::Notify>,
}

impl Progress {
    /// Resolves once `share` (0 to 1) of the sends have ended.
    async fn reached(&self, share: f64) {
        let want = (self.total as f64 * share).ceil() as usize;
        loop {
            let changed = self.changed.notified();
            if self.done.load(std::sync::atomic::Ordering::SeqCst) >= want {
                return;
            }
            changed.await;
        }
    }
}

/// Every member sends `per_session` messages into each of its sessions, paced, all devices at
/// once; `fault` runs beside them, told how far the load is. Returns every send.
async fn load<F: std::future::Future<Output = ()>>(
    world: &World,
    round: &str,
    per_session: usize,
    fault: impl FnOnce(Progress) -> F,
) -> Vec<Sent> {
    let progress = Progress {
        done: Arc::default(),
        total: (0..world.devices.len())
            .map(|i| world.sessions_of(i).len() * per_session)
            .sum(),
        changed: Arc::default(),
    };
    let mut tasks = Vec::new();
    for (i, d) in world.devices.iter().enumerate() {
        let client = d.client.clone();
        let sessions = world.sessions_of(i);
        let round = round.to_string();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for k in 0..per_session {
                for s in &sessions {
                    let text = format!("{round}|{s}|{i}|{k}");
                    let started = Instant::now();
                    let result = client.send_text(s, &text).await;
                    out.push(Sent {
                        session: s.clone(),
                        sender: i,
                        text,
                        result,
                        started,
                        took: started.elapsed(),
                    });
                    progress
                        .done
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    progress.changed.notify_waiters();
                    tokio::time::sleep(PACE).await;
                }
            }
            out
        }));
    }
    let fault = fault(progress);
    let all = async {
        let mut sent = Vec::new();
        for t in tasks {
            sent.extend(t.await.unwrap());
        }
        sent
    };
    let (sent, ()) = tokio::join!(all, fault);
    sent
}

/// What the check found, for the test's own assertions and the printed figures.
#[derive(Debug, Default)]
struct Figures {
    acked: usize,
    failed: usize,
    stored: usize,
    reconnects: usize,
    slowest_send: Duration,
}

/// Every message of a session as stored, read from the start by a member's fresh connection.
async fn stored(cloud: &TestCloud, reader: &Credentials, session: &str) -> Vec<Message> {
    let s = Session::connect(&cloud.ws_url, &reader.api_key)
        .await
        .unwrap();
    let mut out: Vec<Message> = Vec::new();
    loop {
        let after = out.last().map(|m| m.msg_id.clone());
        let page = s
            .request(
                "readNewMessages",
                json!({"sessionId": session, "lastMsgId": after, "limit": 100}),
            )
            .await
            .unwrap();
        let page: courier_client::protocol::MessagesPage = serde_json::from_value(page).unwrap();
        let done = !page.has_more || page.messages.is_empty();
        out.extend(page.messages);
        if done {
            break;
        }
    }
    s.close().await;
    out
}

/// After the fault: a last round from every device, then the invariants.
async fn check(cloud: &TestCloud, world: &World, mut sent: Vec<Sent>) -> Figures {
    // Every client must be back on its own.
    let deadline = Instant::now() + SETTLE;
    while !world.devices.iter().all(|d| d.client.is_connected()) {
        assert!(
            Instant::now() < deadline,
            "clients still disconnected {SETTLE:?} after the fault: {:?}",
            world
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| !d.client.is_connected())
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more message from everyone into each of its sessions, fault-free: each must succeed,
    // and its arrival makes every device read any gap it has.
    let last = load(world, "last", 1, |_| async {}).await;
    for s in &last {
        assert!(
            s.result.is_ok(),
            "a send after the fault failed: {:?}",
            s.result
        );
    }
    sent.extend(last);

    let mut figures = Figures::default();
    let acked: Vec<(&Sent, &SentMessage)> = sent
        .iter()
        .filter_map(|s| s.result.as_ref().ok().map(|m| (s, m)))
        .collect();
    figures.acked = acked.len();
    figures.slowest_send = sent.iter().map(|s| s.took).max().unwrap_or_default();
    for s in &sent {
        if let Err(e) = &s.result {
            figures.failed += 1;
            eprintln!("send {} failed after {:?}: {e}", s.text, s.took);
            // A clear error: a timeout after the client's retries, or the API's own error
            // (never a malformed answer or a closed client). Seen: CONFLICT, when a
            // `sendMessage` was killed between its idempotency claim and its write: the claim
            // holds that clientMsgId for its 60 s lease, longer than this client retries.
            assert!(
                matches!(e, ClientError::Timeout | ClientError::Api(_)),
                "send {} failed unclearly: {e:?}",
                s.text
            );
        }
    }

    // Stored: each acknowledged message once, under its msgId, with its text; nothing twice.
    let mut by_id: HashMap<String, Message> = HashMap::new();
    for (session, members) in &world.sessions {
        let all = stored(cloud, &world.devices[members[0]].creds, session).await;
        figures.stored += all.len();
        let mut texts = HashSet::new();
        let mut seqs = HashSet::new();
        for m in &all {
            let text = courier_client::payload::decode(&m.payload).unwrap_or_default();
            assert!(texts.insert(text.clone()), "{text} is stored twice");
            assert!(seqs.insert(m.seq), "seq {} twice in {session}", m.seq);
            by_id.insert(m.msg_id.clone(), m.clone());
        }
    }
    for (s, m) in &acked {
        let st = by_id
            .get(&m.msg_id)
            .unwrap_or_else(|| panic!("acknowledged {} ({}) is not stored", s.text, m.msg_id));
        assert_eq!(
            courier_client::payload::decode(&st.payload).as_deref(),
            Some(s.text.as_str())
        );
        assert_eq!(st.seq, m.seq);
    }

    // Delivered: every device of every other member got each acknowledged message.
    let mut expected: Vec<HashSet<String>> = vec![HashSet::new(); world.devices.len()];
    for (s, m) in &acked {
        let members = &world
            .sessions
            .iter()
            .find(|(id, _)| *id == s.session)
            .unwrap()
            .1;
        for &j in members {
            if j != s.sender {
                expected[j].insert(m.msg_id.clone());
            }
        }
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        let missing: Vec<(usize, usize)> = world
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let log = d.log.lock().unwrap();
                let got: HashSet<&String> = log.messages.iter().map(|m| &m.msg_id).collect();
                (i, expected[i].iter().filter(|id| !got.contains(id)).count())
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let mut why = String::new();
            for (i, n) in &missing {
                let d = &world.devices[*i];
                let conns = cloud.presence(&d.creds.user_id).await.unwrap_or_default();
                let log = d.log.lock().unwrap();
                let mut per: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
                for m in &log.messages {
                    per.entry(&m.session_id).or_default().push(m.seq);
                }
                why.push_str(&format!(
                    "\ndevice {i}: {n} missing; connected {} times, disconnected {}, \
                     connected now {}; presence {conns:?}; got seqs {per:?}",
                    log.connected,
                    log.disconnected,
                    d.client.is_connected()
                ));
            }
            panic!("acknowledged messages not delivered within {SETTLE:?}:{why}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A moment for late duplicates to show up, then: once each, in order, nothing invented.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (i, d) in world.devices.iter().enumerate() {
        let log = d.log.lock().unwrap();
        let mut seen = HashSet::new();
        let mut last_seq: BTreeMap<&str, u64> = BTreeMap::new();
        for m in &log.messages {
            assert!(seen.insert(&m.msg_id), "device {i} got {} twice", m.msg_id);
            let prev = last_seq.insert(&m.session_id, m.seq).unwrap_or(0);
            assert!(
                m.seq > prev,
                "device {i}: seq {} after {prev} in {}",
                m.seq,
                m.session_id
            );
            let st = by_id
                .get(&m.msg_id)
                .unwrap_or_else(|| panic!("device {i} got {} which is not stored", m.msg_id));
            assert_eq!(m.payload, st.payload);
        }
        figures.reconnects += log.connected.saturating_sub(1);
    }
    figures
}

async fn faults(cloud: &TestCloud) -> Value {
    cloud.local_get("/_local/faults").await.unwrap()
}

async fn clear(cloud: &TestCloud) {
    reqwest::Client::new()
        .delete(format!("{}/_local/faults", cloud.http_url))
        .send()
        .await
        .unwrap();
}

/// What a load under one armed fault sent, and how often the fault fired.
struct UnderFault {
    sent: Vec<Sent>,
    fired: u64,
}

/// Arms a fault (`POST path body`), runs the load, reads how often it fired (the JSON pointer
/// `counter` into `GET /_local/faults`) and disarms everything.
async fn loaded_under(
    cloud: &TestCloud,
    world: &World,
    path: &str,
    body: Value,
    counter: &str,
) -> UnderFault {
    cloud.local(path, body).await.unwrap();
    let sent = load(world, "load", PER_SESSION, |_| async {}).await;
    let fired = faults(cloud)
        .await
        .pointer(counter)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no counter {counter} in GET /_local/faults"));
    clear(cloud).await;
    UnderFault { sent, fired }
}

fn report(name: &str, started: Instant, f: &Figures, extra: &str) {
    eprintln!(
        "faults/{name}: {} acknowledged, {} failed, {} stored, {} reconnects, slowest send {} ms, \
         {extra}, {:.1} s",
        f.acked,
        f.failed,
        f.stored,
        f.reconnects,
        f.slowest_send.as_millis(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn functions_killed_at_random_lose_nothing() {
    let _one = SERIAL.lock().await;
    let started = Instant::now();
    let cloud = TestCloud::start(&[]).unwrap();
    let world = World::new(&cloud).await;
    // 5% of every function's invocations: the routes, the authorizer, $connect/$disconnect and
    // the stream's fan-out.
    let kills = loaded_under(
        &cloud,
        &world,
        "/_local/faults/kill-random",
        json!({"function": "*", "rate": 0.05}),
        "/killRandom/kills",
    )
    .await;
    assert!(kills.fired > 0, "no process was killed");
    let f = check(&cloud, &world, kills.sent).await;
    report(
        "kill-random",
        started,
        &f,
        &format!("{} processes killed", kills.fired),
    );
}

#[tokio::test]
async fn dynamodb_restarted_mid_run_loses_nothing() {
    let _one = SERIAL.lock().await;
    let started = Instant::now();
    let cloud = TestCloud::start_with(&["--persistent-dynamodb"], &[]).unwrap();
    let world = World::new(&cloud).await;
    // The restart begins once a third of the sends are done, so two thirds are still to go
    // (each device paces its sends) while DynamoDB Local is down and coming back.
    let window = Arc::new(Mutex::new(None));
    let w2 = window.clone();
    let cloud_ref = &cloud;
    let restart = move |progress: Progress| async move {
        progress.reached(1.0 / 3.0).await;
        let began = Instant::now();
        let r = cloud_ref.local("/_local/restart/dynamodb", json!({})).await;
        let back = Instant::now();
        let r = r.expect("DynamoDB Local restarted");
        assert_eq!(r["restarted"], true, "{r}");
        eprintln!("faults/dynamodb: restart took {} ms", r["tookMs"]);
        *w2.lock().unwrap() = Some((began, back));
    };
    let sent = load(&world, "load", PER_SESSION, restart).await;
    let (began, back) = window.lock().unwrap().expect("the restart ran");
    // The sends that met the restart: in flight at some moment between the kill and DynamoDB
    // Local serving again.
    let met: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.started < back && s.started + s.took > began)
        .collect();
    assert!(
        !met.is_empty(),
        "no send was in flight during the restart: the test did not test it"
    );
    let met_acked = met.iter().filter(|s| s.result.is_ok()).count();
    let met_count = met.len();
    assert!(
        met_acked > 0,
        "no send in flight during the restart was acknowledged (retried through it)"
    );
    let f = check(&cloud, &world, sent).await;
    report(
        "dynamodb-restart",
        started,
        &f,
        &format!("{met_count} sends met the restart, {met_acked} of them acknowledged"),
    );
}

#[tokio::test]
async fn sockets_dropped_without_a_close_frame_recover_and_lose_nothing() {
    let _one = SERIAL.lock().await;
    let started = Instant::now();
    let cloud = TestCloud::start(&[]).unwrap();
    let world = World::new(&cloud).await;
    let dropped = Arc::new(Mutex::new(0u64));
    let d2 = dropped.clone();
    let cloud_ref = &cloud;
    // Four drops, spread over the load (a fifth of the sends done, two fifths, ...).
    let drops = move |progress: Progress| async move {
        for share in [0.2, 0.4, 0.6, 0.8] {
            progress.reached(share).await;
            let r = cloud_ref
                .local("/_local/faults/drop-sockets", json!({"share": 0.1}))
                .await
                .unwrap();
            *d2.lock().unwrap() += r["dropped"].as_u64().unwrap();
        }
    };
    let sent = load(&world, "load", PER_SESSION, drops).await;
    let dropped = *dropped.lock().unwrap();
    assert!(dropped >= 4, "{dropped} sockets dropped");
    assert_eq!(faults(&cloud).await["droppedSockets"], dropped);
    let f = check(&cloud, &world, sent).await;
    assert!(
        f.reconnects as u64 >= dropped,
        "{} reconnects for {dropped} dropped sockets",
        f.reconnects
    );
    report(
        "drop-sockets",
        started,
        &f,
        &format!("{dropped} sockets dropped"),
    );
}

#[tokio::test]
async fn a_failing_management_api_loses_nothing() {
    let _one = SERIAL.lock().await;
    let started = Instant::now();
    let cloud = TestCloud::start(&[]).unwrap();
    let world = World::new(&cloud).await;
    // 30% of POST/GET/DELETE /@connections answer 500 (the SDK retries each call up to 3
    // times; what still fails makes the fan-out fail its batch, which the stream retries).
    let failures = loaded_under(
        &cloud,
        &world,
        "/_local/faults/management",
        json!({"failureRate": 0.3}),
        "/management/injectedErrors",
    )
    .await;
    assert!(failures.fired > 0, "no management call failed");
    let f = check(&cloud, &world, failures.sent).await;
    report(
        "management",
        started,
        &f,
        &format!("{} management calls failed", failures.fired),
    );
}

#[tokio::test]
async fn failing_sns_loses_no_message_and_registration_gets_a_retryable_error() {
    let _one = SERIAL.lock().await;
    let started = Instant::now();
    let cloud = TestCloud::start(&[]).unwrap();
    let world = World::new(&cloud).await;
    // The odd users go offline with push tokens: every message to them is pushed.
    let offline: Vec<usize> = (1..USERS).step_by(2).collect();
    for &i in &offline {
        let d = &world.devices[i];
        d.client
            .register_push_token(
                PushPlatform::Apns,
                &format!("apns-{}", uuid::Uuid::new_v4()),
            )
            .await
            .unwrap();
        d.client.close().await;
    }
    for &i in &offline {
        let c = &world.devices[i].creds;
        cloud.wait_offline(&c.user_id, &c.device_id).await;
    }
    cloud
        .local("/_local/faults/sns", json!({"failureRate": 0.6}))
        .await
        .unwrap();
    // Only the online (even) users send.
    let mut sent = Vec::new();
    let mut tasks = Vec::new();
    for i in (0..USERS).step_by(2) {
        let client = world.devices[i].client.clone();
        let sessions = world.sessions_of(i);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for k in 0..PER_SESSION {
                for s in &sessions {
                    let text = format!("load|{s}|{i}|{k}");
                    let t = Instant::now();
                    let result = client.send_text(s, &text).await;
                    out.push(Sent {
                        session: s.clone(),
                        sender: i,
                        text,
                        result,
                        started: t,
                        took: t.elapsed(),
                    });
                    tokio::time::sleep(PACE).await;
                }
            }
            out
        }));
    }
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    // The fan-out pushes (and fails, and retries) while the devices are still away: wait for
    // the switch to have failed some of its calls.
    eventually("an SNS call failed", SETTLE, async || {
        (faults(&cloud).await["sns"]["injectedErrors"].as_u64() != Some(0)).then_some(())
    })
    .await;

    // A registration whose SMS cannot be sent gets a clear, retryable error; a retry works.
    cloud
        .local("/_local/faults/sns", json!({"failureRate": 1.0}))
        .await
        .unwrap();
    let phone = courier_tests::fresh_phone();
    let err = cloud.accounts().register(&phone).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Internal), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(cloud.sms_to(&phone).await.unwrap().is_empty());
    clear(&cloud).await;
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let creds = cloud
        .accounts()
        .verify(
            &phone,
            &code,
            courier_core::protocol::DeviceInfo {
                name: "phone".into(),
                platform: courier_core::protocol::Platform::Android,
            },
        )
        .await
        .unwrap();
    assert!(!creds.api_key.is_empty());

    // The offline devices come back (new clients, as after a push) and sync everything.
    let mut devices = Vec::new();
    for (i, d) in world.devices.into_iter().enumerate() {
        if offline.contains(&i) {
            devices.push(device(&cloud, d.creds).await);
        } else {
            devices.push(d);
        }
    }
    let world = World {
        devices,
        sessions: world.sessions,
    };
    let f = check(&cloud, &world, sent).await;
    let injected = faults(&cloud).await["sns"]["injectedErrors"]
        .as_u64()
        .unwrap();
    report("sns", started, &f, &format!("{injected} SNS calls failed"));
}
