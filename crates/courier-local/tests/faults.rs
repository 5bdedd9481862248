//! The fault switch (`/_local/faults` on the HTTP port), without AWS: a one-shot kill of a
//! function's busy processes after so many delivered posts, and management calls that fail at
//! random. The fixture's functions are all `examples/echo_fn.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use courier_local::{LocalCloud, LocalCloudConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

mod common;

struct TestCloud {
    cloud: LocalCloud,
    http: reqwest::Client,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start() -> TestCloud {
    let dir = std::env::temp_dir().join(format!("courier-local-faults-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = LocalCloudConfig {
        template: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/template.yaml"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        bin_dir: common::echo_fn_dir(),
        state_dir: dir.join("state"),
        no_emulators: true,
        ..Default::default()
    };
    TestCloud {
        cloud: courier_local::start(config).await.unwrap(),
        http: reqwest::Client::new(),
        _dir: TempDir(dir),
    }
}

impl TestCloud {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.cloud.http_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn faults(&self) -> Value {
        self.call(reqwest::Method::GET, "/_local/faults", None)
            .await
            .1
    }

    /// Status and body of one management call on a connection id.
    async fn manage(&self, method: reqwest::Method, id: &str) -> (u16, String) {
        let r = self
            .http
            .request(
                method,
                format!("{}/test/@connections/{id}", self.cloud.management_url()),
            )
            .body("hi")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

#[tokio::test]
async fn kill_after_posts_kills_the_busy_process_once() {
    let t = start().await;
    use reqwest::Method;

    // Refusals: unknown function, zero posts, not JSON.
    let (s, b) = t
        .call(
            Method::POST,
            "/_local/faults/kill-after-posts",
            Some(json!({"function": "NoSuchFunction", "posts": 1})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = t
        .call(
            Method::POST,
            "/_local/faults/kill-after-posts",
            Some(json!({"function": "PosterFunction", "posts": 0})),
        )
        .await;
    assert_eq!(s, 400);
    let r = t
        .http
        .post(format!(
            "{}/_local/faults/kill-after-posts",
            t.cloud.http_url()
        ))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let (s, b) = t
        .call(
            Method::POST,
            "/_local/faults/kill-after-posts",
            Some(json!({"function": "PosterFunction", "posts": 2})),
        )
        .await;
    assert_eq!((s, b), (200, json!({"armed": true})));
    assert_eq!(
        t.faults().await["killAfterPosts"],
        json!({"function": "PosterFunction", "posts": 2, "remaining": 2})
    );

    let url = format!("{}/test?token=good", t.cloud.ws_url());
    let (mut ws, _) = connect_async(url).await.unwrap();
    ws.send(Message::text(
        json!({"action": "post", "count": 5}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, "1");
    assert_eq!(next_text(&mut ws).await, "2");
    // The process died after the 2nd post: the invocation failed as a crash does.
    let err: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(err["message"], "Internal server error");

    let f = t.faults().await;
    assert_eq!(f["killAfterPosts"], Value::Null, "{f}");
    assert_eq!(f["kills"], 1, "{f}");
    assert_eq!(
        f["lastKill"],
        json!({"function": "PosterFunction", "processes": 1})
    );

    // One-shot: the next invocation (a new process) posts everything.
    ws.send(Message::text(
        json!({"action": "post", "count": 3}).to_string(),
    ))
    .await
    .unwrap();
    for i in ["1", "2", "3"] {
        assert_eq!(next_text(&mut ws).await, i);
    }
    assert_eq!(t.cloud.function_stats("PosterFunction").unwrap().spawned, 2);

    // Posts before arming do not count; posts that fail do not count either.
    t.cloud
        .faults()
        .arm_kill_after_posts("PosterFunction", 3)
        .unwrap();
    assert_eq!(t.manage(Method::POST, "gone=").await.0, 410);
    ws.send(Message::text(
        json!({"action": "post", "count": 2}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, "1");
    assert_eq!(next_text(&mut ws).await, "2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.faults().await["killAfterPosts"]["remaining"], 1);
    let (s, f) = t.call(Method::DELETE, "/_local/faults", None).await;
    assert_eq!(s, 200);
    assert_eq!(f["killAfterPosts"], Value::Null);
    let _ = ws.close(None).await;
    let TestCloud { cloud, _dir, .. } = t;
    cloud.shutdown().await;
}

#[tokio::test]
async fn management_calls_fail_at_the_set_rate() {
    let t = start().await;
    use reqwest::Method;

    let (s, _) = t
        .call(
            Method::POST,
            "/_local/faults/management",
            Some(json!({"failureRate": 2.0})),
        )
        .await;
    assert_eq!(s, 400);

    let (s, b) = t
        .call(
            Method::POST,
            "/_local/faults/management",
            Some(json!({"failureRate": 1.0})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["management"]["failureRate"], 1.0);
    for m in [Method::POST, Method::GET, Method::DELETE] {
        let (status, body) = t.manage(m, "abc=").await;
        assert_eq!(status, 500);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"message": "Internal server error"})
        );
    }

    t.call(
        Method::POST,
        "/_local/faults/management",
        Some(json!({"failureRate": 0.25})),
    )
    .await;
    let mut failed = 0;
    for _ in 0..400 {
        match t.manage(Method::GET, "abc=").await.0 {
            500 => failed += 1,
            410 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // 400 draws at p = 0.25: mean 100, sd about 8.7.
    assert!((50..=150).contains(&failed), "{failed} of 400 failed");
    let f = t.faults().await;
    assert_eq!(f["management"]["failureRate"], 0.25);
    assert_eq!(f["management"]["injectedErrors"], 3 + failed);

    let (s, f) = t.call(Method::DELETE, "/_local/faults", None).await;
    assert_eq!(s, 200);
    assert_eq!(f["management"]["failureRate"], 0.0);
    for _ in 0..50 {
        assert_eq!(t.manage(Method::GET, "abc=").await.0, 410);
    }
    let TestCloud { cloud, _dir, .. } = t;
    cloud.shutdown().await;
}
