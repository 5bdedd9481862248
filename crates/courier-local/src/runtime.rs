//! The Lambda Runtime API and a pool of function processes, as Lambda runs them.
//!
//! Each process of a function gets its own Runtime API listener on `127.0.0.1:0` (so a request
//! on it can only come from that process) and the environment Lambda would give it. A process
//! serves one invocation at a time; an invocation takes an idle process or starts a new one, up to
//! the pool's concurrency limit, and then waits. Processes start lazily and stay warm. A timeout
//! kills the process; a process that exits mid-invocation fails that invocation ("Runtime exited")
//! and is replaced by the next one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::template::FunctionSpec;

/// How long a new process may take to ask for its first event (Lambda's init limit).
const INIT_LIMIT: Duration = Duration::from_secs(10);

/// Why an invocation did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function reported an error (`/invocation/{id}/error` or `/init/error`).
    #[error("{error_type}: {error_message}")]
    Function {
        /// `errorType` of the error document.
        error_type: String,
        /// `errorMessage` of the error document.
        error_message: String,
    },
    /// The function ran longer than its timeout; its process was killed.
    #[error("Task timed out after {0:?}")]
    Timeout(Duration),
    /// The process exited before it answered.
    #[error("Runtime exited: {0}")]
    RuntimeExited(String),
    /// The process could not be started.
    #[error("could not start function: {0}")]
    Spawn(String),
}

/// Shared settings for every function process.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Directory holding the function binaries.
    pub bin_dir: PathBuf,
    /// `<state-dir>/logs`, where each function's output is appended.
    pub log_dir: PathBuf,
    /// Processes per function at most.
    pub max_concurrency: usize,
    /// Region, credentials and endpoints every process gets.
    pub base_env: BTreeMap<String, String>,
    /// Region for ARNs and `AWS_REGION`.
    pub region: String,
    /// Where the functions' EMF lines are aggregated (`/_local/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Pids of every child process the local cloud started, so shutdown can kill them all.
#[derive(Debug, Default)]
pub struct ChildRegistry {
    pids: Mutex<HashSet<u32>>,
}

impl ChildRegistry {
    /// Remembers a child (it runs in its own process group).
    pub fn add(&self, pid: u32) {
        self.pids.lock().unwrap().insert(pid);
    }

    /// Forgets a child that was reaped.
    pub fn remove(&self, pid: u32) {
        self.pids.lock().unwrap().remove(&pid);
    }

    /// Sends SIGKILL to the process group of every child still alive.
    pub fn kill_all(&self) {
        let pids: Vec<u32> = self.pids.lock().unwrap().drain().collect();
        for pid in pids {
            kill_group(pid);
        }
    }
}

/// Kills a child's whole process group (children are spawned with `process_group(0)`).
pub fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Puts a child in its own process group (so a terminal's Ctrl-C reaches only courier-local,
/// which then stops children in order), kills it when its handle is dropped, and on Linux also
/// when courier-local dies without cleaning up (e.g. SIGKILL).
pub fn own_process_group(cmd: &mut Command) {
    cmd.kill_on_drop(true).process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Appends a child's output lines to courier-local's stderr and a log file, whole lines only.
#[derive(Debug)]
pub struct LogSink {
    name: String,
    echo: bool,
    file: Option<Mutex<std::fs::File>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl LogSink {
    /// Opens (appends to) `<dir>/<name>.log`; logs only to stderr if that fails.
    pub fn new(name: &str, dir: &std::path::Path) -> Self {
        Self::open(name, dir, true)
    }

    /// Like [`LogSink::new`] but only writes the file (for chatty emulators).
    pub fn quiet(name: &str, dir: &std::path::Path) -> Self {
        Self::open(name, dir, false)
    }

    fn open(name: &str, dir: &std::path::Path, echo: bool) -> Self {
        let file = std::fs::create_dir_all(dir)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{name}.log")))
            })
            .map_err(|e| tracing::warn!("cannot open log file for {name}: {e}"))
            .ok()
            .map(Mutex::new);
        Self {
            name: name.to_string(),
            echo,
            file,
            metrics: None,
        }
    }

    /// Also adds every EMF line to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn line(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(m) = &self.metrics {
            m.ingest_line(text);
        }
        if self.echo {
            eprintln!("[{}] {}", self.name, text);
        }
        if let Some(f) = &self.file {
            let mut buf = Vec::with_capacity(text.len() + 1);
            buf.extend_from_slice(text.as_bytes());
            buf.push(b'\n');
            let _ = f.lock().unwrap().write_all(&buf);
        }
    }

    /// Forwards every line of `reader` until it ends.
    pub fn forward<R: AsyncRead + Unpin + Send + 'static>(self: &Arc<Self>, reader: R) {
        let sink = self.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => sink.line(&buf),
                }
            }
        });
    }
}

enum Outcome {
    Response(Bytes),
    Error(Bytes),
}

struct Pending {
    request_id: String,
    event: Bytes,
    deadline_ms: u64,
    reply: oneshot::Sender<Outcome>,
}

/// State shared between a process's Runtime API server and the pool.
struct WorkerShared {
    function_arn: String,
    rx: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    ready: watch::Sender<bool>,
    init_error: Mutex<Option<Bytes>>,
    exited: watch::Sender<Option<String>>,
}

struct Worker {
    number: u64,
    pid: u32,
    tx: mpsc::Sender<Pending>,
    shared: Arc<WorkerShared>,
    kill: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Worker {
    fn has_exited(&self) -> bool {
        self.shared.exited.borrow().is_some()
    }

    async fn wait_exit(&self) -> String {
        let mut rx = self.shared.exited.subscribe();
        match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => "process gone".into(),
        }
    }

    fn kill(&self) {
        self.kill.cancel();
        kill_group(self.pid);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill.cancel();
        self.server.abort();
    }
}

/// Random kills for tests (the fault switch's `kill-random`): each invocation of a chosen
/// function (or of every function) has a chance of its process being SIGKILLed while it runs.
/// Shared by every pool of a [`Functions`].
#[derive(Debug, Default)]
pub struct RandomKills {
    /// `(function, rate, draws)`; the draws are seeded when a test asks, so its kills repeat.
    state: Mutex<Option<(String, f64, rand::rngs::StdRng)>>,
    kills: AtomicU64,
}

/// How long after an invocation is handed to its process a random kill may strike: spread over
/// the first part of the call, where a function is reading its event or waiting on DynamoDB.
pub const RANDOM_KILL_WITHIN: Duration = Duration::from_millis(40);

impl RandomKills {
    /// Arms it: `function` is a logical id or `*` (every function); `rate` 0 to 1; `seed`
    /// makes the draws repeat (the same invocations, in order, are chosen), else they are
    /// seeded from the OS.
    pub fn set(&self, function: &str, rate: f64, seed: Option<u64>) {
        use rand::SeedableRng;
        let rng = match seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        *self.state.lock().unwrap() = (rate > 0.0).then(|| (function.to_string(), rate, rng));
    }

    /// Disarms it (the count stays).
    pub fn clear(&self) {
        *self.state.lock().unwrap() = None;
    }

    /// What is armed: `(function, rate)`.
    pub fn armed(&self) -> Option<(String, f64)> {
        let s = self.state.lock().unwrap();
        s.as_ref().map(|(f, rate, _)| (f.clone(), *rate))
    }

    /// Processes killed so far.
    pub fn kills(&self) -> u64 {
        self.kills.load(Ordering::Relaxed)
    }

    /// Whether this invocation of `function` is to be killed, and when.
    fn draw(&self, function: &str) -> Option<Duration> {
        use rand::Rng;
        let mut s = self.state.lock().unwrap();
        let (f, rate, rng) = s.as_mut()?;
        if (f != "*" && f != function) || rng.random::<f64>() >= *rate {
            return None;
        }
        let ms = RANDOM_KILL_WITHIN.as_millis() as u64;
        Some(Duration::from_millis(rng.random_range(0..=ms)))
    }
}

/// Counters a test or a dashboard can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Processes started since the pool was made.
    pub spawned: usize,
    /// Invocations that finished (either way).
    pub invocations: u64,
}

/// The processes of one function.
pub struct FunctionPool {
    spec: FunctionSpec,
    settings: Arc<RuntimeSettings>,
    permits: Semaphore,
    idle: Mutex<Vec<Arc<Worker>>>,
    /// Processes in the middle of an invocation, by invocation number (a process goes back to
    /// `idle` just before its invocation leaves this map).
    busy: Mutex<HashMap<u64, Arc<Worker>>>,
    busy_seq: AtomicU64,
    log: Arc<LogSink>,
    spawned: AtomicUsize,
    invocations: AtomicU64,
    children: Arc<ChildRegistry>,
    shutdown: CancellationToken,
    random_kills: Arc<RandomKills>,
}

impl FunctionPool {
    /// A pool with no processes yet; the first invocation starts one.
    pub fn new(
        spec: FunctionSpec,
        settings: Arc<RuntimeSettings>,
        children: Arc<ChildRegistry>,
        shutdown: CancellationToken,
    ) -> Self {
        let log = Arc::new(
            LogSink::new(&spec.logical_id, &settings.log_dir)
                .with_metrics(settings.metrics.clone()),
        );
        Self {
            permits: Semaphore::new(settings.max_concurrency.max(1)),
            spec,
            settings,
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(HashMap::new()),
            busy_seq: AtomicU64::new(0),
            log,
            spawned: AtomicUsize::new(0),
            invocations: AtomicU64::new(0),
            children,
            shutdown,
            random_kills: Arc::default(),
        }
    }

    /// The function this pool runs.
    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// Counters for tests.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            spawned: self.spawned.load(Ordering::Relaxed),
            invocations: self.invocations.load(Ordering::Relaxed),
        }
    }

    /// Runs one invocation and returns the function's response payload.
    pub async fn invoke(&self, event: &serde_json::Value) -> Result<Bytes, InvokeError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| InvokeError::Spawn("shutting down".into()))?;
        let result = self.invoke_with_permit(event).await;
        self.invocations.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::warn!(function = %self.spec.logical_id, "invocation failed: {e}");
        }
        result
    }

    /// Kills (SIGKILL) every process of this function that is in the middle of an invocation,
    /// which then fails as a crashed Lambda does ("Runtime exited"). Returns how many.
    pub fn kill_busy(&self) -> usize {
        let busy: Vec<Arc<Worker>> = self.busy.lock().unwrap().values().cloned().collect();
        for w in &busy {
            tracing::warn!(
                function = %self.spec.logical_id,
                process = w.number,
                pid = w.pid,
                "fault injection: killing a process mid-invocation"
            );
            w.kill();
        }
        busy.len()
    }

    async fn invoke_with_permit(&self, event: &serde_json::Value) -> Result<Bytes, InvokeError> {
        let worker = loop {
            let next = self.idle.lock().unwrap().pop();
            match next {
                Some(w) if w.has_exited() => continue,
                Some(w) => break w,
                None => break self.spawn().await?,
            }
        };
        let seq = self.busy_seq.fetch_add(1, Ordering::Relaxed);
        self.busy.lock().unwrap().insert(seq, worker.clone());
        let _busy = BusyGuard {
            busy: &self.busy,
            seq,
        };
        self.run(worker, event, seq).await
    }

    /// Back to the idle list, off the busy one first (so a kill aimed at busy processes never
    /// hits one that has already taken its next invocation).
    fn release(&self, worker: Arc<Worker>, seq: u64) {
        self.busy.lock().unwrap().remove(&seq);
        self.idle.lock().unwrap().push(worker);
    }

    async fn run(
        &self,
        worker: Arc<Worker>,
        event: &serde_json::Value,
        seq: u64,
    ) -> Result<Bytes, InvokeError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let timeout = self.spec.timeout;
        let deadline_ms = (chrono::Utc::now().timestamp_millis() as u64)
            .saturating_add(timeout.as_millis() as u64);
        let (reply, rx) = oneshot::channel();
        let event = Bytes::from(serde_json::to_vec(event).expect("JSON value serializes"));
        if worker
            .tx
            .send(Pending {
                request_id,
                event,
                deadline_ms,
                reply,
            })
            .await
            .is_err()
        {
            return Err(InvokeError::RuntimeExited("process gone".into()));
        }
        let kill_at = self.random_kills.draw(&self.spec.logical_id);
        let outcome = tokio::select! {
            r = rx => r,
            _ = tokio::time::sleep(kill_at.unwrap_or_default()), if kill_at.is_some() => {
                tracing::warn!(
                    function = %self.spec.logical_id,
                    process = worker.number,
                    pid = worker.pid,
                    "fault injection: killing a process mid-invocation (random)"
                );
                self.random_kills.kills.fetch_add(1, Ordering::Relaxed);
                worker.kill();
                return Err(InvokeError::RuntimeExited(worker.wait_exit().await));
            }
            _ = tokio::time::sleep(timeout) => {
                worker.kill();
                return Err(InvokeError::Timeout(timeout));
            }
            reason = worker.wait_exit() => {
                return Err(InvokeError::RuntimeExited(reason));
            }
        };
        match outcome {
            Ok(Outcome::Response(body)) => {
                self.release(worker, seq);
                Ok(body)
            }
            Ok(Outcome::Error(body)) => {
                let init_failed = worker.shared.init_error.lock().unwrap().is_some();
                if init_failed {
                    worker.kill();
                } else {
                    self.release(worker, seq);
                }
                Err(function_error(&body))
            }
            Err(_) => Err(InvokeError::RuntimeExited(worker.wait_exit().await)),
        }
    }

    async fn spawn(&self) -> Result<Arc<Worker>, InvokeError> {
        let number = self.spawned.fetch_add(1, Ordering::Relaxed) as u64 + 1;
        let (tx, rx) = mpsc::channel(1);
        let shared = Arc::new(WorkerShared {
            function_arn: self.spec.arn.clone(),
            rx: tokio::sync::Mutex::new(rx),
            in_flight: Mutex::new(HashMap::new()),
            ready: watch::Sender::new(false),
            init_error: Mutex::new(None),
            exited: watch::Sender::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| InvokeError::Spawn(format!("runtime API listener: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| InvokeError::Spawn(e.to_string()))?
            .port();
        let server = tokio::spawn(serve_runtime_api(listener, shared.clone()));

        let binary = self.settings.bin_dir.join(&self.spec.binary);
        let mut cmd = Command::new(&binary);
        cmd.env_clear();
        for (k, v) in &self.spec.environment {
            cmd.env(k, v);
        }
        for key in ["PATH", "RUST_LOG"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        for (k, v) in &self.settings.base_env {
            cmd.env(k, v);
        }
        let name = &self.spec.function_name;
        let stream = format!(
            "{}/[$LATEST]{}",
            chrono::Utc::now().format("%Y/%m/%d"),
            uuid::Uuid::new_v4().simple()
        );
        cmd.env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.spec.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", stream)
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("LAMBDA_TASK_ROOT", &self.settings.bin_dir)
            .env("_HANDLER", "bootstrap")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        own_process_group(&mut cmd);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            server.abort();
            InvokeError::Spawn(format!("{}: {e}", binary.display()))
        })?;
        let pid = child.id().unwrap_or(0);
        self.children.add(pid);
        if let Some(out) = child.stdout.take() {
            self.log.forward(out);
        }
        if let Some(err) = child.stderr.take() {
            self.log.forward(err);
        }
        let kill = CancellationToken::new();
        {
            let kill = kill.clone();
            let shutdown = self.shutdown.clone();
            let shared = shared.clone();
            let children = self.children.clone();
            tokio::spawn(async move {
                let reason = tokio::select! {
                    status = child.wait() => match status {
                        Ok(s) => format!("exit status {s}"),
                        Err(e) => format!("wait failed: {e}"),
                    },
                    _ = kill.cancelled() => {
                        let _ = child.kill().await;
                        "killed".to_string()
                    }
                    _ = shutdown.cancelled() => {
                        let _ = child.kill().await;
                        "shut down".to_string()
                    }
                };
                children.remove(pid);
                shared.exited.send_replace(Some(reason));
                // Whoever still waits for a reply learns the process is gone.
                shared.in_flight.lock().unwrap().clear();
            });
        }
        let worker = Arc::new(Worker {
            number,
            pid,
            tx,
            shared: shared.clone(),
            kill,
            server,
        });

        let mut ready = shared.ready.subscribe();
        tokio::select! {
            r = ready.wait_for(|r| *r) => {
                if r.is_err() {
                    return Err(InvokeError::RuntimeExited("process gone".into()));
                }
            }
            reason = worker.wait_exit() => {
                let init = shared.init_error.lock().unwrap().clone();
                return Err(match init {
                    Some(body) => function_error(&body),
                    None => InvokeError::RuntimeExited(reason),
                });
            }
            _ = tokio::time::sleep(INIT_LIMIT) => {
                worker.kill();
                return Err(InvokeError::Timeout(INIT_LIMIT));
            }
        }
        tracing::info!(
            function = %self.spec.logical_id,
            process = worker.number,
            "cold start: {} ms from spawn to first /next",
            started.elapsed().as_millis()
        );
        Ok(worker)
    }
}

/// Takes a process off the busy list however its invocation ends.
struct BusyGuard<'a> {
    busy: &'a Mutex<HashMap<u64, Arc<Worker>>>,
    seq: u64,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.busy.lock().unwrap().remove(&self.seq);
    }
}

fn function_error(body: &[u8]) -> InvokeError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let mut error_message = field("errorMessage");
    if error_message.is_empty() && v.is_null() {
        error_message = String::from_utf8_lossy(body).into_owned();
    }
    InvokeError::Function {
        error_type: field("errorType"),
        error_message,
    }
}

async fn serve_runtime_api(listener: tokio::net::TcpListener, shared: Arc<WorkerShared>) {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("runtime API server stopped: {e}");
    }
}

async fn next(State(shared): State<Arc<WorkerShared>>) -> Response {
    let mut rx = shared.rx.lock().await;
    shared.ready.send_replace(true);
    let Some(p) = rx.recv().await else {
        return StatusCode::GONE.into_response();
    };
    drop(rx);
    shared
        .in_flight
        .lock()
        .unwrap()
        .insert(p.request_id.clone(), p.reply);
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set("lambda-runtime-aws-request-id", p.request_id.clone());
    set("lambda-runtime-deadline-ms", p.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        shared.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{};Parent={};Sampled=0",
            chrono::Utc::now().timestamp(),
            &uuid::Uuid::new_v4().simple().to_string()[..24],
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        ),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, p.event).into_response()
}

fn complete(shared: &WorkerShared, id: &str, outcome: Outcome) -> Response {
    match shared.in_flight.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "OK"})),
            )
                .into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "errorMessage": format!("unknown request id {id}"),
                "errorType": "InvalidRequestID"
            })),
        )
            .into_response(),
    }
}

async fn response(
    State(shared): State<Arc<WorkerShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    complete(&shared, &id, Outcome::Response(body))
}

async fn error(
    State(shared): State<Arc<WorkerShared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    complete(&shared, &id, Outcome::Error(body))
}

async fn init_error(State(shared): State<Arc<WorkerShared>>, body: Bytes) -> Response {
    tracing::warn!(
        "function reported an init error: {}",
        String::from_utf8_lossy(&body)
    );
    *shared.init_error.lock().unwrap() = Some(body.clone());
    let pending: Vec<_> = shared.in_flight.lock().unwrap().drain().collect();
    for (_, tx) in pending {
        let _ = tx.send(Outcome::Error(body.clone()));
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "OK"})),
    )
        .into_response()
}

/// Every function's pool, by logical id.
#[derive(Clone, Default)]
pub struct Functions {
    pools: Arc<BTreeMap<String, Arc<FunctionPool>>>,
    random_kills: Arc<RandomKills>,
}

impl Functions {
    /// One pool per function spec.
    pub fn new(
        specs: impl IntoIterator<Item = FunctionSpec>,
        settings: Arc<RuntimeSettings>,
        children: Arc<ChildRegistry>,
        shutdown: CancellationToken,
    ) -> Self {
        let random_kills = Arc::new(RandomKills::default());
        let pools = specs
            .into_iter()
            .map(|s| {
                let id = s.logical_id.clone();
                let mut pool =
                    FunctionPool::new(s, settings.clone(), children.clone(), shutdown.clone());
                pool.random_kills = random_kills.clone();
                (id, Arc::new(pool))
            })
            .collect();
        Self {
            pools: Arc::new(pools),
            random_kills,
        }
    }

    /// The random-kill switch every pool consults.
    pub fn random_kills(&self) -> &RandomKills {
        &self.random_kills
    }

    /// The pool of a function.
    pub fn get(&self, logical_id: &str) -> Option<&Arc<FunctionPool>> {
        self.pools.get(logical_id)
    }

    /// Invokes a function by logical id.
    pub async fn invoke(
        &self,
        logical_id: &str,
        event: &serde_json::Value,
    ) -> Result<Bytes, InvokeError> {
        match self.pools.get(logical_id) {
            Some(p) => p.invoke(event).await,
            None => Err(InvokeError::Spawn(format!("no function {logical_id}"))),
        }
    }
}
