//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use courier_local::{LocalCloud, LocalCloudConfig};
use serde_json::Value;

/// A fresh folder under the system's temporary folder, named `courier-local-<label>-<uuid>`,
/// removed (with what the test left in it) when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new(label: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("courier-local-{label}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A local cloud of `tests/fixtures/<fixture>` with the echo function, on free ports, keeping
/// its state in `state_dir`; a test sets what else it needs with `..common::config(..)`.
pub fn config(fixture: &str, state_dir: PathBuf) -> LocalCloudConfig {
    LocalCloudConfig {
        template: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        bin_dir: echo_fn_dir(),
        state_dir,
        ..Default::default()
    }
}

/// Sends `request` and reads its answer as JSON.
pub async fn json_reply(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// GETs `path` of the cloud's HTTP port as JSON (the outbox, the switches).
pub async fn get_json(cloud: &LocalCloud, path: &str) -> Value {
    json_reply(reqwest::Client::new().get(format!("{}{path}", cloud.http_url()))).await
}

/// What the echo function saw when called through the HTTP API: `{"env": {...}, ...}`.
pub async fn echo(cloud: &LocalCloud) -> Value {
    let request = reqwest::Client::new()
        .post(format!("{}/echo", cloud.http_url()))
        .body("{}");
    json_reply(request).await
}

/// Publishes an SMS (`+14155550100`, "code 123456") and a push of `apns` (the APNs part of a
/// JSON message) to a new endpoint of the platform application `app`; the endpoint's ARN.
pub async fn publish_sms_and_push(sns: &aws_sdk_sns::Client, app: &str, apns: &str) -> String {
    sns.publish()
        .phone_number("+14155550100")
        .message("code 123456")
        .send()
        .await
        .unwrap();
    let endpoint = sns
        .create_platform_endpoint()
        .platform_application_arn(app)
        .token("device-token")
        .send()
        .await
        .unwrap();
    let arn = endpoint.endpoint_arn().unwrap().to_owned();
    sns.publish()
        .target_arn(&arn)
        .message(serde_json::json!({"default": "x", "APNS_SANDBOX": apns}).to_string())
        .message_structure("json")
        .send()
        .await
        .unwrap();
    arn
}

/// `target/<profile>/examples`, where `cargo test` puts `echo_fn` and `stream_fn`; fails clearly
/// when one is missing or older than its source (`cargo test --test X` does not rebuild examples).
pub fn echo_fn_dir() -> PathBuf {
    examples_dir(&["echo_fn"])
}

/// Like [`echo_fn_dir`], checking the given examples.
pub fn examples_dir(names: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    for name in names {
        let bin = dir.join(name);
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(format!("{name}.rs"));
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let fresh = match (modified(&bin), modified(&source)) {
            (Some(b), Some(s)) => b >= s,
            _ => false,
        };
        assert!(
            fresh,
            "{} is missing or stale: run `cargo test -p courier-local` (which builds examples) or \
             `cargo build -p courier-local --examples`",
            bin.display()
        );
    }
    dir
}

/// The workspace root (where `infra/install` puts the emulators).
pub fn workspace_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// DynamoDB Local's folder and `moto_server`, found from the workspace root as `./dev up` finds
/// them (`COURIER_DYNAMODB_LOCAL_DIR` and `COURIER_MOTO_SERVER` still win), to pass to the
/// local cloud explicitly. `None` where the environment points at a running service instead
/// (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3` with `_SNS`). Panics with what to do when
/// one is missing: a missing emulator is a broken set-up, not a test that passes.
pub fn installed_emulators() -> (Option<PathBuf>, Option<PathBuf>) {
    let root = workspace_root();
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    let endpoint =
        |service: &str| set(&format!("AWS_ENDPOINT_URL_{service}")) || set("AWS_ENDPOINT_URL");
    let dynamodb = (!endpoint("DYNAMODB")).then(|| {
        courier_local::emulators::dynamodb_local_dir(&root).unwrap_or_else(|e| {
            panic!(
                "DynamoDB Local is missing ({e:#}): run infra/install in {}",
                root.display()
            )
        })
    });
    let moto = (!(endpoint("S3") && endpoint("SNS"))).then(|| {
        let bin = courier_local::emulators::moto_server_path(&root.join(".courier-local"))
            .unwrap_or_else(|e| {
                panic!(
                    "moto_server is missing ({e:#}): run infra/install in {}",
                    root.display()
                )
            });
        assert!(
            bin.is_file(),
            "moto_server {} does not exist: run infra/install in {} (or fix COURIER_MOTO_SERVER)",
            bin.display(),
            root.display()
        );
        bin
    });
    (dynamodb, moto)
}
