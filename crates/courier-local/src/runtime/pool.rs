//! A function's pool of workers: cold starts with their init limit, one invocation per worker at
//! a time, reserved concurrency, timeouts that kill the worker, as Lambda runs a function.

use super::*;

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
    pub(super) spec: FunctionSpec,
    pub(super) settings: Arc<RuntimeSettings>,
    pub(super) permits: Semaphore,
    pub(super) idle: Mutex<Vec<Arc<Worker>>>,
    /// Processes in the middle of an invocation, by invocation number (a process goes back to
    /// `idle` just before its invocation leaves this map).
    pub(super) busy: Mutex<HashMap<u64, Arc<Worker>>>,
    pub(super) busy_seq: AtomicU64,
    pub(super) log: Arc<LogSink>,
    pub(super) spawned: AtomicUsize,
    pub(super) invocations: AtomicU64,
    pub(super) children: Arc<ChildRegistry>,
    pub(super) shutdown: CancellationToken,
    pub(super) random_kills: Arc<RandomKills>,
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

    pub(super) async fn invoke_with_permit(
        &self,
        event: &serde_json::Value,
    ) -> Result<Bytes, InvokeError> {
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
    pub(super) fn release(&self, worker: Arc<Worker>, seq: u64) {
        self.busy.lock().unwrap().remove(&seq);
        self.idle.lock().unwrap().push(worker);
    }

    pub(super) async fn run(
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

    pub(super) async fn spawn(&self) -> Result<Arc<Worker>, InvokeError> {
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
pub(super) struct BusyGuard<'a> {
    pub(super) busy: &'a Mutex<HashMap<u64, Arc<Worker>>>,
    pub(super) seq: u64,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.busy.lock().unwrap().remove(&self.seq);
    }
}

pub(super) fn function_error(body: &[u8]) -> InvokeError {
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
