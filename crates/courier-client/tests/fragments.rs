//! Messages over 32 KB go out as fragmented messages (API Gateway closes the connection with
//! 1009 on a frame over 32 KB), checked frame by frame against a server that records them.

mod common;

use common::{FakeServer, KEY, SESSION};
use courier_client::session::MAX_FRAME_PAYLOAD;
use courier_client::{Client, ClientConfig, Event, NewMessage, Session};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

#[tokio::test]
async fn a_65536_character_payload_is_sent_in_frames_of_at_most_32000_bytes() {
    let server = FakeServer::start().await;
    let session = Session::connect(&server.url, KEY).await.unwrap();
    let text = "x".repeat(65_536);
    let sent = session
        .send_message(&NewMessage::text(SESSION, &text), "c-big")
        .await
        .unwrap();
    assert_eq!(sent.seq, 1);
    assert_eq!(server.messages()[0]["payload"], text.as_str());

    let frames = server.frames().remove(0);
    assert!(frames.len() >= 3, "{frames:?}");
    assert_eq!(frames[0].opcode, OpCode::Data(Data::Text));
    assert!(!frames[0].fin);
    for f in &frames[1..] {
        assert_eq!(f.opcode, OpCode::Data(Data::Continue));
    }
    assert!(frames[..frames.len() - 1].iter().all(|f| !f.fin));
    assert!(frames.last().unwrap().fin);
    assert!(frames.iter().all(|f| f.len as usize <= MAX_FRAME_PAYLOAD));
    let total: u64 = frames.iter().map(|f| f.len).sum();
    assert!(total > 65_536);

    // Small messages stay one frame.
    session.list_sessions().await.unwrap();
    let frames = server.frames().remove(0);
    let last = frames.last().unwrap();
    assert_eq!((last.opcode, last.fin), (OpCode::Data(Data::Text), true));
}

#[tokio::test]
async fn multibyte_text_is_split_at_character_boundaries() {
    let server = FakeServer::start().await;
    let session = Session::connect(&server.url, KEY).await.unwrap();
    // 3 and 4 byte characters, 105 KB in all (under the 128 KB message limit).
    let text: String = "€😀".repeat(15_000);
    assert_eq!(text.chars().count(), 30_000);
    session
        .send_message(&NewMessage::text(SESSION, &text), "c-utf8")
        .await
        .unwrap();
    assert_eq!(server.messages()[0]["payload"], text.as_str());
    let frames = server.frames().remove(0);
    assert!(frames.len() >= 4 && frames.iter().all(|f| f.len as usize <= MAX_FRAME_PAYLOAD));
}

#[tokio::test]
async fn the_server_closes_on_one_frame_over_32_kb() {
    // Why fragmentation is needed: the same payload as a single frame is refused.
    let server = FakeServer::start().await;
    let session = Session::connect(&server.url, KEY).await.unwrap();
    let frame =
        serde_json::json!({"action": "sendMessage", "requestId": "r1", "sessionId": SESSION,
        "clientMsgId": "c-1", "type": "text", "payload": "x".repeat(40_000)})
        .to_string();
    session
        .send_text_fragmented(&frame, usize::MAX)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("the server drops the connection");
    assert_eq!(server.lock().closes, vec![1009]);
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn the_client_sends_large_messages_too() {
    let server = FakeServer::start().await;
    let (client, mut events) = Client::connect(ClientConfig::new(&server.url, KEY))
        .await
        .unwrap();
    common::until(&mut events, |e| *e == Event::Synced).await;
    let text = "y".repeat(65_536);
    let sent = client.send_text(SESSION, &text).await.unwrap();
    assert_eq!(sent.seq, 1);
    assert_eq!(server.messages()[0]["payload"], text.as_str());
    assert!(server.lock().closes.is_empty());
}
