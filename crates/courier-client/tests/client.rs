//! The resilient `Client` against the in-process fake server: reconnect with backoff and sync,
//! de-duplication, send retries on the same clientMsgId, and a refused key.

mod common;

use common::{FakeServer, Fault, KEY, SESSION, eventually, next, seqs, until};
use courier_client::{
    BackoffTimer, Client, ClientConfig, ClientError, Event, MessageKind, Receipt,
};
use serde_json::json;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

fn config(server: &FakeServer) -> ClientConfig {
    let mut c = ClientConfig::new(&server.url, KEY);
    c.request_timeout = Duration::from_millis(500);
    c
}

fn watermark(server: &FakeServer) -> (u64, u64) {
    server
        .lock()
        .watermarks
        .get(SESSION)
        .copied()
        .unwrap_or_default()
}

/// A backoff clock the test controls: each wait the client starts is recorded with its delay
/// and lasts until the test releases it, so the schedule is checked without measuring time.
#[derive(Debug, Default)]
struct ManualTimer {
    waits: Mutex<VecDeque<(Duration, oneshot::Sender<()>)>>,
    started: Notify,
}

impl BackoffTimer for ManualTimer {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let (tx, rx) = oneshot::channel();
        self.waits.lock().unwrap().push_back((delay, tx));
        self.started.notify_one();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl ManualTimer {
    /// The delay of the client's next wait (it has begun and lasts until [`Self::release`]).
    async fn next_wait(&self) -> Duration {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.started.notified();
                if let Some((d, _)) = self.waits.lock().unwrap().front() {
                    return *d;
                }
                notified.await;
            }
        })
        .await
        .expect("the client waits before reconnecting")
    }

    /// Ends the oldest wait: the client may try again.
    fn release(&self) {
        let (_, tx) = self.waits.lock().unwrap().pop_front().expect("a wait");
        let _ = tx.send(());
    }
}

#[tokio::test]
async fn reconnects_with_backoff_and_syncs() {
    let server = FakeServer::start().await;
    server.peer_sends("one", false);
    let timer = Arc::new(ManualTimer::default());
    let mut c = config(&server);
    c.backoff_initial = Duration::from_millis(100);
    c.backoff_max = Duration::from_millis(800);
    // No connection here stays up long enough to reset the backoff.
    c.healthy_after = Duration::from_secs(3600);
    c.backoff_timer = timer.clone();
    let (client, mut events) = Client::connect(c).await.unwrap();

    // First connect: the stored message comes by sync and is acked delivered.
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(got[0], Event::Connected);
    assert_eq!(seqs(&got), vec![1]);
    assert_eq!(watermark(&server).0, 1);

    // A live message: emitted and acked delivered.
    server.peer_sends("two", true);
    let Event::Message(m) = next(&mut events, 5).await else {
        panic!()
    };
    assert_eq!((m.seq, m.payload.as_str()), (2, "two"));
    eventually("live ack", || watermark(&server).0 == 2).await;

    // The connection drops; two messages are stored meanwhile. The client waits its first delay,
    // drawn from [d/2, d] with d = 100 ms, and tries nothing until that wait is over; then it
    // comes back and reads them.
    server.drop_connections();
    server.peer_sends("three", false);
    server.peer_sends("four", false);
    assert_eq!(next(&mut events, 10).await, Event::Disconnected);
    let first = timer.next_wait().await;
    assert!(
        (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
        "{first:?}"
    );
    assert_eq!(
        server.lock().attempts.len(),
        1,
        "no attempt during the wait"
    );
    timer.release();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(got[0], Event::Connected);
    assert_eq!(seqs(&got), vec![3, 4]);
    assert_eq!(server.accepted().len(), 2);
    assert_eq!(watermark(&server).0, 4);
    // The second sync read from the cursor, not from the start.
    let reads = server.requests("readNewMessages");
    assert_eq!(reads.last().unwrap()["lastMsgId"], format!("{SESSION}.2"));
    assert_eq!(client.cursors().seq(SESSION), 4);

    // The server is down for a while (503 at the handshake, four times): one attempt after each
    // wait, and the delays double (the backoff was not reset) up to the 800 ms cap.
    server.lock().refuse = Some((503, 4));
    server.drop_connections();
    assert_eq!(next(&mut events, 10).await, Event::Disconnected);
    for attempt in 0..5 {
        let d = timer.next_wait().await;
        let ceiling = [200, 400, 800, 800, 800][attempt];
        assert!(
            (Duration::from_millis(ceiling / 2)..=Duration::from_millis(ceiling)).contains(&d),
            "wait {attempt}: {d:?} not within [{}, {ceiling}] ms",
            ceiling / 2
        );
        let before = server.lock().attempts.len();
        timer.release();
        if attempt < 4 {
            // Refused: the next wait starts only after this one attempt.
            timer.next_wait().await;
            let attempts = server.lock().attempts.clone();
            assert_eq!(attempts.len(), before + 1, "one attempt per wait");
            assert!(!attempts.last().unwrap().1, "refused");
        }
    }
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(got, vec![Event::Connected, Event::Synced]);
    assert!(
        server.lock().attempts.last().unwrap().1,
        "the fifth is accepted"
    );
    client.close().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .is_none_or(|e| e == Event::Disconnected)
    );
}

#[tokio::test]
async fn a_message_seen_live_and_by_sync_is_emitted_once() {
    let server = FakeServer::start().await;
    let m1 = server.peer_sends("one", false);
    // The server pushes message 1 as soon as the client connects, before its sync reads it.
    server.lock().on_connect = vec![common::message_event(&m1)];
    let (client, mut events) = Client::connect(config(&server)).await.unwrap();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(seqs(&got), vec![1]);

    // The same live event twice.
    server.lock().on_connect.clear();
    let m2 = server.peer_sends("two", true);
    server.push(&common::message_event(&m2));
    // Message 4 arrives live before 3 (which is only stored): 3 is read and both come in order.
    server.peer_sends("three", false);
    let m4 = server.peer_sends("four", true);
    server.push(&common::message_event(&m4));
    server.push(&json!({"type": "event", "event": "typing", "sessionId": SESSION}));
    let got = until(&mut events, |e| matches!(e, Event::Unknown(_))).await;
    assert_eq!(seqs(&got), vec![2, 3, 4], "{got:?}");
    eventually("ack up to 4", || watermark(&server).0 == 4).await;

    // After a reconnect, the sync finds nothing new.
    server.drop_connections();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(
        got,
        vec![Event::Disconnected, Event::Connected, Event::Synced]
    );

    // A new client that imports the cursors does not show old messages again; one without does.
    let cursors = client.cursors();
    client.close().await;
    let mut c = config(&server);
    c.cursors = cursors;
    let (_again, mut events) = Client::connect(c).await.unwrap();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert!(seqs(&got).is_empty(), "{got:?}");
    let (_fresh, mut events) = Client::connect(config(&server)).await.unwrap();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(seqs(&got), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_lost_reply_is_retried_on_the_same_client_msg_id() {
    let server = FakeServer::start().await;
    let (client, mut events) = Client::connect(config(&server)).await.unwrap();
    until(&mut events, |e| *e == Event::Synced).await;

    // The first reply is lost: the request times out and is sent again.
    server.fault("sendMessage", &[Fault::DropReply]);
    let started = Instant::now();
    let sent = client.send_text(SESSION, "hello").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    let reqs = server.requests("sendMessage");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["clientMsgId"], reqs[1]["clientMsgId"]);
    assert_eq!(server.messages().len(), 1);
    assert_eq!((sent.seq, sent.msg_id.as_str()), (1, "s_me_peer.1"));

    // The connection drops instead of a reply: the client reconnects and sends it again.
    server.fault("sendMessage", &[Fault::DropConnection, Fault::DropReply]);
    let sent = client
        .send_message(SESSION, MessageKind::Text, "again")
        .await
        .unwrap();
    let reqs = server.requests("sendMessage");
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[2]["clientMsgId"], reqs[3]["clientMsgId"]);
    assert_eq!(reqs[3]["clientMsgId"], reqs[4]["clientMsgId"]);
    assert_ne!(reqs[1]["clientMsgId"], reqs[2]["clientMsgId"]);
    assert_eq!(server.messages().len(), 2);
    assert_eq!(sent.seq, 2);
    // The sync after the reconnect read our own message, and did not show it to us.
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert!(seqs(&got).is_empty(), "{got:?}");
    assert_eq!(client.cursors().seq(SESSION), 2);

    // A protocol error is not retried.
    let err = client.send_text("s_nope", "x").await.unwrap_err();
    assert_eq!(err.code(), Some(courier_core::ErrorCode::NotFound));
    assert_eq!(server.requests("sendMessage").len(), 6);

    // Other actions, typed.
    assert_eq!(
        client.lookup_user("+14155550100").await.unwrap(),
        common::PEER
    );
    let chat = client
        .initiate_direct_chat(common::PEER, None)
        .await
        .unwrap();
    assert_eq!(chat.session_id, SESSION);
    let list = client.list_sessions().await.unwrap();
    assert_eq!(list[0].last_seq, 2);
    let page = client
        .read_new_messages(SESSION, None, Some(1))
        .await
        .unwrap();
    assert!(page.has_more && page.messages[0].payload == "hello");
    assert!(
        client
            .ack(SESSION, "s_me_peer.2", Receipt::Read)
            .await
            .unwrap()
    );
    let st = client.get_message_status("s_me_peer.2").await.unwrap();
    assert_eq!(st.status, Receipt::Sent);
}

#[tokio::test]
async fn a_refused_key_stops_the_client() {
    let server = FakeServer::start().await;
    let mut bad = config(&server);
    bad.api_key = "ck_wrong".into();
    assert!(matches!(
        Client::connect(bad).await,
        Err(ClientError::Unauthorized)
    ));

    let (client, mut events) = Client::connect(config(&server)).await.unwrap();
    until(&mut events, |e| *e == Event::Synced).await;
    // The key is revoked: the connection is closed and the next handshake refused with 401.
    server.lock().refuse = Some((401, 0));
    server.drop_connections();
    assert_eq!(next(&mut events, 5).await, Event::Disconnected);
    assert_eq!(next(&mut events, 5).await, Event::Unauthorized);
    assert!(events.recv().await.is_none(), "the channel ends");
    let before = server.lock().attempts.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.lock().attempts.len(), before, "no more attempts");
    assert!(!client.is_connected());
    assert!(matches!(
        client.send_text(SESSION, "x").await,
        Err(ClientError::Unauthorized)
    ));
}

#[tokio::test]
async fn start_offline_then_connect() {
    let server = FakeServer::start().await;
    server.lock().refuse = Some((500, 2));
    server.peer_sends("hi", false);
    let (client, mut events) = Client::start(config(&server));
    // A send made while offline waits for the connection.
    let send = tokio::spawn({
        let c = client.clone();
        async move { c.send_text(SESSION, "queued").await }
    });
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(got[0], Event::Connected);
    let sent = send.await.unwrap().unwrap();
    assert_eq!(server.messages().len(), 2);
    assert!(sent.seq == 2);
    assert_eq!(seqs(&got), vec![1]);
    assert!(client.is_connected());
}

#[tokio::test]
async fn a_function_failure_is_an_internal_error_and_sends_are_retried() {
    let server = FakeServer::start().await;
    // One request waiting: the gateway's error frame is its answer, at once.
    let session = courier_client::Session::connect(&server.url, KEY)
        .await
        .unwrap();
    server.fault("lookupUser", &[Fault::GatewayError]);
    // Internal, not a timeout: the error frame answered the request.
    let err = session.lookup_user("+14155550100").await.unwrap_err();
    assert_eq!(err.code(), Some(courier_core::ErrorCode::Internal), "{err}");
    assert_eq!(
        session.lookup_user("+14155550100").await.unwrap(),
        common::PEER
    );

    // The client retries a send that failed so, on the same clientMsgId.
    let (client, mut events) = Client::connect(config(&server)).await.unwrap();
    until(&mut events, |e| *e == Event::Synced).await;
    server.fault("sendMessage", &[Fault::GatewayError, Fault::GatewayError]);
    let sent = client.send_text(SESSION, "hi").await.unwrap();
    let reqs = server.requests("sendMessage");
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter()
            .all(|r| r["clientMsgId"] == reqs[0]["clientMsgId"])
    );
    assert_eq!((sent.seq, server.messages().len()), (1, 1));
}

#[tokio::test]
async fn a_handshake_comes_once_as_session_started() {
    let server = FakeServer::start().await;
    let (client, mut events) = Client::connect(config(&server)).await.unwrap();
    until(&mut events, |e| *e == Event::Synced).await;
    // Live, then again by a sync after a reconnect: one SessionStarted.
    server.peer_starts("x3dh-bundle", true);
    let e = next(&mut events, 5).await;
    let Event::SessionStarted {
        session_id,
        from,
        handshake,
        message,
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(
        (session_id.as_str(), from.as_str(), handshake.as_deref()),
        (SESSION, common::PEER, Some("x3dh-bundle"))
    );
    assert_eq!(message.unwrap().seq, 1);
    server.lock().watermarks.clear();
    server.drop_connections();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert_eq!(
        got,
        vec![Event::Disconnected, Event::Connected, Event::Synced]
    );
    // The sync re-acknowledged what the server had not recorded.
    assert_eq!(watermark(&server).0, 1);

    // Read by a sync only (a fresh client): SessionStarted too.
    let (_other, mut events) = Client::connect(config(&server)).await.unwrap();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert!(matches!(got[1], Event::SessionStarted { .. }), "{got:?}");

    client
        .register_push_token(courier_client::PushPlatform::Apns, "tok")
        .await
        .unwrap();
    client.delete_account().await.unwrap();
    assert!(matches!(
        client.list_sessions().await,
        Err(ClientError::Closed)
    ));
}

/// `listSessions` comes in pages (the server cuts them to a byte budget, issue 21 item 10; the
/// fake server gives two at a time): the client's sync and `list_sessions` follow `hasMore` to
/// the last session, and every session's messages are read.
#[tokio::test]
async fn sync_follows_the_pages_of_list_sessions_to_the_last_session() {
    let server = FakeServer::start().await;
    let ids: Vec<String> = (0..5).map(|i| format!("{SESSION}{i}")).collect();
    for id in &ids {
        let cid = format!("c-{id}");
        server
            .lock()
            .store(id, common::PEER, "d_peer", &cid, "text", "hi");
    }
    let (client, mut events) = Client::connect(config(&server)).await.unwrap();
    let got = until(&mut events, |e| *e == Event::Synced).await;
    let read: std::collections::BTreeSet<String> = got
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.session_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(read.into_iter().collect::<Vec<_>>(), ids, "{got:?}");
    let listed: Vec<String> = client
        .list_sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    // The fake server's own (empty) session comes first.
    let all: Vec<String> = std::iter::once(SESSION.to_owned())
        .chain(ids.clone())
        .collect();
    assert_eq!(listed, all);
    let asked = server.requests("listSessions");
    assert!(
        asked.iter().any(|r| r["after"] == all[1].as_str()),
        "pages were asked by `after`: {asked:?}"
    );
}
