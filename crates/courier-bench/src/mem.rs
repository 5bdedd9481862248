//! Memory of the local cloud's process tree, sampled while a load runs (`--memory-every`): the
//! resident set of courier-local itself, DynamoDB Local's JVM, moto, and every function's
//! processes (summed per binary, with the process count), read from `/proc`; and the CPU time
//! each program has used so far (live processes only: an exited process's time is gone).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// One sample: seconds since the load started, and per program its processes and resident KiB.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub at_secs: f64,
    /// Program name → (processes, resident set in KiB).
    pub programs: BTreeMap<String, (usize, u64)>,
    /// Program name → CPU seconds (user + system) its live processes have used.
    #[serde(default)]
    pub cpu_secs: BTreeMap<String, f64>,
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime
    // are the 14th and 15th fields, i.e. the 12th and 13th after it.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Pid → (parent pid, name, resident KiB) for every process readable in `/proc`.
fn processes() -> HashMap<u32, (u32, String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let name = field("Name:").unwrap_or_default();
        let ppid = field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0);
        let rss = field("VmRSS:")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.insert(pid, (ppid, name, rss));
    }
    out
}

/// A program's name for the report: the JVM is DynamoDB Local, Python is moto.
fn label(name: &str) -> String {
    match name {
        "java" => "DynamoDB Local (java)".into(),
        n if n.starts_with("python") || n.starts_with("moto") => "moto (python)".into(),
        n => n.into(),
    }
}

/// The process tree under `root` (itself included), summed per program: memory and CPU.
pub fn sample(root: u32) -> (BTreeMap<String, (usize, u64)>, BTreeMap<String, f64>) {
    let all = processes();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, (ppid, _, _)) in &all {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut mem: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if let Some((_, name, rss)) = all.get(&pid) {
            let e = mem.entry(label(name)).or_default();
            e.0 += 1;
            e.1 += rss;
            *cpu.entry(label(name)).or_default() += cpu_secs(pid);
        }
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    (mem, cpu)
}

/// Samples the tree under `root` now and every `every` until the returned handle is stopped.
pub struct Sampler {
    samples: std::sync::Arc<std::sync::Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start(root: u32, every: Duration) -> Sampler {
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = samples.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let (programs, cpu_secs) = sample(root);
                let sample = Sample {
                    at_secs: started.elapsed().as_secs_f64(),
                    programs,
                    cpu_secs,
                };
                eprintln!("memory at {:.0} s: {}", sample.at_secs, summary(&sample));
                s2.lock().unwrap().push(sample);
            }
        });
        Sampler { samples, task }
    }

    /// Takes one last sample and returns them all.
    pub fn stop(self, root: u32, started: Instant) -> Vec<Sample> {
        self.task.abort();
        let mut all = std::mem::take(&mut *self.samples.lock().unwrap());
        let (programs, cpu_secs) = sample(root);
        all.push(Sample {
            at_secs: started.elapsed().as_secs_f64(),
            programs,
            cpu_secs,
        });
        all
    }
}

/// `name n×KiB` per program on one line.
pub fn summary(s: &Sample) -> String {
    s.programs
        .iter()
        .map(|(name, (n, kib))| format!("{name} {n}×{:.1} MiB", *kib as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table of the samples: one row per sample, one column per program (MiB in all its processes).
pub fn table(samples: &[Sample]) -> String {
    let mut names: Vec<&String> = samples.iter().flat_map(|s| s.programs.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = format!(
        "| at | {} | total |\n|---|{}---|\n",
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(names.len())
    );
    for s in samples {
        let mut total = 0;
        let cells: Vec<String> = names
            .iter()
            .map(|n| match s.programs.get(*n) {
                Some((count, kib)) => {
                    total += kib;
                    format!("{:.1} ({count})", *kib as f64 / 1024.0)
                }
                None => "-".into(),
            })
            .collect();
        out += &format!(
            "| {:.0} s | {} | {:.1} |\n",
            s.at_secs,
            cells.join(" | "),
            total as f64 / 1024.0
        );
    }
    out
}

/// CPU seconds each program used between the first and the last sample (live processes).
pub fn cpu_table(samples: &[Sample]) -> String {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return String::new();
    };
    let secs = (last.at_secs - first.at_secs).max(1e-9);
    let mut rows: Vec<(&String, f64)> = last
        .cpu_secs
        .iter()
        .map(|(n, c)| (n, c - first.cpu_secs.get(n).copied().unwrap_or(0.0)))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out = format!("| program | CPU s over {secs:.0} s | cores busy |\n|---|---|---|\n");
    for (n, c) in rows {
        out += &format!("| {n} | {c:.1} | {:.2} |\n", c / secs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_in_its_own_tree_with_its_memory() {
        let me = std::process::id();
        let (tree, _) = sample(me);
        let (n, kib) = tree.values().fold((0, 0), |a, (n, k)| (a.0 + n, a.1 + k));
        assert!(n >= 1, "{tree:?}");
        assert!(kib > 0, "a running test has resident memory: {tree:?}");
        // Burn CPU until the sample says this tree used 0.2 CPU s more than at the start. Not a
        // fixed spin: on a loaded machine 300 ms of wall time can be far less CPU time. A sample
        // that did not count CPU would never get there (the wait is generous, not a timing).
        let cpu_now = || sample(me).1.values().sum::<f64>();
        let start = cpu_now();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let mut used = 0.0;
        while used < 0.2 && t.elapsed() < Duration::from_secs(60) {
            for _ in 0..1_000_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            used = cpu_now() - start;
        }
        assert!(
            used >= 0.2,
            "{used} CPU s counted after a minute of spinning ({x})"
        );
    }

    #[test]
    fn the_table_has_a_column_per_program_and_a_total() {
        let s = Sample {
            at_secs: 60.0,
            programs: BTreeMap::from([("a".into(), (2, 2048)), ("b".into(), (1, 1024))]),
            cpu_secs: BTreeMap::new(),
        };
        let t = table(&[s]);
        assert!(t.contains("| at | a | b | total |"), "{t}");
        assert!(t.contains("| 60 s | 2.0 (2) | 1.0 (1) | 3.0 |"), "{t}");
    }
}
