//! The gateway end to end, without AWS: the fixture template's functions are all
//! `examples/echo_fn.rs` (built by `cargo test`), run through the real `lambda_runtime` client.

use std::path::PathBuf;
use std::time::Duration;

use courier_local::websocket::WsLimits;
use courier_local::{LocalCloud, LocalCloudConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

mod common;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct TestCloud {
    cloud: LocalCloud,
    record: PathBuf,
    http: reqwest::Client,
    _dir: common::TempDir,
}

async fn start_with(limits: WsLimits) -> TestCloud {
    start_with_parameters(limits, &[]).await
}

async fn start_with_parameters(limits: WsLimits, parameters: &[(&str, &str)]) -> TestCloud {
    let temp = common::TempDir::new("test");
    let dir = &temp.0;
    let record = dir.join("events.jsonl");
    let mut config = LocalCloudConfig {
        no_emulators: true,
        ws_limits: limits,
        ready_file: Some(dir.join("ready.json")),
        ..common::config("template.yaml", dir.join("state"))
    };
    config
        .parameters
        .insert("RecordFile".into(), record.display().to_string());
    for (k, v) in parameters {
        config.parameters.insert(k.to_string(), v.to_string());
    }
    let cloud = courier_local::start(config).await.unwrap();
    let ready: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ready.json")).unwrap()).unwrap();
    assert_eq!(ready["wsUrl"], cloud.ws_url());
    TestCloud {
        cloud,
        record,
        http: reqwest::Client::new(),
        _dir: temp,
    }
}

async fn start() -> TestCloud {
    start_with(WsLimits::default()).await
}

impl TestCloud {
    async fn connect(&self, query: &str) -> Result<Client, WsError> {
        let url = format!("{}/test?{query}", self.cloud.ws_url());
        connect_async(url).await.map(|(ws, _)| ws)
    }

    fn recorded(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until an event recorded by `op` matches `pred`.
    async fn wait_recorded(&self, op: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            if let Some(e) = self
                .recorded()
                .into_iter()
                .find(|e| e["op"] == op && pred(&e["event"]))
            {
                return e["event"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {op} event recorded; got {:#?}", self.recorded());
    }

    fn manage(&self, id: &str) -> String {
        format!("{}/test/@connections/{}", self.cloud.management_url(), id)
    }
}

async fn next_text(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("connection open")
            .expect("no error");
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(&t).unwrap_or(Value::String(t.to_string()));
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Client, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Reads until the server's close frame and returns its code.
async fn close_code(ws: &mut Client) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return u16::from(f.code),
            Ok(Some(Ok(Message::Close(None)))) => return 1005,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn status_of(err: WsError) -> u16 {
    match err {
        WsError::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn authorizer_refusals() {
    let t = start().await;
    assert_eq!(status_of(t.connect("").await.unwrap_err()), 401);
    assert_eq!(status_of(t.connect("token=deny").await.unwrap_err()), 403);
    assert_eq!(status_of(t.connect("token=boom").await.unwrap_err()), 500);
    // The policy must allow this $connect's method ARN, as API Gateway checks it.
    assert_eq!(
        status_of(t.connect("token=other-api").await.unwrap_err()),
        403,
        "an Allow for another API's ARN is a refusal"
    );
    assert_eq!(
        status_of(t.connect("token=allow-all-deny-connect").await.unwrap_err()),
        403,
        "an explicit Deny of the method ARN wins over Allow *"
    );
    assert_eq!(
        status_of(t.connect("token=no-policy").await.unwrap_err()),
        500,
        "an answer without a policy is the authorizer's failure"
    );
    let mut ws = t.connect("token=wildcard").await.expect("a wildcard match");
    ws.close(None).await.unwrap();
    assert_eq!(
        status_of(t.connect("token=good&reject=1").await.unwrap_err()),
        403,
        "a non-2xx $connect response refuses the upgrade"
    );
    let auth = t
        .wait_recorded("authorize", |e| {
            e["queryStringParameters"]["token"] == "deny"
        })
        .await;
    assert_eq!(auth["type"], "REQUEST");
    assert!(
        auth["methodArn"]
            .as_str()
            .unwrap()
            .ends_with("/test/$connect"),
        "{auth}"
    );
    t.cloud.shutdown().await;
}

#[tokio::test]
async fn routes_replies_and_order() {
    let t = start().await;
    let mut ws = t.connect("token=good").await.unwrap();
    let connect = t.wait_recorded("connect", |_| true).await;
    assert_eq!(connect["requestContext"]["eventType"], "CONNECT");
    assert_eq!(connect["requestContext"]["authorizer"]["userId"], "u1");
    assert_eq!(connect["requestContext"]["authorizer"]["principalId"], "u1");

    send(&mut ws, json!({"action": "echo", "n": 1})).await;
    let r = next_text(&mut ws).await;
    assert_eq!(r["route"], "echo");
    assert_eq!(r["authorizer"]["deviceId"], "d1");
    let id = r["connectionId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);

    // Not JSON, unknown action, and a non-string action all go to $default.
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await["route"], "$default");
    send(&mut ws, json!({"action": "nope"})).await;
    assert_eq!(next_text(&mut ws).await["route"], "$default");
    send(&mut ws, json!({"action": 7})).await;
    assert_eq!(next_text(&mut ws).await["route"], "$default");

    // A one-way route sends nothing back.
    send(&mut ws, json!({"action": "oneway"})).await;
    send(&mut ws, json!({"action": "echo", "n": 2})).await;
    assert_eq!(next_text(&mut ws).await["route"], "echo");
    t.wait_recorded("oneway", |e| e["requestContext"]["eventType"] == "MESSAGE")
        .await;

    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    let r = next_text(&mut ws).await;
    assert_eq!(r["message"], "Binary frames are not supported");
    assert_eq!(r["connectionId"], id.as_str());

    ws.close(None).await.unwrap();
    let d = t
        .wait_recorded("disconnect", |e| {
            e["requestContext"]["connectionId"] == id.as_str()
        })
        .await;
    assert_eq!(d["requestContext"]["eventType"], "DISCONNECT");
    assert_eq!(d["requestContext"]["authorizer"]["userId"], "u1");
    t.cloud.shutdown().await;
}

/// The frames of one connection run concurrently, as on API Gateway: the first waits for a
/// marker that only the second creates, so both finish only if they run at the same time, and the
/// second's reply comes first.
#[tokio::test]
async fn frames_of_one_connection_run_concurrently() {
    let t = start().await;
    let mut ws = t.connect("token=good").await.unwrap();
    send(
        &mut ws,
        json!({"action": "echo", "n": 1, "waitFor": "second-ran"}),
    )
    .await;
    send(
        &mut ws,
        json!({"action": "echo", "n": 2, "signal": "second-ran"}),
    )
    .await;
    let first_reply = next_text(&mut ws).await;
    let second_reply = next_text(&mut ws).await;
    assert_eq!(first_reply["n"], 2, "{first_reply}");
    assert_eq!(second_reply["n"], 1, "{second_reply}");
    assert_eq!(
        second_reply["met"], true,
        "the first saw the second's marker"
    );
    t.cloud.shutdown().await;
}

/// The WebSocket stage's throttling from the template (its `DefaultRouteSettings` and
/// `RouteSettings`): a handshake past the `$connect` bucket is refused 429 before the authorizer
/// runs; a message past its route's bucket gets the gateway's `Too Many Requests` frame and never
/// reaches the function; each route has its own bucket.
#[tokio::test]
async fn websocket_stage_throttling_refuses_handshakes_and_messages() {
    let t = start_with_parameters(
        WsLimits::default(),
        &[
            ("ConnectThrottleBurst", "3"),
            ("ConnectThrottleRate", "0.001"),
        ],
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(t.connect("token=good").await.expect("within the burst"));
    }
    match t.connect("token=good").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 429),
        other => panic!("the fourth handshake at once should be throttled: {other:?}"),
    }
    let authorized = t
        .recorded()
        .iter()
        .filter(|e| e["op"] == "authorize")
        .count();
    assert_eq!(
        authorized, 3,
        "a throttled handshake never reaches the authorizer"
    );

    // The `limited` route: burst 2, then 0.001 a second.
    let ws = &mut open[0];
    for n in 0..3 {
        send(ws, json!({"action": "limited", "n": n})).await;
    }
    let mut routes = Vec::new();
    for _ in 0..3 {
        let f = next_text(ws).await;
        routes.push(if f["message"] == "Too Many Requests" {
            assert!(f["connectionId"].is_string(), "{f}");
            "throttled".to_string()
        } else {
            f["route"].as_str().unwrap().to_string()
        });
    }
    routes.sort();
    assert_eq!(routes, ["limited", "limited", "throttled"]);
    // Another route of the stage is not held up, and the connection stays open.
    send(ws, json!({"action": "echo"})).await;
    assert_eq!(next_text(ws).await["route"], "echo");
    let invoked = t
        .recorded()
        .iter()
        .filter(|e| e["event"]["requestContext"]["routeKey"] == "limited")
        .count();
    assert_eq!(invoked, 2, "a throttled message never reaches the function");
    t.cloud.shutdown().await;
}

/// The HTTP API's stage throttling from the template: a route's bucket holds
/// `ThrottlingBurstLimit` requests and refills at `ThrottlingRateLimit` a second; beyond it, 429
/// without invoking the function. Each route has its own bucket.
#[tokio::test]
async fn http_stage_throttling_answers_429() {
    let t = start().await;
    let base = t.cloud.http_url();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = t
            .http
            .post(format!("{base}/v1/limited"))
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["message"], "Too Many Requests");
        }
        statuses.push(status);
    }
    // Burst 2, then 0.001 a second: two pass, the rest are refused.
    assert_eq!(statuses, [201, 201, 429, 429, 429]);
    let invoked = t
        .recorded()
        .iter()
        .filter(|e| e["event"]["rawPath"] == "/v1/limited")
        .count();
    assert_eq!(invoked, 2, "a refused request never reaches the function");
    // Another route of the stage (DefaultRouteSettings: burst 50) is not held up.
    let r = t
        .http
        .post(format!("{base}/v1/roomy"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    t.cloud.shutdown().await;
}

#[tokio::test]
async fn management_api() {
    let t = start().await;
    let mut ws = t.connect("token=good").await.unwrap();
    send(&mut ws, json!({"action": "echo"})).await;
    let id = next_text(&mut ws).await["connectionId"]
        .as_str()
        .unwrap()
        .to_string();

    let r = t
        .http
        .post(t.manage(&id))
        .body("pushed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(next_text(&mut ws).await, Value::String("pushed".into()));
    // Without the stage, and with the id percent-encoded as the SDK does.
    let encoded = id.replace('=', "%3D");
    let url = format!("{}/@connections/{encoded}", t.cloud.management_url());
    let r = t.http.post(url).body(r#"{"k":1}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(next_text(&mut ws).await, json!({"k": 1}));

    let info = common::json_reply(t.http.get(t.manage(&id))).await;
    // The service model's wire names (botocore checks them too: tests/management_api.rs).
    assert!(info["connectedAt"].is_string(), "{info}");
    assert!(info["lastActiveAt"].is_string(), "{info}");
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert!(info.get("ConnectedAt").is_none(), "{info}");

    // A stage the API does not have.
    let r = t
        .http
        .post(format!(
            "{}/nostage/@connections/{id}",
            t.cloud.management_url()
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-amzn-errortype"], "ForbiddenException");

    let r = t
        .http
        .post(t.manage("nosuchconnid="))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert_eq!(r.headers()["x-amzn-errortype"], "GoneException");

    let r = t.http.delete(t.manage(&id)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(close_code(&mut ws).await, 1000);
    t.wait_recorded("disconnect", |e| {
        e["requestContext"]["connectionId"] == id.as_str()
    })
    .await;
    let r = t
        .http
        .post(t.manage(&id))
        .body("late")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    t.cloud.shutdown().await;
}

#[tokio::test]
async fn size_limits_close_with_1009() {
    let t = start().await;

    // A 90 KB message in 30 KB frames is fine.
    let mut ws = t.connect("token=good").await.unwrap();
    let chunk = "a".repeat(30 * 1024);
    for i in 0..3 {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        ws.send(Message::Frame(Frame::message(
            chunk.clone(),
            opcode,
            i == 2,
        )))
        .await
        .unwrap();
    }
    assert_eq!(next_text(&mut ws).await["size"], 90 * 1024);

    // 150 KB in 30 KB frames is over the message limit.
    for i in 0..5 {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let _ = ws
            .send(Message::Frame(Frame::message(
                chunk.clone(),
                opcode,
                i == 4,
            )))
            .await;
    }
    assert_eq!(close_code(&mut ws).await, 1009);

    // One 200 KB frame is over the frame limit.
    let mut ws = t.connect("token=good").await.unwrap();
    let _ = ws.send(Message::text("b".repeat(200 * 1024))).await;
    assert_eq!(close_code(&mut ws).await, 1009);
    t.wait_recorded("disconnect", |e| {
        e["requestContext"]["disconnectStatusCode"] == 1009
    })
    .await;
    t.cloud.shutdown().await;
}

#[tokio::test]
async fn crash_gives_internal_server_error_and_connection_survives() {
    let t = start().await;
    let mut ws = t.connect("token=good").await.unwrap();
    send(&mut ws, json!({"action": "echo", "crash": true})).await;
    let r = next_text(&mut ws).await;
    assert_eq!(r["message"], "Internal server error");
    assert!(
        r["connectionId"].is_string() && r["requestId"].is_string(),
        "{r}"
    );
    send(&mut ws, json!({"action": "echo"})).await;
    assert_eq!(next_text(&mut ws).await["route"], "echo");
    assert_eq!(t.cloud.function_stats("EchoFunction").unwrap().spawned, 2);
    t.cloud.shutdown().await;
}

#[tokio::test]
async fn concurrent_invocations_spawn_a_second_process() {
    let t = start().await;
    let mut a = t.connect("token=good").await.unwrap();
    let mut b = t.connect("token=good").await.unwrap();
    send(&mut a, json!({"action": "echo", "sleepMs": 700})).await;
    send(&mut b, json!({"action": "echo", "sleepMs": 700})).await;
    let (ra, rb) = tokio::join!(next_text(&mut a), next_text(&mut b));
    assert_ne!(ra["pid"], rb["pid"], "two processes served at once");
    assert_eq!(t.cloud.function_stats("EchoFunction").unwrap().spawned, 2);
    // Warm processes are reused.
    send(&mut a, json!({"action": "echo"})).await;
    next_text(&mut a).await;
    assert_eq!(t.cloud.function_stats("EchoFunction").unwrap().spawned, 2);
    t.cloud.shutdown().await;
}

#[tokio::test]
async fn idle_connections_close_with_1001() {
    let t = start_with(WsLimits {
        idle_timeout: Duration::from_millis(500),
        ..WsLimits::default()
    })
    .await;
    let mut ws = t.connect("token=good").await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1001);
    t.wait_recorded("disconnect", |e| {
        e["requestContext"]["disconnectStatusCode"] == 1001
    })
    .await;
    t.cloud.shutdown().await;
}

#[tokio::test]
async fn http_api() {
    let t = start().await;
    let base = t.cloud.http_url();
    let health = common::get_json(&t.cloud, "/_local/health").await;
    assert_eq!(health, json!({"ok": true}));

    let r = t
        .http
        .post(format!("{base}/v1/echo/abc%20d?q=1&q=2&x=y"))
        .header("x-multi", "a")
        .body(r#"{"hello":"world"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-echo"], "1");
    let e: Value = r.json().await.unwrap();
    let e = &e["event"];
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "POST /v1/echo/{id}");
    assert_eq!(e["pathParameters"]["id"], "abc d");
    assert_eq!(e["queryStringParameters"]["q"], "1,2");
    assert_eq!(e["rawQueryString"], "q=1&q=2&x=y");
    assert_eq!(e["headers"]["x-multi"], "a");
    assert_eq!(e["body"], r#"{"hello":"world"}"#);
    assert_eq!(e["isBase64Encoded"], false);
    assert_eq!(e["requestContext"]["http"]["method"], "POST");
    assert_eq!(e["requestContext"]["stage"], "$default");
    // The event is what lambda_http expects.
    serde_json::from_value::<aws_lambda_events::apigw::ApiGatewayV2httpRequest>(e.clone()).unwrap();

    let r = t
        .http
        .post(format!("{base}/v1/echo/bin"))
        .body(vec![0xffu8, 0xfe])
        .send()
        .await
        .unwrap();
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["event"]["isBase64Encoded"], true);
    assert_eq!(e["event"]["body"], "//4=");

    let r = t.http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Not Found"})
    );

    let r = t
        .http
        .post(format!("{base}/v1/echo/big"))
        .body(vec![b'x'; 10 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // HttpFunction's Timeout is 1 s; /v1/slow sleeps 30 s.
    let r = t.http.get(format!("{base}/v1/slow")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Internal Server Error"})
    );
    t.cloud.shutdown().await;
}
