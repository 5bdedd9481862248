//! A stand-in DynamoDB Streams consumer for the local cloud's own tests, run through the real
//! `lambda_runtime` client. Every invocation is appended as a JSON line to `$STREAM_RECORD`:
//! `{"function","pid","typed","ns","seqs","outcome","records"}`, where `typed` says whether the
//! event deserialized as `aws_lambda_events::event::dynamodb::Event`.
//!
//! Each record's new image steers it (markers in `$STREAM_STATE_DIR` make "once" once per record):
//! `fail: "once"` fails the whole invocation the first time, `fail: "always"` every time; `partial: "once"` answers
//! `{"batchItemFailures":[{"itemIdentifier": <its SequenceNumber>}]}` the first time;
//! `conn: <connectionId>` posts the record's `n` to that WebSocket connection through the
//! management API.

use std::io::Write as _;
use std::path::PathBuf;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let http = reqwest::Client::new();
    lambda_runtime::run(service_fn(|ev| handle(&http, ev))).await
}

fn append(line: &Value) {
    let Ok(path) = std::env::var("STREAM_RECORD") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all((line.to_string() + "\n").as_bytes());
    }
}

/// True the first time it is called for `tag` and `seq` (across processes).
fn first_time(tag: &str, seq: &str) -> bool {
    let dir = PathBuf::from(std::env::var("STREAM_STATE_DIR").unwrap_or_else(|_| "/tmp".into()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(format!("{tag}-{seq}")))
        .is_ok()
}

fn string_attr<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record
        .pointer(&format!("/dynamodb/NewImage/{name}/S"))
        .and_then(Value::as_str)
}

async fn handle(http: &reqwest::Client, ev: LambdaEvent<Value>) -> Result<Value, Error> {
    let (event, _ctx) = ev.into_parts();
    let typed = serde_json::from_value::<Event>(event.clone());
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    let ns: Vec<i64> = records
        .iter()
        .map(|r| {
            r.pointer("/dynamodb/NewImage/n/N")
                .or_else(|| r.pointer("/dynamodb/OldImage/n/N"))
                .and_then(Value::as_str)
                .and_then(|n| n.parse().ok())
                .unwrap_or(-1)
        })
        .collect();
    let seqs: Vec<String> = records
        .iter()
        .map(|r| {
            r["dynamodb"]["SequenceNumber"]
                .as_str()
                .unwrap_or("")
                .into()
        })
        .collect();
    let line = |outcome: Value| {
        append(&json!({
            "function": std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
            "pid": std::process::id(),
            "typed": typed.as_ref().map(|e| e.records.len()).map_err(|e| e.to_string()),
            "ns": ns,
            "seqs": seqs,
            "outcome": outcome,
            "records": records,
        }))
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI").unwrap_or_default();
    for (i, r) in records.iter().enumerate() {
        let seq = &seqs[i];
        if string_attr(r, "fail") == Some("once") && first_time("fail", seq) {
            line(json!("error"));
            return Err(format!("record {} fails once", ns[i]).into());
        }
        if string_attr(r, "fail") == Some("always") {
            line(json!("error"));
            return Err(format!("record {} always fails", ns[i]).into());
        }
        if string_attr(r, "partial") == Some("once") && first_time("partial", seq) {
            line(json!({"partial": seq}));
            return Ok(json!({"batchItemFailures": [{"itemIdentifier": seq}]}));
        }
        if let Some(conn) = string_attr(r, "conn") {
            let url = format!("{endpoint}/@connections/{conn}");
            let status = http
                .post(url)
                .body(ns[i].to_string())
                .send()
                .await?
                .status();
            if !status.is_success() {
                line(json!({"postFailed": status.as_u16()}));
                return Err(format!("PostToConnection: {status}").into());
            }
        }
    }
    line(json!("ok"));
    Ok(json!({"batchItemFailures": []}))
}
