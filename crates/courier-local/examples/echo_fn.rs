//! A stand-in Lambda function for the local cloud's own tests, run through the real
//! `lambda_runtime` client. `COURIER_OPERATION` picks the behaviour; every event is appended as a
//! JSON line to `$ECHO_RECORD` so tests can see what the gateway sent.

use std::io::Write as _;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}

fn record(op: &str, event: &Value) {
    let Ok(path) = std::env::var("ECHO_RECORD") else {
        return;
    };
    let line = json!({"op": op, "pid": std::process::id(), "event": event}).to_string() + "\n";
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn token(event: &Value) -> Option<String> {
    if let Some(t) = event
        .pointer("/queryStringParameters/token")
        .and_then(Value::as_str)
    {
        return Some(t.to_string());
    }
    event
        .pointer("/headers/authorization")
        .and_then(Value::as_str)
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned)
}

async fn handle(ev: LambdaEvent<Value>) -> Result<Value, Error> {
    let op = std::env::var("COURIER_OPERATION").unwrap_or_default();
    let (event, _ctx) = ev.into_parts();
    record(&op, &event);
    println!("handling {op}");
    match op.as_str() {
        "authorize" => {
            let arn = event["methodArn"].clone();
            let policy = |effect: &str| {
                json!({
                    "principalId": "u1",
                    "policyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": arn}]
                    },
                    "context": {"userId": "u1", "deviceId": "d1"}
                })
            };
            let allow_resources = |resource: Value| {
                json!({
                    "principalId": "u1",
                    "policyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}]
                    },
                    "context": {"userId": "u1", "deviceId": "d1"}
                })
            };
            match token(&event).as_deref() {
                Some("good") => Ok(policy("Allow")),
                Some("deny") => Ok(policy("Deny")),
                // Allows another API's $connect, not this one.
                Some("other-api") => Ok(allow_resources(json!(
                    "arn:aws:execute-api:us-east-1:000000000000:otherapi/test/$connect"
                ))),
                // Allows this stage's routes by wildcard, as many authorizers do.
                Some("wildcard") => Ok(allow_resources(json!([
                    "arn:aws:execute-api:us-east-1:000000000000:nope/*",
                    "arn:aws:execute-api:*:*:*/test/*"
                ]))),
                // Allows everything but denies this $connect explicitly.
                Some("allow-all-deny-connect") => Ok(json!({
                    "principalId": "u1",
                    "policyDocument": {"Version": "2012-10-17", "Statement": [
                        {"Action": "execute-api:*", "Effect": "Allow", "Resource": "*"},
                        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": arn},
                    ]},
                })),
                // No policy at all.
                Some("no-policy") => Ok(json!({"principalId": "u1"})),
                Some("boom") => Err("authorizer blew up".into()),
                _ => Err("Unauthorized".into()),
            }
        }
        "connect" => {
            if event.pointer("/queryStringParameters/reject").is_some() {
                Ok(json!({"statusCode": 403}))
            } else {
                Ok(json!({"statusCode": 200}))
            }
        }
        "disconnect" => Ok(json!({"statusCode": 200})),
        "poster" => {
            // Posts "1".."count" to its own connection through the management API, in order.
            let raw = event["body"].as_str().unwrap_or_default();
            let body: Value = serde_json::from_str(raw).unwrap_or_default();
            let count = body["count"].as_u64().unwrap_or(1);
            let ctx = &event["requestContext"];
            // The endpoint names the stage, as COURIER_WS_ENDPOINT does on AWS.
            let url = format!(
                "{}/@connections/{}",
                std::env::var("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI").unwrap_or_default(),
                ctx["connectionId"].as_str().unwrap_or_default()
            );
            let http = reqwest::Client::new();
            for i in 1..=count {
                let status = http.post(&url).body(i.to_string()).send().await?.status();
                if !status.is_success() {
                    return Err(format!("PostToConnection {i}: {status}").into());
                }
            }
            Ok(json!({"statusCode": 200}))
        }
        "http" => {
            if event["rawPath"].as_str() == Some("/v1/slow") {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            }
            Ok(json!({
                "statusCode": 201,
                "headers": {"content-type": "application/json", "x-echo": "1"},
                "body": json!({"event": event}).to_string(),
            }))
        }
        _ => {
            let raw = event["body"].as_str().unwrap_or_default();
            let body: Value = serde_json::from_str(raw).unwrap_or(Value::String(raw.into()));
            if body.get("crash").is_some() {
                std::process::exit(3);
            }
            if let Some(ms) = body.get("sleepMs").and_then(Value::as_u64) {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            // A barrier between invocations: `signal` creates `$ECHO_RECORD.<name>`, `waitFor`
            // waits (up to 20 s) until it exists. Only invocations that run at the same time
            // can meet there.
            let marker = |name: &Value| {
                format!(
                    "{}.{}",
                    std::env::var("ECHO_RECORD").unwrap_or_default(),
                    name.as_str().unwrap_or("marker")
                )
            };
            if let Some(name) = body.get("signal") {
                std::fs::write(marker(name), b"")?;
            }
            let mut waited = Value::Null;
            if let Some(name) = body.get("waitFor") {
                let path = marker(name);
                let start = std::time::Instant::now();
                while !std::path::Path::new(&path).exists()
                    && start.elapsed() < std::time::Duration::from_secs(20)
                {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                waited = Value::Bool(std::path::Path::new(&path).exists());
            }
            let ctx = &event["requestContext"];
            Ok(json!({
                "statusCode": 200,
                "body": json!({
                    "op": op,
                    "route": ctx["routeKey"],
                    "connectionId": ctx["connectionId"],
                    "authorizer": ctx["authorizer"],
                    "size": raw.len(),
                    "n": body.get("n"),
                    "met": waited,
                    "pid": std::process::id(),
                    "env": std::env::vars()
                        .filter(|(k, _)| k != "AWS_SECRET_ACCESS_KEY")
                        .collect::<std::collections::BTreeMap<_, _>>(),
                }).to_string(),
            }))
        }
    }
}
