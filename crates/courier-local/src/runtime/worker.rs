//! A worker: one running function process (one Lambda execution environment), what it is
//! busy with, and the fault switch that kills workers at random.

use super::*;

pub(super) enum Outcome {
    Response(Bytes),
    Error(Bytes),
}

pub(super) struct Pending {
    pub(super) request_id: String,
    pub(super) event: Bytes,
    pub(super) deadline_ms: u64,
    pub(super) reply: oneshot::Sender<Outcome>,
}

/// State shared between a process's Runtime API server and the pool.
pub(super) struct WorkerShared {
    pub(super) function_arn: String,
    pub(super) rx: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    pub(super) in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    pub(super) ready: watch::Sender<bool>,
    pub(super) init_error: Mutex<Option<Bytes>>,
    pub(super) exited: watch::Sender<Option<String>>,
}

pub(super) struct Worker {
    pub(super) number: u64,
    pub(super) pid: u32,
    pub(super) tx: mpsc::Sender<Pending>,
    pub(super) shared: Arc<WorkerShared>,
    pub(super) kill: CancellationToken,
    pub(super) server: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub(super) fn has_exited(&self) -> bool {
        self.shared.exited.borrow().is_some()
    }

    pub(super) async fn wait_exit(&self) -> String {
        let mut rx = self.shared.exited.subscribe();
        match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => "process gone".into(),
        }
    }

    pub(super) fn kill(&self) {
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
    pub(super) state: Mutex<Option<(String, f64, rand::rngs::StdRng)>>,
    pub(super) kills: AtomicU64,
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
    pub(super) fn draw(&self, function: &str) -> Option<Duration> {
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
