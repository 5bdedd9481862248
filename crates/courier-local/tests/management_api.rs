//! The management API (`@connections`) as a second AWS SDK sees it: `tests/python/
//! management_api.py` drives it with boto3 (in `.courier-local/venv`, installed with moto by
//! `infra/install`) and asserts every operation's answer and every error's type and status.
//! A missing venv or boto3 is a broken set-up, not a pass: the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use courier_local::LocalCloudConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

mod common;

fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.courier-local/venv/bin/python");
    let ok = venv.is_file()
        && Command::new(&venv)
            .args(["-c", "import boto3"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "no boto3 in {} (run infra/install): this test needs a second AWS SDK",
        venv.display()
    );
    Some(venv)
}

#[tokio::test]
async fn boto3_sees_aws_wire_format() {
    let Some(python) = python() else { return };
    let temp = common::TempDir::new("boto3");
    let dir = &temp.0;
    let config = LocalCloudConfig {
        no_emulators: true,
        ..common::config("template.yaml", dir.join("state"))
    };
    let cloud = courier_local::start(config).await.unwrap();
    let (mut ws, _) = connect_async(format!("{}/test?token=good", cloud.ws_url()))
        .await
        .unwrap();
    ws.send(Message::text(json!({"action": "echo"}).to_string()))
        .await
        .unwrap();
    let mut next = async || loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
        {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).unwrap_or(Value::String(t.to_string()));
            }
            Some(Ok(Message::Close(f))) => return json!({"closed": f.map(|f| u16::from(f.code))}),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    };
    let id = next().await["connectionId"].as_str().unwrap().to_string();

    let out = tokio::task::spawn_blocking({
        let endpoint = format!("{}/test", cloud.management_url());
        let http = cloud.http_url();
        let id = id.clone();
        move || {
            Command::new(python)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/management_api.py"))
                .args([&endpoint, &http, &id])
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "boto3 disagreed with the local management API:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What boto3 posted arrived, and its DeleteConnection closed the socket.
    assert_eq!(next().await, Value::String("from boto3".into()));
    assert_eq!(next().await, json!({"closed": 1000}));
    cloud.shutdown().await;
}
