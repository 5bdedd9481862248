//! The fault switch (`/_local/faults` on the HTTP port), without AWS: a one-shot kill of a
//! function's busy processes after so many delivered posts, management calls that fail at
//! random, random kills of processes mid-invocation, sockets dropped without a close frame, and
//! the SNS proxy failing a share of calls. The fixture's functions are all `examples/echo_fn.rs`.

use std::time::Duration;

use courier_local::fault_proxy::Service;
use courier_local::faults::Faults;
use courier_local::{LocalCloud, LocalCloudConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

mod common;

struct TestCloud {
    cloud: LocalCloud,
    http: reqwest::Client,
    _dir: common::TempDir,
}

async fn start() -> TestCloud {
    let dir = common::TempDir::new("faults");
    let mut config = LocalCloudConfig {
        no_emulators: true,
        ..common::config("template.yaml", dir.0.join("state"))
    };
    config.parameters.insert(
        "RecordFile".into(),
        dir.0.join("events.jsonl").display().to_string(),
    );
    TestCloud {
        cloud: courier_local::start(config).await.unwrap(),
        http: reqwest::Client::new(),
        _dir: dir,
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

    // Without --dynamodb-faults the functions reach DynamoDB directly: its switches refuse.
    for (path, body) in [
        ("/_local/faults/gsi-lag", json!({"lagMs": 500})),
        ("/_local/faults/transaction-conflicts", json!({"count": 1})),
    ] {
        let (s, v) = t.call(Method::POST, path, Some(body)).await;
        assert_eq!(s, 409, "{path}: {v}");
    }

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

#[tokio::test]
async fn random_kills_fail_that_share_of_invocations_as_crashes() {
    let t = start().await;
    use reqwest::Method;

    for bad in [
        json!({"function": "NoSuchFunction", "rate": 0.5}),
        json!({"function": "EchoFunction", "rate": 1.5}),
        json!({"function": "EchoFunction"}),
    ] {
        let (s, b) = t
            .call(Method::POST, "/_local/faults/kill-random", Some(bad))
            .await;
        assert_eq!(s, 400, "{b}");
    }

    let url = format!("{}/test?token=good", t.cloud.ws_url());
    let (mut ws, _) = connect_async(url).await.unwrap();
    let echo = json!({"action": "echo", "sleepMs": 60}).to_string();

    // Every invocation: each fails as a crashed Lambda does, and the pool starts a new process.
    let (s, f) = t
        .call(
            Method::POST,
            "/_local/faults/kill-random",
            Some(json!({"function": "EchoFunction", "rate": 1.0})),
        )
        .await;
    assert_eq!(s, 200, "{f}");
    assert_eq!(
        f["killRandom"]["armed"],
        json!({"function": "EchoFunction", "rate": 1.0})
    );
    let spawned = t
        .cloud
        .function_stats("EchoFunction")
        .map_or(0, |s| s.spawned);
    for _ in 0..3 {
        ws.send(Message::text(echo.clone())).await.unwrap();
        let v: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(v["message"], "Internal server error", "{v}");
    }
    assert_eq!(t.faults().await["killRandom"]["kills"], 3);
    assert_eq!(
        t.cloud.function_stats("EchoFunction").unwrap().spawned,
        spawned + 3,
        "a new process for each invocation after a kill"
    );

    // Half of them, with a seed: about half fail, the rest answer. The draws are seeded, so the
    // same invocations fail each time the switch is armed with that seed, and the count cannot
    // fall outside its range by chance. Each echo outlasts the kill window (200 ms against
    // RANDOM_KILL_WITHIN's 40), so every drawn kill strikes before the reply.
    let slow_echo = json!({"action": "echo", "sleepMs": 200}).to_string();
    let mut patterns = vec![];
    for _ in 0..2 {
        let (s, f) = t
            .call(
                Method::POST,
                "/_local/faults/kill-random",
                Some(json!({"function": "*", "rate": 0.5, "seed": 25})),
            )
            .await;
        assert_eq!(s, 200, "{f}");
        let mut pattern = vec![];
        for _ in 0..40 {
            ws.send(Message::text(slow_echo.clone())).await.unwrap();
            let v: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
            let killed = v["message"] == "Internal server error";
            if !killed {
                assert_eq!(v["route"], "echo", "{v}");
            }
            pattern.push(killed);
        }
        patterns.push(pattern);
    }
    assert_eq!(
        patterns[0], patterns[1],
        "the same seed kills the same invocations"
    );
    let failed = patterns[0].iter().filter(|k| **k).count() as u64;
    // 40 draws at p = 0.5 (mean 20, sd about 3.2); fixed by the seed, still about half.
    assert!((8..=32).contains(&failed), "{failed} of 40 killed");
    assert_eq!(t.faults().await["killRandom"]["kills"], 3 + 2 * failed);
    let (s, b) = t
        .call(
            Method::POST,
            "/_local/faults/kill-random",
            Some(json!({"function": "*", "rate": 0.5, "seed": -1})),
        )
        .await;
    assert_eq!(s, 400, "a seed is a whole number: {b}");

    // Cleared: nothing is killed.
    let (s, f) = t.call(Method::DELETE, "/_local/faults", None).await;
    assert_eq!(s, 200);
    assert_eq!(f["killRandom"]["armed"], Value::Null);
    for _ in 0..10 {
        ws.send(Message::text(echo.clone())).await.unwrap();
        let v: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(v["route"], "echo", "{v}");
    }
    assert_eq!(t.faults().await["killRandom"]["kills"], 3 + 2 * failed);
    let _ = ws.close(None).await;
    let TestCloud { cloud, _dir, .. } = t;
    cloud.shutdown().await;
}

#[tokio::test]
async fn dropped_sockets_end_without_a_close_frame_and_are_gone() {
    let t = start().await;
    use reqwest::Method;

    let (s, _) = t
        .call(
            Method::POST,
            "/_local/faults/drop-sockets",
            Some(json!({"share": 1.5})),
        )
        .await;
    assert_eq!(s, 400);

    // Ten connections, each learns its id from the echo route.
    let mut conns = Vec::new();
    for _ in 0..10 {
        let url = format!("{}/test?token=good", t.cloud.ws_url());
        let (mut ws, _) = connect_async(url).await.unwrap();
        ws.send(Message::text(json!({"action": "echo"}).to_string()))
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        conns.push((v["connectionId"].as_str().unwrap().to_owned(), ws));
    }
    assert_eq!(t.cloud.connection_count(), 10);

    let (s, b) = t
        .call(
            Method::POST,
            "/_local/faults/drop-sockets",
            Some(json!({"share": 0.3})),
        )
        .await;
    assert_eq!((s, b), (200, json!({"dropped": 3})));
    assert_eq!(t.faults().await["droppedSockets"], 3);

    let mut dropped = Vec::new();
    for (id, ws) in &mut conns {
        // A dropped socket ends (EOF or reset) without a close frame; the others stay open.
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Close(f)))) => panic!("{id}: a close frame {f:?}"),
            Ok(Some(Ok(m))) => panic!("{id}: unexpected {m:?}"),
            Ok(None) | Ok(Some(Err(_))) => dropped.push(id.clone()),
        }
    }
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    assert_eq!(t.cloud.connection_count(), 7);
    for (id, ws) in &mut conns {
        let status = t.manage(Method::POST, id).await.0;
        if dropped.contains(id) {
            assert_eq!(status, 410, "{id} was dropped");
        } else {
            assert_eq!(status, 200, "{id} is open");
            assert_eq!(next_text(ws).await, "hi");
        }
    }
    // $disconnect ran for each dropped connection, with API Gateway's 1006.
    let record = t._dir.0.join("events.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        let disconnected: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["op"] == "disconnect")
            .collect();
        let done = dropped.iter().all(|id| {
            disconnected.iter().any(|v| {
                v["event"]["requestContext"]["connectionId"] == id.as_str()
                    && v["event"]["requestContext"]["disconnectStatusCode"] == 1006
            })
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no $disconnect (1006) for every dropped connection: {disconnected:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let TestCloud { cloud, _dir, .. } = t;
    cloud.shutdown().await;
}

/// A stand-in for an emulator (moto, DynamoDB Local): answers every request with its path and
/// body. Returns its URL.
async fn echo_upstream() -> String {
    use axum::routing::any;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let app = axum::Router::new().fallback(any(|req: axum::extract::Request| async move {
        let path = req.uri().to_string();
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap();
        format!("{path} {}", String::from_utf8_lossy(&body))
    }));
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });
    format!("http://{up_addr}")
}

/// A fault proxy for `service` in front of [`echo_upstream`], with its own switch: the switch,
/// what stops the proxy, and the proxy's URL.
async fn proxy_to_echo(service: Service) -> (Faults, CancellationToken, String) {
    let faults = Faults::default();
    let shutdown = CancellationToken::new();
    let proxy = courier_local::fault_proxy::start(
        service,
        echo_upstream().await,
        faults.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    (faults, shutdown, proxy)
}

#[tokio::test]
async fn the_sns_proxy_forwards_or_fails_at_the_set_rate() {
    let (faults, shutdown, proxy) = proxy_to_echo(Service::Sns).await;
    let http = reqwest::Client::new();
    let call = || {
        http.post(format!("{proxy}/?x=1"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("Action=Publish&Message=hi")
            .send()
    };
    let r = call().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "/?x=1 Action=Publish&Message=hi");

    assert!(faults.set_sns_failure_rate(1.5).is_err());
    faults.set_sns_failure_rate(1.0).unwrap();
    let r = call().await.unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<Code>InternalError</Code>") && body.contains("<Type>Receiver</Type>"),
        "{body}"
    );

    faults.set_sns_failure_rate(0.3).unwrap();
    let mut failed = 0;
    for _ in 0..200 {
        if call().await.unwrap().status() == 500 {
            failed += 1;
        }
    }
    // 200 draws at p = 0.3: mean 60, sd about 6.5.
    assert!((30..=90).contains(&failed), "{failed} of 200 failed");
    let f = faults.describe();
    assert_eq!(f["sns"]["failureRate"], 0.3);
    assert_eq!(f["sns"]["injectedErrors"], 1 + failed);
    faults.clear();
    for _ in 0..20 {
        assert_eq!(call().await.unwrap().status(), 200);
    }
    shutdown.cancel();
}

#[tokio::test]
async fn the_streams_proxy_fails_only_armed_get_records_of_the_armed_table() {
    let (faults, shutdown, proxy) = proxy_to_echo(Service::DynamoDbStreams).await;
    let http = reqwest::Client::new();
    let call = |op: &str, table: &str| {
        // What the SDK sends (awsJson1_0); iterators start with their stream's ARN.
        let body = json!({
            "ShardIterator": format!(
                "arn:aws:dynamodb:ddblocal:000000000000:table/{table}/stream/2026-11-29T00:00:00.000|001|AAAA"
            ),
            "StreamArn": format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}/stream/x"),
        });
        http.post(format!("{proxy}/"))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDBStreams_20120810.{op}"))
            .body(body.to_string())
            .send()
    };
    // Nothing armed: forwarded unchanged.
    let r = call("GetRecords", "T").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("table/T/stream"));

    faults.arm_stream_faults(Some("T"), 2, 1);
    // Another table's reads and T's other calls are not touched.
    assert_eq!(call("GetRecords", "U").await.unwrap().status(), 200);
    assert_eq!(call("GetShardIterator", "T").await.unwrap().status(), 200);
    assert_eq!(call("DescribeStream", "T").await.unwrap().status(), 200);
    // T's next reads: two expired iterators, then one internal error, then records again.
    for (status, kind) in [
        (400, "ExpiredIteratorException"),
        (400, "ExpiredIteratorException"),
        (500, "InternalServerError"),
    ] {
        let r = call("GetRecords", "T").await.unwrap();
        assert_eq!(r.status(), status);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["__type"],
            format!("com.amazonaws.dynamodb.v20120810#{kind}")
        );
    }
    assert_eq!(call("GetRecords", "T").await.unwrap().status(), 200);
    let f = faults.describe();
    assert_eq!(f["streams"]["injectedExpired"], 2);
    assert_eq!(f["streams"]["injectedFailures"], 1);
    assert_eq!(f["streams"]["expiredIterators"], 0);

    // No table: every table's reads; clear() disarms what is left.
    faults.arm_stream_faults(None, 0, 5);
    assert_eq!(call("GetRecords", "U").await.unwrap().status(), 500);
    assert_eq!(faults.describe()["streams"]["failures"], 4);
    faults.clear();
    assert_eq!(call("GetRecords", "U").await.unwrap().status(), 200);
    assert_eq!(faults.describe()["streams"]["injectedFailures"], 2);
    shutdown.cancel();
}
