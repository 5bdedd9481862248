//! DynamoDB Streams event source mappings end to end: DynamoDB Local's streams, polled by the
//! local cloud, invoking `examples/stream_fn.rs` through the Runtime API. The emulators are the
//! workspace's (`infra/install`), passed to the local cloud explicitly; a missing one fails the
//! test with what to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use courier_local::{LocalCloud, LocalCloudConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

mod common;

struct Fixture {
    cloud: LocalCloud,
    dir: PathBuf,
    record: PathBuf,
    ddb: aws_sdk_dynamodb::Client,
}

impl Fixture {
    /// Invocation lines of one function, in the order they happened.
    fn invocations(&self, function: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["function"] == format!("streams-{function}"))
            .collect()
    }

    async fn put(&self, table: &str, n: i64, extra: &[(&str, &str)]) {
        let mut req = self
            .ddb
            .put_item()
            .table_name(format!("streams-{table}"))
            .item("pk", AttributeValue::S("p".into()))
            .item("n", AttributeValue::N(n.to_string()));
        for (k, v) in extra {
            req = req.item(*k, AttributeValue::S(v.to_string()));
        }
        req.send().await.unwrap();
    }
}

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records the function accepted, in order: all of an "ok" invocation, those before the failed
/// one of a partial failure, none of an error.
fn accepted(invocations: &[Value]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for inv in invocations {
        let ns = inv["ns"].as_array().unwrap();
        let seqs = inv["seqs"].as_array().unwrap();
        let names: Vec<String> = inv["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["eventName"].as_str().unwrap().to_string())
            .collect();
        let upto = match &inv["outcome"] {
            Value::String(s) if s == "ok" => ns.len(),
            Value::Object(o) if o.contains_key("partial") => seqs
                .iter()
                .position(|s| s == &o["partial"])
                .expect("partial names a record of the batch"),
            _ => 0,
        };
        for i in 0..upto {
            out.push((names[i].clone(), ns[i].as_i64().unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn stream_mappings_deliver_in_order_and_retry() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COURIER_LOCAL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let (dynamodb_local_dir, moto_server) = common::installed_emulators();
    let dir = std::env::temp_dir().join(format!("courier-local-streams-{}", uuid::Uuid::new_v4()));
    let state_dir = dir.join("markers");
    std::fs::create_dir_all(&state_dir).unwrap();
    let record = dir.join("invocations.jsonl");
    let mut config = LocalCloudConfig {
        template: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streams.yaml"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        bin_dir: common::examples_dir(&["echo_fn", "stream_fn"]),
        state_dir: dir.join("state"),
        resource_prefix: "streams".into(),
        dynamodb_local_dir,
        moto_server,
        // On disk, so DynamoDB Local can be restarted under the pollers (the last scenario).
        persistent_dynamodb: true,
        ..Default::default()
    };
    config
        .parameters
        .insert("RecordFile".into(), record.display().to_string());
    config
        .parameters
        .insert("StateDir".into(), state_dir.display().to_string());
    let cloud = courier_local::start(config).await.unwrap();
    let aws = courier_local::provision::AwsSettings::from_env();
    let ddb = aws.dynamodb(&cloud.endpoints().dynamodb);
    let f = Fixture {
        cloud,
        dir,
        record,
        ddb,
    };
    let mut ids: Vec<&str> = f
        .cloud
        .streams()
        .mappings()
        .map(|m| m.id.as_str())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "DeadEndFunction.Changes",
            "FanOutFunction.MessageStream",
            "LatestMapping",
            "OrderedFunction.Changes"
        ]
    );

    ordered_with_retries(&f).await;
    kill_mid_fan_out_retries_the_batch(&f).await;
    latest_resource_form(&f).await;
    exhausted_retries_go_to_the_on_failure_queue(&f).await;
    a_restart_of_dynamodb_local_loses_and_repeats_nothing(&f).await;
    failed_reads_take_new_iterators_and_lose_nothing(&f).await;

    f.cloud.shutdown().await;
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// 20 inserts, a record that fails its first invocation, a record reported in
/// `batchItemFailures`, then a MODIFY and a REMOVE: every record accepted once, in order.
async fn ordered_with_retries(f: &Fixture) {
    for n in 0..20 {
        let extra: &[(&str, &str)] = match n {
            5 => &[("fail", "once")],
            12 => &[("partial", "once")],
            _ => &[],
        };
        f.put("OrderedTable", n, extra).await;
    }
    f.ddb
        .update_item()
        .table_name("streams-OrderedTable")
        .key("pk", AttributeValue::S("p".into()))
        .key("n", AttributeValue::N("3".into()))
        .update_expression("SET extra = :x")
        .expression_attribute_values(":x", AttributeValue::S("y".into()))
        .send()
        .await
        .unwrap();
    f.ddb
        .delete_item()
        .table_name("streams-OrderedTable")
        .key("pk", AttributeValue::S("p".into()))
        .key("n", AttributeValue::N("4".into()))
        .send()
        .await
        .unwrap();

    let invocations = wait_for("22 accepted records", Duration::from_secs(60), || {
        let inv = f.invocations("OrderedFunction");
        (accepted(&inv).len() >= 22).then_some(inv)
    })
    .await;
    let mut expected: Vec<(String, i64)> = (0..20).map(|n| ("INSERT".to_string(), n)).collect();
    expected.push(("MODIFY".into(), 3));
    expected.push(("REMOVE".into(), 4));
    assert_eq!(accepted(&invocations), expected);

    // Every event is an aws_lambda_events DynamoDB event, shaped as Lambda sends it.
    for inv in &invocations {
        assert!(inv["typed"]["Ok"].is_u64(), "not a DynamoDB event: {inv}");
    }
    let first = &invocations[0]["records"][0];
    assert_eq!(first["eventName"], "INSERT");
    assert_eq!(first["eventVersion"], "1.1");
    assert_eq!(first["eventSource"], "aws:dynamodb");
    assert_eq!(first["awsRegion"], aws_region());
    assert!(first["eventID"].as_str().is_some_and(|s| !s.is_empty()));
    let arn = first["eventSourceARN"].as_str().unwrap();
    assert!(arn.contains(":table/streams-OrderedTable/stream/"), "{arn}");
    let d = &first["dynamodb"];
    assert_eq!(d["Keys"], json!({"pk": {"S": "p"}, "n": {"N": "0"}}));
    assert_eq!(d["NewImage"]["n"], json!({"N": "0"}));
    assert_eq!(d["StreamViewType"], "NEW_AND_OLD_IMAGES");
    assert!(d["SequenceNumber"].is_string());
    assert!(d["SizeBytes"].as_i64().unwrap() > 0);
    assert!(d["ApproximateCreationDateTime"].as_i64().unwrap() > 1_600_000_000);
    let records: Vec<&Value> = invocations
        .iter()
        .flat_map(|i| i["records"].as_array().unwrap())
        .collect();
    let modify = records.iter().find(|r| r["eventName"] == "MODIFY").unwrap();
    assert_eq!(modify["dynamodb"]["OldImage"]["n"], json!({"N": "3"}));
    assert_eq!(modify["dynamodb"]["NewImage"]["extra"], json!({"S": "y"}));
    let remove = records.iter().find(|r| r["eventName"] == "REMOVE").unwrap();
    assert!(remove["dynamodb"].get("NewImage").is_none());
    assert_eq!(remove["dynamodb"]["OldImage"]["n"], json!({"N": "4"}));

    // The failed invocation is retried with the same batch (no bisect on this mapping).
    let failed = invocations
        .iter()
        .position(|i| i["outcome"] == "error")
        .expect("an invocation failed");
    assert!(
        invocations[failed]["ns"]
            .as_array()
            .unwrap()
            .contains(&json!(5))
    );
    assert_eq!(invocations[failed + 1]["seqs"], invocations[failed]["seqs"]);
    // A partial failure resumes from the failed record.
    let partial = invocations
        .iter()
        .position(|i| i["outcome"].get("partial").is_some())
        .expect("a partial failure");
    assert_eq!(invocations[partial + 1]["ns"][0], 12);
    assert_eq!(
        invocations[partial + 1]["seqs"][0],
        invocations[partial]["outcome"]["partial"]
    );

    // The function writes its record line before it returns, and the poller counts the batch
    // after the invocation returns: wait for the count to catch up with the file.
    let stats = wait_for(
        "the poller's count of 22 records",
        Duration::from_secs(10),
        || {
            let s = f.cloud.stream_stats("OrderedFunction").unwrap();
            (s.records >= 22).then_some(s)
        },
    )
    .await;
    assert_eq!(stats.records, 22, "{stats:?}");
    assert_eq!(stats.retries, 2, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.invocations, invocations.len() as u64, "{stats:?}");
}

fn aws_region() -> String {
    courier_local::provision::AwsSettings::from_env().region
}

/// The fault switch kills the fan-out function after its 2nd post; the mapping retries the
/// batch (bisected), so the client sees 1 2, then 1 2 3 4 5.
async fn kill_mid_fan_out_retries_the_batch(f: &Fixture) {
    let (mut ws, _) = connect_async(f.cloud.ws_url()).await.unwrap();
    ws.send(Message::text("{}")).await.unwrap();
    let reply: Value = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    let conn = reply["connectionId"].as_str().unwrap().to_string();

    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/_local/faults/kill-after-posts",
            f.cloud.http_url()
        ))
        .json(&json!({"function": "FanOutFunction", "posts": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"armed": true}));

    // One write of five items: one batch (the mapping's batching window is 1 s).
    let writes: Vec<WriteRequest> = (1..=5)
        .map(|n| {
            let put = PutRequest::builder()
                .item("pk", AttributeValue::S("room".into()))
                .item("n", AttributeValue::N(n.to_string()))
                .item("conn", AttributeValue::S(conn.clone()))
                .build()
                .unwrap();
            WriteRequest::builder().put_request(put).build()
        })
        .collect();
    f.ddb
        .batch_write_item()
        .request_items("streams-FanOutTable", writes)
        .send()
        .await
        .unwrap();

    let mut got = Vec::new();
    while got.len() < 7 {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("posts arrive")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            got.push(t.to_string());
        }
    }
    assert_eq!(got, ["1", "2", "1", "2", "3", "4", "5"]);

    let faults = common::get_json(&f.cloud, "/_local/faults").await;
    assert_eq!(faults["killAfterPosts"], Value::Null, "{faults}");
    assert_eq!(faults["kills"], 1, "{faults}");
    assert_eq!(
        faults["lastKill"],
        json!({"function": "FanOutFunction", "processes": 1})
    );
    let stats = wait_for("all five accepted", Duration::from_secs(10), || {
        let s = f.cloud.stream_stats("FanOutFunction").unwrap();
        (s.records == 5).then_some(s)
    })
    .await;
    assert!(stats.retries >= 1, "{stats:?}");
    assert_eq!(stats.batches, 1, "{stats:?}");
    assert_eq!(f.cloud.function_stats("FanOutFunction").unwrap().spawned, 2);
    let _ = ws.close(None).await;
}

/// `AWS::Lambda::EventSourceMapping` with `LATEST`: writes after start arrive.
async fn latest_resource_form(f: &Fixture) {
    for k in ["a", "b"] {
        f.ddb
            .put_item()
            .table_name("streams-LatestTable")
            .item("pk", AttributeValue::S(k.into()))
            .send()
            .await
            .unwrap();
    }
    let inv = wait_for("two KEYS_ONLY records", Duration::from_secs(30), || {
        let inv = f.invocations("LatestFunction");
        let n: usize = inv
            .iter()
            .map(|i| i["records"].as_array().unwrap().len())
            .sum();
        (n >= 2).then_some(inv)
    })
    .await;
    let keys: Vec<&Value> = inv
        .iter()
        .flat_map(|i| i["records"].as_array().unwrap())
        .map(|r| &r["dynamodb"]["Keys"]["pk"]["S"])
        .collect();
    assert_eq!(keys, [&json!("a"), &json!("b")]);
    let r = &inv[0]["records"][0]["dynamodb"];
    assert_eq!(r["StreamViewType"], "KEYS_ONLY");
    assert!(r.get("NewImage").is_none());
}

/// A record that fails every time, on a mapping with `MaximumRetryAttempts: 1`, bisection and an
/// SQS on-failure destination: once its retries run out, the invocation record Lambda sends
/// (where the record is in the stream) is in the queue, and the records around it are delivered.
async fn exhausted_retries_go_to_the_on_failure_queue(f: &Fixture) {
    for n in 0..4 {
        let extra: &[(&str, &str)] = if n == 1 { &[("fail", "always")] } else { &[] };
        f.put("DeadEndTable", n, extra).await;
    }
    let sqs = courier_local::provision::AwsSettings::from_env().sqs(&f.cloud.endpoints().sqs);
    let url = sqs
        .get_queue_url()
        .queue_name("streams-DeadEndFailures")
        .send()
        .await
        .expect("the template's queue exists in moto")
        .queue_url()
        .unwrap()
        .to_string();
    let mut bodies: Vec<Value> = Vec::new();
    let started = Instant::now();
    while bodies.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no invocation record in the on-failure queue; invocations: {:#?}",
            f.invocations("DeadEndFunction")
        );
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
        }
    }
    // The record that always fails, alone after bisection.
    let failing_seq = f
        .invocations("DeadEndFunction")
        .iter()
        .find_map(|inv| {
            let ns = inv["ns"].as_array()?;
            let i = ns.iter().position(|n| n == 1)?;
            inv["seqs"][i].as_str().map(str::to_owned)
        })
        .expect("record 1 reached the function");
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let r = &bodies[0];
    assert_eq!(r["version"], "1.0");
    assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert!(
        r["requestContext"]["functionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:streams-DeadEndFunction"),
        "{r}"
    );
    assert!(
        r["requestContext"]["approximateInvokeCount"]
            .as_u64()
            .unwrap()
            >= 2
    );
    assert_eq!(r["responseContext"]["statusCode"], 200);
    assert_eq!(r["responseContext"]["functionError"], "Unhandled");
    let info = &r["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1, "{r}");
    assert_eq!(info["startSequenceNumber"], failing_seq.as_str());
    assert_eq!(info["endSequenceNumber"], failing_seq.as_str());
    assert!(
        info["streamArn"]
            .as_str()
            .unwrap()
            .contains(":table/streams-DeadEndTable/stream/"),
        "{r}"
    );
    assert!(info["shardId"].as_str().is_some_and(|s| !s.is_empty()));
    for k in [
        "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord",
    ] {
        let t = info[k].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{k}: {t}");
    }
    // The poller moved on: the others were delivered, and so is what comes after.
    f.put("DeadEndTable", 4, &[]).await;
    wait_for(
        "records 0, 2, 3 and 4 accepted",
        Duration::from_secs(30),
        || {
            let mut ns: Vec<i64> = accepted(&f.invocations("DeadEndFunction"))
                .into_iter()
                .map(|(_, n)| n)
                .collect();
            ns.sort();
            ns.dedup();
            (ns == [0, 2, 3, 4]).then_some(())
        },
    )
    .await;
    let stats = f.cloud.stream_stats("DeadEndFunction").unwrap();
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.sent_to_destination, 1);
}

/// DynamoDB Local restarted (same port, same `-dbPath`) under the pollers: what is written after
/// it reaches the function once, in order, and nothing read before is delivered again.
async fn a_restart_of_dynamodb_local_loses_and_repeats_nothing(f: &Fixture) {
    let before = accepted(&f.invocations("OrderedFunction"));
    assert_eq!(before.len(), 22, "{before:?}");
    let ddb_local = f
        .cloud
        .dynamodb_local()
        .expect("the cloud started DynamoDB Local");
    ddb_local.restart().await.unwrap();
    assert_eq!(ddb_local.restarts(), 1);
    for n in 100..105 {
        f.put("OrderedTable", n, &[]).await;
    }
    wait_for("5 more accepted records", Duration::from_secs(60), || {
        (accepted(&f.invocations("OrderedFunction")).len() >= 27).then_some(())
    })
    .await;
    // A moment for anything delivered twice to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = accepted(&f.invocations("OrderedFunction"));
    let mut expected = before;
    expected.extend((100..105).map(|n| ("INSERT".to_string(), n)));
    assert_eq!(after, expected);
}

/// Reads of the stream fail, through the fault switch (`POST /_local/faults/streams`, which the
/// pollers' DynamoDB Streams proxy obeys): first an expired iterator, then `GetRecords` failing
/// three times in a row (9 injected 500s: the SDK makes 3 attempts of each). Rows are written
/// while the reads fail. Each time the poller takes a new iterator after the last record it read,
/// so the new rows reach the function once, in order, and nothing read before comes again.
async fn failed_reads_take_new_iterators_and_lose_nothing(f: &Fixture) {
    let stats = || {
        f.cloud
            .streams()
            .mapping_stats("OrderedFunction.Changes")
            .unwrap()
    };
    let mut expected = accepted(&f.invocations("OrderedFunction"));
    assert_eq!(expected.len(), 27, "{expected:?}");
    let http = reqwest::Client::new();
    let url = format!("{}/_local/faults/streams", f.cloud.http_url());
    // Bodies of another shape are refused and arm nothing.
    for bad in [
        json!({"expiredIterators": -1}),
        json!({"failures": "many"}),
        json!({"table": 5, "failures": 1}),
        json!([1]),
    ] {
        let r = http.post(&url).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = http.post(&url).body("not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        f.cloud.faults().describe()["streams"]["failures"],
        0,
        "nothing armed"
    );
    for (round, (expired, failures)) in [(1u64, 0u64), (0, 9)].into_iter().enumerate() {
        let before = stats().new_iterators;
        let armed = common::json_reply(http.post(&url).json(&json!({
            "table": "streams-OrderedTable",
            "expiredIterators": expired,
            "failures": failures,
        })))
        .await;
        assert_eq!(armed["streams"]["table"], "streams-OrderedTable");
        let first = 200 + 10 * round as i64;
        for n in first..first + 3 {
            f.put("OrderedTable", n, &[]).await;
            expected.push(("INSERT".to_string(), n));
        }
        wait_for(
            "the rows written while reads failed",
            Duration::from_secs(60),
            || (accepted(&f.invocations("OrderedFunction")).len() >= expected.len()).then_some(()),
        )
        .await;
        let left = &f.cloud.faults().describe()["streams"];
        assert_eq!(
            (&left["expiredIterators"], &left["failures"]),
            (&json!(0), &json!(0)),
            "every armed read failed: {left}"
        );
        assert!(
            stats().new_iterators > before,
            "round {round}: the poller took a new iterator ({:?})",
            stats()
        );
    }
    // A moment for anything delivered twice to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(accepted(&f.invocations("OrderedFunction")), expected);
    let fired = &f.cloud.faults().describe()["streams"];
    assert_eq!(fired["injectedExpired"], 1);
    assert_eq!(fired["injectedFailures"], 9);
}
