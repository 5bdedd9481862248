//! The stack under load: a local cloud this process starts (as the end-to-end tests'
//! `TestCloud::start` does), or one already running, given by its URLs.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stack the benchmark drives.
pub struct Stack {
    /// HTTP API.
    pub http_url: String,
    /// WebSocket API.
    pub ws_url: String,
    /// Where the functions' logs are (`<FunctionLogicalId>.log`), if known.
    pub logs_dir: Option<PathBuf>,
    /// The local cloud's state dir, when this process started it.
    pub state_dir: Option<PathBuf>,
    /// Where the function binaries came from, when this process started the cloud.
    pub bin_dir: Option<PathBuf>,
    /// DynamoDB Local's endpoint and the stack's resource prefix, when this process started it.
    pub dynamodb: Option<(String, String)>,
    child: Option<Child>,
}

/// The workspace root (this crate is `crates/courier-bench`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/courier-bench sits two levels below the root")
        .to_path_buf()
}

/// `--bin-dir` when given, else `target/release` if it has `courier-local`, else `target/debug`.
pub fn pick_bin_dir(flag: Option<&Path>, root: &Path) -> Result<PathBuf> {
    if let Some(dir) = flag {
        let dir = if dir.is_relative() {
            root.join(dir)
        } else {
            dir.to_path_buf()
        };
        if !dir.join("courier-local").exists() {
            bail!("{} has no courier-local binary", dir.display());
        }
        return Ok(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for profile in ["release", "debug"] {
        let dir = target.join(profile);
        if dir.join("courier-local").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "no courier-local in {0}/release or {0}/debug: build it and the functions first \
         (cargo build --release -p courier-local -p registration -p authorizer -p connections \
         -p accounts -p sessions -p messages -p push -p fanout)",
        target.display()
    )
}

impl Stack {
    /// A stack that is already running; `logs_dir` lets the cost be read from its logs.
    pub fn existing(http_url: String, ws_url: String, logs_dir: Option<PathBuf>) -> Stack {
        Stack {
            http_url: http_url.trim_end_matches('/').to_owned(),
            ws_url,
            logs_dir,
            state_dir: None,
            bin_dir: None,
            dynamodb: None,
            child: None,
        }
    }

    /// The pid of the local cloud this process started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `<bin_dir>/courier-local` on the repo's template, on free ports, with a state dir
    /// of its own, and waits until it is serving.
    pub fn start(root: &Path, bin_dir: &Path, state_dir: &Path) -> Result<Stack> {
        let exe = bin_dir.join("courier-local");
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let ready = state_dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let mut cmd = Command::new(&exe);
        cmd.current_dir(root)
            .args(["--template", "template.yaml"])
            .args(["--http", "127.0.0.1:0", "--ws", "127.0.0.1:0"])
            .arg("--bin-dir")
            .arg(bin_dir)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--resource-prefix", &prefix])
            // A load generator sends faster than a person: the per-device send limit (burst 60,
            // 1 per second) would refuse it. Still taken on every send, so its cost is measured.
            .args(["--parameter", "SendBurst=1000000"])
            .arg("--ready-file")
            .arg(&ready)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                state_dir.join("courier-local.log"),
            )?));
        // The cloud stops when this process dies, however it dies.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        // PR_SET_PDEATHSIG fires when the spawning *thread* ends, so spawn from a thread that
        // lives as long as the process.
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
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(v) = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            {
                return Ok(Stack {
                    http_url: v["httpUrl"].as_str().context("httpUrl")?.to_owned(),
                    ws_url: v["wsUrl"].as_str().context("wsUrl")?.to_owned(),
                    logs_dir: Some(state_dir.join("logs")),
                    state_dir: Some(state_dir.to_path_buf()),
                    bin_dir: Some(bin_dir.to_path_buf()),
                    dynamodb: v["dynamodbEndpoint"]
                        .as_str()
                        .map(|e| (e.to_owned(), prefix.clone())),
                    child: Some(child),
                });
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(state_dir.join("courier-local.log"))
                    .unwrap_or_default();
                bail!("courier-local exited with {status} before it was ready:\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "courier-local was not ready within 180 s; see {}",
                    state_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the local cloud this process started (SIGTERM, so it stops its emulators too).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: signalling our own child by its pid.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
