//! End-to-end tests on the local cloud with real HTTP and WebSocket clients.
//!
//! [`TestCloud`] starts `target/debug/courier-local` on the repo's `template.yaml`, the same
//! binary and template that `./dev up` runs, on free ports with its own resource prefix, and stops
//! it when the test process exits. Build the binaries first (`./dev test` does:
//! `cargo build --workspace --bins`). If `COURIER_HTTP_URL` and `COURIER_WS_URL` are set, tests
//! run against that stack instead (a deployed one, say); the SMS outbox is then unavailable, so
//! set `COURIER_TEST_PHONE_PREFIX` and `COURIER_TEST_PHONE_CODE` to the stack's test numbers
//! (docs/deploy.md). Tests that inspect the local cloud's emulators need the local cloud.

pub mod metrics;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A running local cloud.
pub struct TestCloud {
    /// HTTP API.
    pub http_url: String,
    /// WebSocket API.
    pub ws_url: String,
    /// DynamoDB endpoint of the local cloud (tests that inspect or disturb stored state).
    pub dynamodb_endpoint: Option<String>,
    /// SNS endpoint of the local cloud (moto).
    pub sns_endpoint: Option<String>,
    /// S3 endpoint of the local cloud (moto).
    pub s3_endpoint: Option<String>,
    /// Prefix of the local table names (`<prefix>-<LogicalId>`).
    pub resource_prefix: String,
    /// The local cloud's state directory: its own log (`courier-local.log`, with every
    /// function's output) and the emulators' logs (`logs/`).
    pub state_dir: Option<PathBuf>,
    _child: Option<Child>,
}

static SHARED: OnceLock<TestCloud> = OnceLock::new();

impl TestCloud {
    /// The cloud shared by the tests of this process, started on first use.
    pub fn shared() -> &'static TestCloud {
        SHARED.get_or_init(|| TestCloud::start(&[]).expect("the local cloud starts"))
    }

    /// Starts a cloud of its own, with `--parameter` overrides (`Key=Value`).
    pub fn start(parameters: &[&str]) -> Result<TestCloud> {
        Self::start_with(&[], parameters)
    }

    /// Starts a cloud of its own with extra `courier-local` flags (e.g. `--persistent-dynamodb`)
    /// and `--parameter` overrides.
    pub fn start_with(flags: &[&str], parameters: &[&str]) -> Result<TestCloud> {
        if let (Ok(http_url), Ok(ws_url), true) = (
            std::env::var("COURIER_HTTP_URL"),
            std::env::var("COURIER_WS_URL"),
            parameters.is_empty() && flags.is_empty(),
        ) {
            return Ok(TestCloud {
                http_url,
                ws_url,
                dynamodb_endpoint: None,
                sns_endpoint: None,
                s3_endpoint: None,
                resource_prefix: String::new(),
                state_dir: None,
                _child: None,
            });
        }
        let root = repo_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin_dir = target.join("debug");
        let exe = bin_dir.join("courier-local");
        if !exe.exists() {
            bail!(
                "{} is missing: run `cargo build --workspace --bins` first (./dev test does)",
                exe.display()
            );
        }
        let run_id = format!("t{}{}", std::process::id(), rand_suffix());
        let state = std::env::temp_dir().join(format!("courier-e2e-{run_id}"));
        std::fs::create_dir_all(&state)?;
        let ready = state.join("ready.json");
        let mut cmd = Command::new(&exe);
        cmd.current_dir(&root)
            .args([
                "--template",
                "template.yaml",
                "--http",
                "127.0.0.1:0",
                "--ws",
                "127.0.0.1:0",
            ])
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--state-dir")
            .arg(&state)
            .args(["--resource-prefix", &run_id])
            .arg("--ready-file")
            .arg(&ready)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                state.join("courier-local.log"),
            )?));
        // A known log pseudonym key, so tests can compute the pseudonyms the functions log.
        cmd.args([
            "--parameter",
            &format!("LogPseudonymKey={LOG_PSEUDONYM_KEY}"),
        ]);
        for p in parameters {
            cmd.args(["--parameter", p]);
        }
        cmd.args(flags);
        // The cloud stops when this test process dies, however it dies.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        // PR_SET_PDEATHSIG fires when the spawning *thread* ends, so spawn from a thread that
        // lives as long as the process (test threads end with their test).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        });
        let mut child = rx
            .recv()?
            .with_context(|| format!("starting {}", exe.display()))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(v) = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            {
                let http_url = v["httpUrl"].as_str().context("httpUrl")?.to_owned();
                let ws_url = v["wsUrl"].as_str().context("wsUrl")?.to_owned();
                return Ok(TestCloud {
                    http_url,
                    ws_url,
                    dynamodb_endpoint: v["dynamodbEndpoint"].as_str().map(str::to_owned),
                    sns_endpoint: v["snsEndpoint"].as_str().map(str::to_owned),
                    s3_endpoint: v["s3Endpoint"].as_str().map(str::to_owned),
                    resource_prefix: run_id,
                    state_dir: Some(state),
                    _child: Some(child),
                });
            }
            if let Some(status) = child.try_wait()? {
                let log =
                    std::fs::read_to_string(state.join("courier-local.log")).unwrap_or_default();
                bail!("courier-local exited with {status} before it was ready:\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "courier-local was not ready within 120 s; see {}",
                    state.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SMS the cloud has sent to `phone`, oldest first.
    pub async fn sms_to(&self, phone: &str) -> Result<Vec<String>> {
        let all: Vec<Value> = reqwest::get(format!("{}/_local/outbox/sms", self.http_url))
            .await?
            .json()
            .await?;
        Ok(all
            .iter()
            .filter(|m| m["phoneNumber"] == phone)
            .filter_map(|m| m["message"].as_str().map(str::to_owned))
            .collect())
    }

    /// The code in the latest SMS to `phone` (a test number's fixed code, see [`test_numbers`]).
    pub async fn code_for(&self, phone: &str) -> Result<String> {
        if let Some(t) = test_numbers()
            && phone.starts_with(&t.prefix)
        {
            return Ok(t.code.expose().to_owned());
        }
        let texts = self.sms_to(phone).await?;
        let last = texts
            .last()
            .with_context(|| format!("no SMS was sent to {phone}"))?;
        courier_core::memory::extract_code(last).with_context(|| format!("no code in {last:?}"))
    }

    /// Push notifications published so far (SNS platform endpoints), as the outbox lists them.
    pub async fn pushes(&self) -> Result<Vec<Value>> {
        Ok(
            reqwest::get(format!("{}/_local/outbox/push", self.http_url))
                .await?
                .json()
                .await?,
        )
    }

    /// The pushes published so far whose message mentions `text` (a session or message id).
    pub async fn pushes_mentioning(&self, text: &str) -> Vec<Value> {
        self.pushes()
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p["message"].as_str().unwrap_or("").contains(text))
            .collect()
    }

    /// POSTs JSON to a `/_local/...` endpoint (fault switches).
    pub async fn local(&self, path: &str, body: Value) -> Result<Value> {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.http_url))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GETs a `/_local/...` endpoint (`/_local/faults`).
    pub async fn local_get(&self, path: &str) -> Result<Value> {
        let resp = reqwest::get(format!("{}{path}", self.http_url)).await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// The local name of a template table.
    pub fn table(&self, logical_id: &str) -> String {
        format!("{}-{logical_id}", self.resource_prefix)
    }

    /// A new account on a fresh number (registered, code read from the outbox, verified).
    pub async fn sign_up(&self) -> courier_core::protocol::Credentials {
        self.sign_up_as(&fresh_phone()).await
    }

    /// Registers the number `phone` (E.164) as [`TestCloud::sign_up`] does a fresh one.
    pub async fn sign_up_as(&self, phone: &str) -> courier_core::protocol::Credentials {
        let phone = phone.to_owned();
        self.accounts()
            .register(&phone)
            .await
            .expect("code requested");
        let code = self.code_for(&phone).await.expect("code in the outbox");
        let device = courier_core::protocol::DeviceInfo {
            name: "phone".into(),
            platform: courier_core::protocol::Platform::Ios,
        };
        self.accounts()
            .verify(&phone, &code, device)
            .await
            .expect("verified")
    }

    /// A user's presence item as the fan-out reads it: its `<deviceId>#<connectionId>` entries
    /// (empty when the user has no live connection).
    pub async fn presence(&self, user_id: &str) -> Result<Vec<String>, String> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let item = self
            .dynamodb()
            .get_item()
            .table_name(self.table("ConnectionsTable"))
            .key("pk", AttributeValue::S(format!("USER#{user_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("GetItem of {user_id}'s presence: {e}"))?
            .item
            .unwrap_or_default();
        Ok(match item.get("conns") {
            Some(AttributeValue::Ss(s)) => s.clone(),
            _ => vec![],
        })
    }

    /// Waits (up to [`WAIT`]) until `device_id` of `user_id` has no live connection in the
    /// presence item: the `$disconnect` of a closed session has run, so what comes next finds
    /// the device offline.
    pub async fn wait_offline(&self, user_id: &str, device_id: &str) {
        let prefix = format!("{device_id}#");
        eventually(&format!("{device_id} offline"), WAIT, async || {
            let conns = self.presence(user_id).await.unwrap();
            (!conns.iter().any(|c| c.starts_with(&prefix))).then_some(())
        })
        .await;
    }

    /// The SNS endpoint ARN stored for a device's push token (`push#<deviceId>` on the user's
    /// presence item), if any.
    pub async fn push_endpoint(&self, user_id: &str, device_id: &str) -> Option<String> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.dynamodb()
            .get_item()
            .table_name(self.table("ConnectionsTable"))
            .key("pk", AttributeValue::S(format!("USER#{user_id}")))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem of the presence item")
            .item
            .and_then(|i| i.get(&format!("push#{device_id}"))?.as_s().ok().cloned())
    }

    /// A DynamoDB client for the local cloud's DynamoDB Local (tests that inspect stored state).
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local", "local", None, None, "test",
            ))
            .endpoint_url(
                self.dynamodb_endpoint
                    .clone()
                    .expect("a local cloud, not a deployed stack"),
            )
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// An S3 client for the local cloud's S3 emulator (path-style addressing).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "local", "local", None, None, "test",
            ))
            .endpoint_url(
                self.s3_endpoint
                    .clone()
                    .expect("a local cloud, not a deployed stack"),
            )
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The media bucket's name.
    pub fn media_bucket(&self) -> String {
        format!("{}-mediabucket", self.resource_prefix).to_lowercase()
    }

    /// The bytes of the media bucket's object `key`, read straight from the local S3.
    pub async fn media_object(&self, key: &str) -> Vec<u8> {
        self.s3()
            .get_object()
            .bucket(self.media_bucket())
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key} can be read: {e}"))
            .body
            .collect()
            .await
            .expect("its body")
            .into_bytes()
            .to_vec()
    }

    /// The tags of a media file's object (`courier-media`: `unattached`, `status` or
    /// `attached`, which the bucket's lifecycle rules act on), read straight from the local S3.
    pub async fn media_tags(&self, media_id: &str) -> Vec<(String, String)> {
        self.s3()
            .get_object_tagging()
            .bucket(self.media_bucket())
            .key(format!("media/{media_id}"))
            .send()
            .await
            .expect("the object is stored")
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()
    }

    /// An SNS client for the local cloud's SNS emulator.
    pub fn sns(&self) -> aws_sdk_sns::Client {
        let conf = aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                "local", "local", None, None, "test",
            ))
            .endpoint_url(
                self.sns_endpoint
                    .clone()
                    .expect("a local cloud, not a deployed stack"),
            )
            .build();
        aws_sdk_sns::Client::from_conf(conf)
    }

    /// A client of the HTTP API.
    pub fn accounts(&self) -> courier_client::AccountsClient {
        courier_client::AccountsClient::new(&self.http_url)
    }

    /// A raw HTTP client call: `(status, body)`.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<(u16, String)> {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.http_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }
}

impl Drop for TestCloud {
    /// A cloud of a test's own stops with it (its emulators and functions die with it), so a
    /// test binary that starts several does not keep them all running.
    fn drop(&mut self) {
        if let Some(child) = &mut self._child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}

/// The test numbers of a deployed stack (`COURIER_TEST_PHONE_PREFIX` and
/// `COURIER_TEST_PHONE_CODE`, matching its `TestPhonePrefix`/`TestPhoneCode` parameters): then
/// [`fresh_phone`] picks numbers under the prefix and [`TestCloud::code_for`] answers the fixed
/// code, so the tests need no SMS outbox.
pub fn test_numbers() -> Option<courier_core::usecases::register_account::TestNumbers> {
    let get = |k: &str| std::env::var(k).unwrap_or_default();
    courier_core::usecases::register_account::TestNumbers::from_config(
        &get("COURIER_TEST_PHONE_PREFIX"),
        &get("COURIER_TEST_PHONE_CODE"),
    )
    .expect("COURIER_TEST_PHONE_PREFIX / COURIER_TEST_PHONE_CODE")
}

/// A fresh, valid phone number, random so that runs sharing emulators do not collide: a US
/// number, or one under the test prefix ([`test_numbers`]).
pub fn fresh_phone() -> String {
    if let Some(t) = test_numbers() {
        return t
            .random_number()
            .expect("a valid number under the test prefix");
    }
    const AREAS: [u32; 8] = [415, 650, 212, 310, 617, 206, 312, 512];
    loop {
        let r = uuid::Uuid::new_v4().as_u128();
        let area = AREAS[(r % 8) as usize];
        let exchange = 200 + ((r >> 8) % 800) as u32;
        let line = ((r >> 24) % 10_000) as u32;
        let phone = format!("+1{area}{exchange}{line:04}");
        if courier_core::PhoneNumber::parse(&phone).is_ok() {
            return phone;
        }
    }
}

/// The log pseudonym key of the clouds the tests start (`LogPseudonymKey`).
pub const LOG_PSEUDONYM_KEY: &str = "courier-e2e-log-pseudonym-key";

/// How long the end-to-end tests wait for an event.
pub const WAIT: Duration = Duration::from_secs(15);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(100);

/// Runs `check` every 100 ms until it finds something (`Some`) and returns that; fails the test
/// naming `what` once `limit` has passed (abandoning a check still running then).
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    tokio::time::timeout(limit, async {
        loop {
            if let Some(found) = check().await {
                return found;
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// A WebSocket session for `who` on the cloud's gateway.
pub async fn connect(
    cloud: &TestCloud,
    who: &courier_core::protocol::Credentials,
) -> courier_client::Session {
    courier_client::Session::connect(&cloud.ws_url, &who.api_key)
        .await
        .expect("connected")
}

/// `a` opens (or finds) its direct chat with `b`; the session id.
pub async fn open_chat(
    a: &courier_client::Session,
    b: &courier_core::protocol::Credentials,
) -> String {
    a.initiate_direct_chat(&b.user_id, None)
        .await
        .expect("the direct chat opens")
        .session_id
}

/// `a` creates a group called `name` with `members` (user ids) besides itself; the group id.
pub async fn open_group(a: &courier_client::Session, name: &str, members: &[&str]) -> String {
    a.request(
        "initiateGroupChatSession",
        serde_json::json!({"name": name, "members": members}),
    )
    .await
    .expect("the group is created")["groupId"]
        .as_str()
        .expect("a group id")
        .to_owned()
}

/// The next event named `name`, skipping others.
pub async fn next(session: &courier_client::Session, name: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = session.next_event().await.expect("connection open");
            if e["event"] == name {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event within {WAIT:?}"))
}

/// Every event up to and including the first one `is_marker` accepts, within [`WAIT`]. A test
/// sends the marker after the events it counts, in the same session: each send delivers its
/// message itself before its sender sends the next, so anything extra that path posts (a
/// duplicate, an echo) comes before the marker. What the stream's fan-out would post again comes
/// later (it reads the stream 250 ms after an empty read): that it posts nothing a send delivered
/// is checked by its own metric, in `inline_delivery.rs` (the fan-out's posts stay at 0).
pub async fn until_marker(
    session: &courier_client::Session,
    is_marker: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut out = vec![];
    tokio::time::timeout(WAIT, async {
        loop {
            let e = session.next_event().await.expect("connection open");
            let done = is_marker(&e);
            out.push(e);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no marker within {WAIT:?}; got {out:?}"));
    out
}

/// Whether `e` is a `message` event whose payload is `payload` (a marker).
pub fn is_message(e: &Value, payload: &str) -> bool {
    e["event"] == "message" && e["message"]["payload"] == payload
}

/// Key-directory requests with keys of the right shape (the server checks shape only, never the
/// cryptography), for tests of the key directory and its limits.
pub mod fake_keys {
    use serde_json::{Value, json};

    /// A string of `len` base64 characters derived from `seed` (the server checks shape only).
    pub fn b64(seed: &str, len: usize) -> String {
        let mut s: String = seed.chars().filter(char::is_ascii_alphanumeric).collect();
        while s.len() < len {
            s.push('Q');
        }
        s.truncate(len);
        s
    }

    /// A signed key (one-time or fallback) with id `id`.
    pub fn key(id: &str) -> Value {
        json!({"keyId": id, "key": b64(&format!("k{id}"), 43), "signature": b64(&format!("s{id}"), 86)})
    }

    /// `uploadKeys` parameters: the identity `identity`, one-time keys `ids`, and a fallback.
    pub fn upload(identity: &str, ids: &[String], fallback: Option<&str>) -> Value {
        let mut v = json!({
            "identityKey": b64(identity, 43),
            "signingKey": b64(&format!("g{identity}"), 43),
            "oneTimeKeys": ids.iter().map(|i| key(i)).collect::<Vec<_>>(),
        });
        if let Some(f) = fallback {
            v["fallbackKey"] = key(f);
        }
        v
    }
}
