//! `courier-local`: the local cloud in one command. See the library docs for what it does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use courier_local::LocalCloudConfig;
use courier_local::websocket::WsLimits;

/// Runs template.yaml locally: HTTP + WebSocket APIs, the function binaries, DynamoDB Local, moto.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// SAM template to run.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// HTTP API address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    http: SocketAddr,
    /// WebSocket + management API address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:3001")]
    ws: SocketAddr,
    /// Directory with the function binaries.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Directory for logs and local state.
    #[arg(long, default_value = ".courier-local")]
    state_dir: PathBuf,
    /// Prefix of table, bucket and topic names (also AWS::StackName).
    #[arg(long, default_value = "courier")]
    resource_prefix: String,
    /// Template parameter override, Key=Value (repeatable; wins over --parameters-file).
    #[arg(long = "parameter", value_name = "KEY=VALUE")]
    parameters: Vec<String>,
    /// File of Key=Value lines (# comments) with template parameters; default
    /// infra/local-parameters.env next to the template, when it exists.
    #[arg(long, value_name = "PATH")]
    parameters_file: Option<PathBuf>,
    /// Close WebSocket connections idle this long (API Gateway: 600).
    #[arg(long, default_value_t = 600)]
    idle_timeout_secs: u64,
    /// Close WebSocket connections this old (API Gateway: 7200).
    #[arg(long, default_value_t = 7200)]
    max_lifetime_secs: u64,
    /// Largest WebSocket frame a client may send, in bytes (API Gateway: 32 KB).
    #[arg(long, default_value_t = 32 * 1024)]
    max_frame_bytes: usize,
    /// Largest WebSocket message a client may send, in bytes (API Gateway: 128 KB).
    #[arg(long, default_value_t = 128 * 1024)]
    max_message_bytes: usize,
    /// Processes per function at most.
    #[arg(long, default_value_t = 8)]
    max_concurrency: usize,
    /// Start no emulators and provision nothing (endpoints from AWS_ENDPOINT_URL_* if set).
    #[arg(long)]
    no_emulators: bool,
    /// Write {"httpUrl","wsUrl",...} here once everything serves.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The built web client served at / (default: web/dist beside the template; `./dev web`).
    #[arg(long, value_name = "DIR")]
    web_dir: Option<PathBuf>,
    /// Keep DynamoDB Local's data under <state-dir>/dynamodb (-dbPath) instead of in memory, so
    /// `POST /_local/restart/dynamodb` restarts it without losing anything.
    #[arg(long)]
    persistent_dynamodb: bool,
    /// For experiments only: wait this many ms after an empty stream read instead of AWS's 250
    /// (Lambda polls a DynamoDB stream shard 4 times a second). Tests and benchmarks use the
    /// default, so their figures are figures AWS can give.
    #[arg(long, value_name = "MS", default_value_t = courier_local::streams::IDLE_POLL.as_millis() as u64)]
    stream_poll_ms: u64,
    /// Send the functions' DynamoDB calls through the fault switch's proxy, so GSI lag and
    /// transaction conflicts can be switched on (/_local/faults/gsi-lag, .../transaction-conflicts).
    /// Off by default: the extra hop adds about 0.6 ms to every call.
    #[arg(long)]
    dynamodb_faults: bool,
    /// S3 and SNS on LocalStack instead of moto (installed by `infra/install --localstack`;
    /// docs/local-cloud.md). Also COURIER_LOCALSTACK=1.
    #[arg(long, env = "COURIER_LOCALSTACK", value_parser = clap::builder::FalseyValueParser::new())]
    localstack: bool,
    /// Only read and resolve the template, print what would run, and exit.
    #[arg(long)]
    check: bool,
}

impl Cli {
    fn into_config(self) -> Result<LocalCloudConfig> {
        let file = match &self.parameters_file {
            Some(path) => Some(path.clone()),
            None => {
                Some(courier_local::default_parameters_file(&self.template)).filter(|p| p.is_file())
            }
        };
        let mut parameters = BTreeMap::new();
        if let Some(path) = &file {
            parameters = courier_local::read_parameters_file(path)?;
            eprintln!(
                "parameters from {}: {}",
                path.display(),
                parameters.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        for p in &self.parameters {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("--parameter {p}: expected Key=Value"))?;
            parameters.insert(k.to_string(), v.to_string());
        }
        Ok(LocalCloudConfig {
            template: self.template,
            http_addr: self.http,
            ws_addr: self.ws,
            bin_dir: self.bin_dir,
            state_dir: self.state_dir,
            resource_prefix: self.resource_prefix,
            parameters,
            ws_limits: WsLimits {
                max_frame_bytes: self.max_frame_bytes,
                max_message_bytes: self.max_message_bytes,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_lifetime: Duration::from_secs(self.max_lifetime_secs),
            },
            max_concurrency: self.max_concurrency,
            no_emulators: self.no_emulators,
            ready_file: self.ready_file,
            web_dir: self.web_dir,
            persistent_dynamodb: self.persistent_dynamodb,
            stream_poll: Duration::from_millis(self.stream_poll_ms),
            dynamodb_faults: self.dynamodb_faults,
            // From the environment (COURIER_DYNAMODB_LOCAL_DIR, COURIER_MOTO_SERVER) or the
            // usual places, as emulators::start looks them up.
            dynamodb_local_dir: None,
            moto_server: None,
            localstack: self.localstack,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COURIER_LOCAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let check = cli.check;
    let config = cli.into_config()?;
    if check {
        return print_model(&config);
    }
    let cloud = courier_local::start(config).await?;
    let http = cloud.http_url();
    println!(
        "Web       {http}/   (Courier Web: open it, link it with `courier devices approve CODE`)"
    );
    println!("HTTP API  {http}");
    println!("WebSocket {}", cloud.ws_url());
    println!("Manage    {}/@connections/{{id}}", cloud.management_url());
    println!("SMS       {http}/_local/outbox/sms");
    println!("Push      {http}/_local/outbox/push");
    println!("Metrics   {http}/_local/metrics");
    println!("Dashboard {http}/_local/dashboard");
    println!("DynamoDB  {}", cloud.endpoints().dynamodb);
    if let Some(moto) = &cloud.endpoints().moto {
        println!("moto      {moto}");
    }
    if let Some(localstack) = &cloud.endpoints().localstack {
        println!("LocalStack {localstack}  (S3 and SNS)");
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("shutting down");
    cloud.shutdown().await;
    Ok(())
}

/// `--check`: what the template resolves to, without starting anything.
fn print_model(config: &LocalCloudConfig) -> Result<()> {
    use courier_local::template::{Template, TemplateOptions};
    let aws = courier_local::provision::AwsSettings::from_env();
    let text = std::fs::read_to_string(&config.template)
        .with_context(|| format!("reading {}", config.template.display()))?;
    let template = Template::parse(
        &text,
        TemplateOptions {
            prefix: config.resource_prefix.clone(),
            region: aws.region,
            parameters: config.parameters.clone(),
            ..Default::default()
        },
    )?;
    let infra = template.infrastructure()?;
    let app = template.application()?;
    for t in &infra.tables {
        println!("table     {} (ttl: {:?})", t.name, t.ttl_attribute());
    }
    for b in &infra.buckets {
        println!("bucket    {}", b.name);
    }
    for t in &infra.topics {
        println!("topic     {}", t.name);
    }
    for q in &infra.queues {
        println!("queue     {}", q.name);
    }
    for p in &infra.platform_apps {
        println!("push app  {} ({})", p.name, p.platform);
    }
    for f in app.functions.values() {
        println!(
            "function  {} -> {} (timeout {:?}, {} MB)",
            f.logical_id,
            config.bin_dir.join(&f.binary).display(),
            f.timeout,
            f.memory_mb
        );
        for (k, v) in &f.environment {
            println!("            {k}={v}");
        }
    }
    for r in &app.http_routes {
        println!("http      {} -> {}", r.route_key(), r.function);
    }
    for m in &app.stream_mappings {
        println!(
            "stream    {} -> {} ({:?}, poll every {} ms, batch {}, window {:?}, retries {}, \
             bisect {}, item failures {}{})",
            m.stream_arn,
            m.function,
            m.starting_position,
            config.stream_poll.as_millis(),
            m.batch_size,
            m.batching_window,
            m.max_retry_attempts
                .map_or("forever".to_string(), |n| n.to_string()),
            m.bisect_on_error,
            m.report_batch_item_failures,
            if m.enabled { "" } else { ", disabled" }
        );
        if let Some(d) = &m.on_failure {
            println!("            on failure -> {d}");
        }
    }
    if let Some(ws) = &app.websocket {
        println!(
            "websocket api {} stage {} ({})",
            ws.api_id, ws.stage, ws.route_selection_expression
        );
        for r in ws.routes.values() {
            println!(
                "ws route  {} -> {} auth {}{}{}",
                r.route_key,
                r.function.as_deref().unwrap_or("-"),
                r.authorization_type,
                r.authorizer_function
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default(),
                if r.two_way { ", two-way" } else { "" }
            );
        }
    }
    Ok(())
}
