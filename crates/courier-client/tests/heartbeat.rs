//! The client's application-level heartbeat against the in-process fake server: an idle
//! connection sends `listSessions` (what Courier Web's heartbeat sends) every `keepalive`, and a
//! heartbeat that gets no reply drops the connection, after which the client reconnects.

mod common;

use common::{FakeServer, Fault, KEY, until};
use courier_client::{Client, ClientConfig, Event};
use std::time::{Duration, Instant};

fn config(server: &FakeServer) -> ClientConfig {
    let mut c = ClientConfig::new(&server.url, KEY);
    c.request_timeout = Duration::from_millis(500);
    c.keepalive = Some(Duration::from_millis(200));
    c
}

fn heartbeats(server: &FakeServer) -> usize {
    server.requests(courier_client::heartbeat::ACTION).len()
}

#[tokio::test]
async fn an_idle_connection_sends_heartbeat_requests() {
    assert_eq!(courier_client::heartbeat::ACTION, "listSessions");
    let server = FakeServer::start().await;
    let (client, mut events) = Client::start(config(&server));
    until(&mut events, |e| *e == Event::Synced).await;
    let after_sync = heartbeats(&server);
    let started = Instant::now();
    while heartbeats(&server) < after_sync + 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no heartbeats on an idle connection: {} listSessions after the sync",
            heartbeats(&server) - after_sync
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Answered heartbeats keep the one connection.
    assert_eq!(server.accepted().len(), 1);
    assert!(client.is_connected());
}

#[tokio::test]
async fn an_unanswered_heartbeat_drops_the_connection_and_the_client_reconnects() {
    let server = FakeServer::start().await;
    let (client, mut events) = Client::start(config(&server));
    until(&mut events, |e| *e == Event::Synced).await;
    // The next listSessions (a heartbeat: nothing else is asked meanwhile) gets no reply.
    server.fault(courier_client::heartbeat::ACTION, &[Fault::DropReply]);
    until(&mut events, |e| *e == Event::Disconnected).await;
    let got = until(&mut events, |e| *e == Event::Synced).await;
    assert!(got.contains(&Event::Connected), "{got:?}");
    assert_eq!(server.accepted().len(), 2);
    assert!(client.is_connected());
}
