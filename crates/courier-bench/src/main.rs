//! `courier-bench`: the messaging load generator. Starts the local cloud (or uses a running one),
//! registers N users, pairs them into one-to-one sessions, connects each with
//! [`courier_client::Session`], sends messages open-loop at a target rate, and reports delivery
//! latency (receive time - send time carried in the payload, same clock), throughput, losses and
//! duplicates, and what each message cost, read from the functions' per-invocation EMF lines.
//! With `--mix`, a mixed load instead (one-to-one chats, groups of 10 and 257, media, receipts)
//! with its end checks and a DynamoDB Local baseline ([`mix`]); `--memory-every` samples the
//! local cloud's memory (a soak). See docs/benchmarks.md.

mod baseline;
mod cloud;
mod emf;
mod load;
mod mem;
mod mix;
mod report;

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Messaging load generator for Courier.
#[derive(Parser, Debug, Clone)]
#[command(name = "courier-bench", version)]
pub struct Args {
    /// Simulated clients (one user and one device each); paired into one-to-one sessions, so even
    /// (with `--group`: the members of one group, 2 to 257).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Group mode: every client is a member of one group (client 0 creates it), each message goes
    /// to the other members; reports the time until the last member has it.
    #[arg(long)]
    pub group: bool,
    /// Target send rate over all clients, messages per second (open loop).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// How long to send for (`30s`, `500ms`, `2m`; a bare number is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Sending at the same rate before the measured run, not measured (cold processes, JIT).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After sending stops, wait for the last deliveries and receipts until nothing has
    /// moved for this long (at most 5 minutes).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Payload size of each message, bytes (the send timestamp and padding).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Recipients do not acknowledge `delivered` (to see the message path alone; real clients do).
    #[arg(long)]
    pub no_receipts: bool,
    /// Per-request reply timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Where courier-local and the function binaries are [default: target/release, else target/debug].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The local cloud's state dir (logs, emulator data) [default: a fresh temporary dir].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// HTTP API of a running stack (with --ws-url): a local cloud, or a deployed one (then with
    /// --test-phone-prefix/--test-phone-code): used instead of starting a local cloud.
    #[arg(long, requires = "ws_url")]
    pub http_url: Option<String>,
    /// WebSocket API of that stack (with --http-url).
    #[arg(long, requires = "http_url")]
    pub ws_url: Option<String>,
    /// With --http-url: the running cloud's `<state-dir>/logs`, to report the cost per message.
    #[arg(long, requires = "http_url")]
    pub logs_dir: Option<PathBuf>,
    /// A deployed stack's test numbers (its `TestPhonePrefix`): register clients under this
    /// prefix with the fixed code instead of reading codes from the local SMS outbox.
    #[arg(long, env = "COURIER_TEST_PHONE_PREFIX", requires = "test_phone_code")]
    pub test_phone_prefix: Option<String>,
    /// The stack's `TestPhoneCode`.
    #[arg(
        long,
        env = "COURIER_TEST_PHONE_CODE",
        requires = "test_phone_prefix",
        hide_env_values = true
    )]
    pub test_phone_code: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Record the resident memory of the local cloud's processes (courier-local, DynamoDB Local,
    /// moto, every function process) this often during the load (`60s`: a soak's samples). Only
    /// with a local cloud this benchmark started.
    #[arg(long, value_parser = parse_duration)]
    pub memory_every: Option<Duration>,
    /// The mixed load: `--clients` (a multiple of 10) in one-to-one chats, groups of 10 and
    /// `--big-groups` groups of 257 at once, `--messages` sent closed loop (`--in-flight` at a
    /// time), some attaching media, every recipient acknowledging; then checks that nothing was
    /// lost or duplicated, that every device has each chat in sequence order and that
    /// `getMessageStatus` shows every receipt.
    #[arg(long)]
    pub mix: bool,
    /// `--mix`: messages to send.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// `--mix`: sends in flight at once (each sender sends its next when answered).
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// `--mix`: share of messages to groups of 10.
    #[arg(long, default_value_t = 0.1)]
    pub group10_share: f64,
    /// `--mix`: share of messages to groups of 257.
    #[arg(long, default_value_t = 0.002)]
    pub group257_share: f64,
    /// `--mix`: groups of 257 (over clients 0..257, 257..514, ...).
    #[arg(long, default_value_t = 2)]
    pub big_groups: usize,
    /// `--mix`: share of messages that attach a freshly uploaded 1 KiB media object.
    #[arg(long, default_value_t = 0.02)]
    pub media_share: f64,
    /// `--mix`: the plan's random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `--mix`: besides the last message of every chat, this many random messages are checked
    /// with `getMessageStatus`.
    #[arg(long, default_value_t = 1000)]
    pub status_sample: usize,
    /// `--mix`: first run this many messages' calls (send, fan-out, acks) straight against
    /// DynamoDB Local, in-process with the same in-flight count, to compare throughput (0: skip).
    #[arg(long, default_value_t = 5000)]
    pub baseline_messages: u64,
}

/// `30s`, `250ms`, `2m`, or seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.mix {
        // Checked in mix::run.
    } else if args.group {
        if !(2..=257).contains(&args.clients) {
            bail!("--group: --clients must be 2 to 257 (the group's members)");
        }
    } else if args.clients < 2 || args.clients % 2 != 0 {
        bail!("--clients must be an even number, at least 2 (clients are paired)");
    }
    if args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let root = cloud::repo_root();
    let mut stack = match (&args.http_url, &args.ws_url) {
        (Some(http), Some(ws)) => {
            cloud::Stack::existing(http.clone(), ws.clone(), args.logs_dir.clone())
        }
        _ => {
            let bin_dir = cloud::pick_bin_dir(args.bin_dir.as_deref(), &root)?;
            let state_dir = args.state_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("courier-bench-{}", std::process::id()))
            });
            eprintln!(
                "starting the local cloud from {} (state {})",
                bin_dir.display(),
                state_dir.display()
            );
            let root2 = root.clone();
            tokio::task::spawn_blocking(move || cloud::Stack::start(&root2, &bin_dir, &state_dir))
                .await
                .context("starting the local cloud")??
        }
    };
    eprintln!("HTTP {}  WebSocket {}", stack.http_url, stack.ws_url);
    if args.mix {
        let outcome = mix::run(&args, &stack).await;
        if let (Ok(report), Some(path)) = (&outcome, &args.json) {
            std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(dir) = &stack.state_dir {
            eprintln!("local cloud logs: {}", dir.join("logs").display());
        }
        tokio::task::spawn_blocking(move || stack.stop()).await?;
        return outcome.map(|_| ());
    }
    let outcome = load::run(&args, &stack).await;
    let result = match outcome {
        Ok(results) => {
            let report = report::Report::new(&args, &stack, results);
            report.print();
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Some(dir) = &stack.state_dir {
        eprintln!("local cloud logs: {}", dir.join("logs").display());
    }
    tokio::task::spawn_blocking(move || stack.stop()).await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn args_parse() {
        let a = Args::try_parse_from([
            "courier-bench",
            "--clients",
            "10",
            "--rate",
            "20",
            "--duration",
            "5s",
        ])
        .unwrap();
        assert_eq!((a.clients, a.rate), (10, 20.0));
        assert_eq!(a.duration, Duration::from_secs(5));
        assert!(Args::try_parse_from(["courier-bench", "--http-url", "http://x"]).is_err());
    }
}
