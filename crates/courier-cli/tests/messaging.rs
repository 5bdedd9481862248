//! `courier send`, `inbox` and `chat` against the SDK's in-process fake server (the CLI is `u_me`,
//! the test plays `u_peer`).

#[path = "../../courier-client/tests/common/mod.rs"]
mod common;

use common::{FakeServer, KEY, SESSION, eventually};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// A signed-in CLI (`u_me`/`d_me`) whose device keys the fake server already holds, so the
/// fake peer can encrypt for it.
fn config_dir(server: &FakeServer, key: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("courier-cli-msg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds =
        json!({"phone": "+14155550199", "userId": "u_me", "deviceId": "d_me", "apiKey": key});
    std::fs::write(dir.join("credentials.json"), creds.to_string()).unwrap();
    server.enable_e2ee(&dir.join("crypto"));
    dir
}

/// The message at `index` was sent encrypted, and the peer decrypted `text` from it.
fn sent_encrypted(server: &FakeServer, index: usize, text: &str) {
    let payload = server.messages()[index]["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(payload.contains(r#""t":"megolm""#), "{payload}");
    assert!(!payload.contains(text), "{payload}");
    assert!(
        server.peer_received().contains(&text.to_owned()),
        "{:?}",
        server.peer_received()
    );
}

fn command(server: &FakeServer, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_courier"));
    c.args(args)
        .env("COURIER_WS_URL", &server.url)
        .env("COURIER_HTTP_URL", "http://127.0.0.1:9")
        .env("COURIER_CONFIG_DIR", dir)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .kill_on_drop(true);
    c
}

async fn courier(server: &FakeServer, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        command(server, dir, args).stdin(Stdio::null()).output(),
    )
    .await
    .expect("courier exits in time")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn state(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap()
}

fn watermarks(server: &FakeServer) -> (u64, u64) {
    server
        .lock()
        .watermarks
        .get(SESSION)
        .copied()
        .unwrap_or_default()
}

#[tokio::test]
async fn send_and_inbox() {
    let server = FakeServer::start().await;
    let dir = config_dir(&server, KEY);
    server.peer_sends("hello", false);

    let (ok, out, err) = courier(&server, &dir, &["inbox"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "[s_me_peer] 2026-11-27 12:00:00 u_peer: hello\n");
    assert_eq!(watermarks(&server).0, 1, "acked delivered");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(state(&dir)["cursors"][SESSION]["seq"], 1);

    let (ok, out, err) = courier(&server, &dir, &["inbox"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("No new messages"), "{err}");

    // lookupUser → initiateDirectChatSession → sendMessage.
    let (ok, out, err) = courier(&server, &dir, &["send", "+14155550100", "hi", "there"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "sent msgId=s_me_peer.2 seq=2 session=s_me_peer\n");
    sent_encrypted(&server, 1, "hi there");
    assert_eq!(state(&dir)["cursors"][SESSION]["seq"], 2);

    // Only the peer's new message shows, not ours.
    server.peer_sends("yo", false);
    let (ok, out, err) = courier(&server, &dir, &["inbox", "--json"]).await;
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["event"], "message");
    assert_eq!(lines[0]["text"], "yo");
    assert_eq!(lines[0]["seq"], 3);
    assert_eq!(lines[0]["sender"], "u_peer");

    let (ok, out, err) = courier(
        &server,
        &dir,
        &["send", "--session", SESSION, "--json", "by id"],
    )
    .await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["seq"].as_u64(), v["sessionId"].as_str()),
        (Some(4), Some(SESSION))
    );

    let (ok, _, err) = courier(&server, &dir, &["send", "+14155550111", "nobody"]).await;
    assert!(!ok);
    assert!(err.contains("NOT_FOUND"), "{err}");
    let (ok, _, err) = courier(&server, &dir, &["send", "+14155550100"]).await;
    assert!(!ok);
    assert!(err.contains("usage"), "{err}");
}

#[tokio::test]
async fn a_refused_key_is_reported() {
    let server = FakeServer::start().await;
    let dir = config_dir(&server, "ck_revoked");
    for args in [
        &["inbox"][..],
        &["send", "+14155550100", "x"],
        &["chat", "+14155550100"],
    ] {
        let (ok, _, err) = courier(&server, &dir, args).await;
        assert!(!ok);
        assert!(err.contains("key refused"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn chat_through_a_pipe() {
    let server = FakeServer::start().await;
    let dir = config_dir(&server, KEY);
    server.peer_sends("waiting for you", false);
    let mut child = command(&server, &dir, &["chat", "+14155550100"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    let l = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            l.lock().unwrap().push(line);
        }
    });
    let has = |want: &str| {
        let lines = lines.clone();
        let want = want.to_owned();
        move || lines.lock().unwrap().iter().any(|l| l.ends_with(&want))
    };

    // What was waiting shows, and is marked read.
    eventually("the waiting message", has("u_peer: waiting for you")).await;
    eventually("read receipt", || watermarks(&server).1 == 1).await;

    // A line typed is sent, and its ticks follow the peer's receipts.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").await.unwrap();
    eventually("sent", has("me: first ✓")).await;
    sent_encrypted(&server, 1, "first");
    let status = |s: &str| {
        json!({"type": "event", "event": "status", "sessionId": SESSION, "userId": "u_peer",
               "status": s, "upToMsgId": "s_me_peer.2", "upToSeq": 2, "at": "2026-11-27T12:00:05.000Z"})
    };
    server.push(&status("delivered"));
    eventually("delivered", has("me: first ✓✓")).await;
    server.push(&status("read"));
    eventually("read", has("me: first ✓✓ read")).await;

    // A message arriving while the chat is open shows and is marked read.
    server.peer_sends("live one", true);
    eventually("live message", has("u_peer: live one")).await;
    eventually("read receipt", || watermarks(&server).1 == 3).await;

    // EOF: the last line is sent, then the chat ends.
    stdin.write_all(b"second\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    eventually("second", has("me: second ✓")).await;
    assert_eq!(server.messages().len(), 4);
    assert_eq!(state(&dir)["cursors"][SESSION]["seq"], 4);
    let shown = lines.lock().unwrap().clone();
    assert_eq!(
        shown.iter().filter(|l| l.contains("live one")).count(),
        1,
        "{shown:?}"
    );
}
