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

mod pool;
mod runtime_api;
mod worker;

pub use pool::{FunctionPool, PoolStats};
use runtime_api::serve_runtime_api;
use worker::{Outcome, Pending, Worker, WorkerShared};
pub use worker::{RANDOM_KILL_WITHIN, RandomKills};

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
