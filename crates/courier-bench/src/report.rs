//! The results: a table on stdout and the same figures as JSON (`--json`).

use crate::Args;
use crate::cloud::Stack;
use crate::emf::Cost;
use crate::load::Results;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// The operations one message costs: the send, its fan-out, and the recipient's receipt.
pub const MESSAGE_OPERATIONS: [&str; 3] = ["sendMessage", "fanOut", "ackMessages"];

/// The latency goals (the strict local cloud, 100 clients, 25 messages/s; docs/benchmarks.md):
/// delivery p50.
pub const TARGET_P50_MS: f64 = 20.0;
/// p99 delivery latency goal.
pub const TARGET_P99_MS: f64 = 60.0;
/// Delivery p50 at most this many times the `sendMessage` reply p50: a live message costs about
/// what its own send costs, it does not wait for anything else.
pub const TARGET_DELIVERY_OVER_REPLY: f64 = 2.0;
/// The rate the latency goals are set for.
pub const TARGET_RATE: f64 = 25.0;
/// Write units per one-to-one message: the stream-driven path's 3.0 and at most one more for
/// inline delivery's outcome.
pub const TARGET_WRITE_UNITS: f64 = 4.0;
/// Read units per one-to-one message.
pub const TARGET_READ_UNITS: f64 = 4.0;
/// Posts to each live recipient device per message (a second post is the stream's fan-out
/// delivering what the send already had).
pub const TARGET_POSTS_PER_DEVICE: f64 = 1.05;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Percentiles {
    /// How many samples were taken.
    pub count: u64,
    /// Their arithmetic mean.
    pub mean: f64,
    /// Their median (50th percentile).
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The largest sample.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// One target and whether the run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The bound (at most).
    pub at_most: f64,
    /// What the run measured.
    pub measured: f64,
    /// measured ≤ at_most.
    pub met: bool,
}

/// The cost side of the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    /// Totals during the load by operation (every operation that ran).
    pub by_operation: BTreeMap<String, Cost>,
    /// sendMessage, fanOut, ackMessages: their totals divided by the messages sent.
    pub per_message: BTreeMap<String, Cost>,
    /// sendMessage + fanOut per message (the message itself, without the receipt).
    pub message_path_per_message: Cost,
    /// sendMessage + fanOut + ackMessages per message.
    pub total_per_message: Cost,
}

/// Everything the run measured, as written to `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The command line.
    pub command: String,
    /// Logical CPUs of this machine, and its CPU model.
    pub cpus: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// Where the function binaries came from (when the benchmark started the cloud).
    pub bin_dir: Option<String>,
    /// Clients (users, one device and connection each).
    pub clients: usize,
    /// One-to-one sessions.
    pub sessions: usize,
    /// Target send rate, messages/s.
    pub target_rate: f64,
    /// Seconds of sending asked for (measured).
    pub duration_secs: f64,
    /// Seconds of warm-up before it (same rate, not measured).
    pub warmup_secs: f64,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Whether recipients acknowledged `delivered`.
    pub receipts: bool,
    /// Messages sent (successful `sendMessage`).
    pub sent: u64,
    /// `sendMessage` failures and timeouts.
    pub send_errors: u64,
    /// The first send failure.
    pub first_send_error: Option<String>,
    /// Sent messages received at least once.
    pub received: u64,
    /// Receipts beyond the first.
    pub duplicates: u64,
    /// Deliveries (message × recipient) missing at the end of the drain.
    pub lost: u64,
    /// Recipients per message (1 one-to-one; members - 1 in a group).
    pub recipients: u64,
    /// Whether this was a group run (`--group`).
    pub group: bool,
    /// Received messages that no successful send reported.
    pub unexpected: u64,
    /// Sent messages per second, first send to last send reply.
    pub send_rate: f64,
    /// Messages delivered per second, first send to last first receipt.
    pub delivery_rate: f64,
    /// Delivery latency (receive time - send time) of every delivery, ms.
    pub latency_ms: Percentiles,
    /// Send until the last recipient had the message, ms.
    pub completion_ms: Percentiles,
    /// `sendMessage` request to reply, ms.
    pub send_reply_ms: Percentiles,
    /// `ackMessages` sent (delivered receipts).
    pub acks: u64,
    /// Failed acks.
    pub ack_errors: u64,
    /// `status` events the senders received.
    pub status_events: u64,
    /// What the messages cost, from the functions' EMF lines (absent without logs).
    pub cost: Option<CostReport>,
    /// The targets.
    pub targets: Vec<Target>,
    /// The local cloud's memory, sampled during the measured load (`--memory-every`).
    pub memory: Option<Vec<crate::mem::Sample>>,
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

fn target(name: &str, at_most: f64, measured: f64) -> Target {
    Target {
        name: name.to_owned(),
        at_most,
        measured,
        met: measured <= at_most,
    }
}

impl Report {
    /// Builds the report of a run.
    pub fn new(args: &Args, stack: &Stack, r: Results) -> Report {
        let latency = Percentiles::of(&r.latency);
        let cost = r.cost.map(|by_operation| {
            let mut per_message = BTreeMap::new();
            let mut path = Cost::default();
            let mut total = Cost::default();
            for op in MESSAGE_OPERATIONS {
                let c = by_operation.get(op).copied().unwrap_or_default();
                if op != "ackMessages" {
                    path.add(&c);
                }
                total.add(&c);
                per_message.insert(op.to_owned(), c.per(r.sent));
            }
            CostReport {
                by_operation,
                per_message,
                message_path_per_message: path.per(r.sent),
                total_per_message: total.per(r.sent),
            }
        });
        let reply = Percentiles::of(&r.send_reply);
        let mut targets = vec![
            target("p50 delivery latency, ms", TARGET_P50_MS, latency.p50),
            target("p99 delivery latency, ms", TARGET_P99_MS, latency.p99),
            target(
                "delivery p50 / sendMessage reply p50",
                TARGET_DELIVERY_OVER_REPLY,
                if reply.p50 > 0.0 {
                    latency.p50 / reply.p50
                } else {
                    0.0
                },
            ),
        ];
        if args.group {
            // The one-to-one targets do not apply; the group figures are reported as measured.
            targets.clear();
        }
        if let Some(c) = cost.as_ref().filter(|_| !args.group) {
            // The message itself: its send and its fan-out. The recipient's receipt is an
            // operation of its own (one ack covers every message up to it), shown beside.
            targets.push(target(
                "write units per message (send + fan-out)",
                TARGET_WRITE_UNITS,
                c.message_path_per_message.write_units,
            ));
            targets.push(target(
                "read units per message (send + fan-out)",
                TARGET_READ_UNITS,
                c.message_path_per_message.read_units,
            ));
        }
        if let Some(c) = cost.as_ref() {
            // Every management call of the message path but the sender's reply is a post to a
            // recipient's live device.
            targets.push(target(
                "posts per live recipient device per message",
                TARGET_POSTS_PER_DEVICE,
                (c.message_path_per_message.management_api_calls - 1.0).max(0.0)
                    / r.recipients.max(1) as f64,
            ));
        }
        let rate = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            bin_dir: stack.bin_dir.as_ref().map(|d| d.display().to_string()),
            clients: args.clients,
            sessions: r.sessions,
            target_rate: args.rate,
            duration_secs: args.duration.as_secs_f64(),
            warmup_secs: args.warmup.as_secs_f64(),
            payload_bytes: args.payload_bytes,
            receipts: !args.no_receipts,
            sent: r.sent,
            send_errors: r.send_errors,
            first_send_error: r.first_send_error,
            received: r.received,
            duplicates: r.duplicates,
            lost: r.lost,
            recipients: r.recipients,
            group: args.group,
            unexpected: r.unexpected,
            send_rate: rate(r.sent, r.send_secs),
            delivery_rate: rate(r.received, r.delivery_secs) / r.recipients.max(1) as f64,
            latency_ms: latency,
            completion_ms: Percentiles::of(&r.completion),
            send_reply_ms: reply,
            acks: r.acks,
            ack_errors: r.ack_errors,
            status_events: r.status_events,
            cost,
            targets,
            memory: r.memory,
        }
    }

    /// Prints the tables.
    pub fn print(&self) {
        println!();
        println!(
            "courier-bench: {} clients ({} sessions), target {} msg/s for {} s (after {} s of warm-up), {} B payloads; {} CPUs{}",
            self.clients,
            self.sessions,
            self.target_rate,
            self.duration_secs,
            self.warmup_secs,
            self.payload_bytes,
            self.cpus,
            self.cpu_model
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
        if !self.receipts {
            println!("recipients sent no delivered receipts (--no-receipts)");
        }
        if let Some(dir) = &self.bin_dir {
            println!("binaries: {dir}");
        }
        println!();
        println!(
            "messages  sent {}  send errors {}  received {}  lost {}  duplicates {}  unexpected {}",
            self.sent, self.send_errors, self.received, self.lost, self.duplicates, self.unexpected
        );
        if let Some(e) = &self.first_send_error {
            println!("first send error: {e}");
        }
        println!(
            "throughput  sent {:.1} msg/s  delivered {:.1} msg/s",
            self.send_rate, self.delivery_rate
        );
        println!(
            "receipts  acks {} (errors {})  status events {}",
            self.acks, self.ack_errors, self.status_events
        );
        println!();
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "mean", "p50", "p95", "p99", "max"
        );
        for (name, p) in [
            ("delivery", &self.latency_ms),
            ("last recipient has it", &self.completion_ms),
            ("sendMessage reply", &self.send_reply_ms),
        ] {
            println!(
                "{:<24} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, p.count, p.mean, p.p50, p.p95, p.p99, p.max
            );
        }
        println!();
        match &self.cost {
            None => println!("cost: no function logs to read (pass --logs-dir with --http-url)"),
            Some(c) => {
                println!(
                    "{:<24} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    "per message sent",
                    "invocations",
                    "DDB calls",
                    "read units",
                    "write units",
                    "mgmt calls",
                    "SNS pub"
                );
                let row = |name: &str, c: &Cost| {
                    println!(
                        "{:<24} {:>11} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                        name,
                        c.invocations,
                        c.dynamodb_calls,
                        c.read_units,
                        c.write_units,
                        c.management_api_calls,
                        c.sns_publishes
                    )
                };
                for op in MESSAGE_OPERATIONS {
                    row(op, &c.per_message[op]);
                }
                row("send + fan-out", &c.message_path_per_message);
                row("total", &c.total_per_message);
                let others: Vec<_> = c
                    .by_operation
                    .iter()
                    .filter(|(op, _)| !MESSAGE_OPERATIONS.contains(&op.as_str()))
                    .map(|(op, c)| format!("{op} ×{}", c.invocations))
                    .collect();
                if !others.is_empty() {
                    println!("other invocations during the load: {}", others.join(", "));
                }
            }
        }
        println!();
        for t in &self.targets {
            println!(
                "target {:<52} ≤ {:>5}  measured {:>8.2}  {}",
                t.name,
                t.at_most,
                t.measured,
                if t.met { "met" } else { "MISSED" }
            );
        }
        if self.group {
            println!(
                "group of {}: each message has {} recipients (deliveries counted per recipient)",
                self.clients, self.recipients
            );
        } else if self.clients != 100 || self.target_rate != TARGET_RATE {
            println!(
                "(the latency goals are set for 100 clients at {TARGET_RATE} msg/s; this run offered another load)"
            );
        }
        if self.delivery_rate < 0.95 * self.target_rate {
            println!(
                "(the stack did not keep up: {:.1} msg/s offered, {:.1} msg/s delivered; latency is queueing)",
                self.target_rate, self.delivery_rate
            );
        }
        if let Some(samples) = &self.memory {
            println!("\nMemory of the local cloud (MiB resident, processes):");
            print!("{}", crate::mem::table(samples));
            println!("\nCPU while sending:");
            print!("{}", crate::mem::cpu_table(samples));
        }
    }
}
