//! `courier-coldstart`: for every function of template.yaml, the time from spawning its binary to
//! its first `GET /2018-06-01/runtime/invocation/next` (what Lambda counts as init), the median
//! of `--runs` fresh processes, beside the same figure for `hello-lambda` (a bare
//! `lambda_runtime` function) built with the same profile.
//!
//! The two are measured in turns (hello-lambda, the function, hello-lambda, ...), and each
//! function's ratio is to hello-lambda's median over the same turns: the machine's speed drifts
//! by more than the difference being measured (four runs a minute apart here, each measuring
//! hello-lambda once at its start, got medians of 1.19 to 1.42 ms).
//!
//! Each process gets the function's environment from the template (as the local cloud resolves
//! it), a region, placeholder credentials, no EC2 metadata, and a Runtime API address on
//! 127.0.0.1 that answers nothing: the measurement ends when the request line of the first
//! `/next` arrives, and the process is killed. Nothing reaches AWS.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! target/release/courier-coldstart --runs 20
//! ```

use anyhow::{Context, Result, bail};
use clap::Parser;
use courier_local::template::{Template, TemplateOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "courier-coldstart", version)]
struct Args {
    /// Where the function binaries and `hello-lambda` are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Fresh processes per function; the median and the slowest are reported.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The template whose functions are measured.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only the functions served by these binaries (comma-separated); all when absent.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Spawns `binary` once and returns the time to its first `/next`.
async fn once(binary: &Path, env: &BTreeMap<String, String>) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    let first_next = async {
        loop {
            let (mut socket, _) = listener.accept().await?;
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.windows(2).any(|w| w == b"\r\n") {
                let n = socket.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            if request.starts_with(b"GET /2018-06-01/runtime/invocation/next") {
                return anyhow::Ok(started.elapsed());
            }
        }
    };
    let took = tokio::select! {
        t = first_next => t?,
        status = child.wait() => bail!("{} exited before its first /next: {status:?}", binary.display()),
        _ = tokio::time::sleep(Duration::from_secs(10)) => bail!("{}: no /next within 10 s", binary.display()),
    };
    let _ = child.kill().await;
    Ok(took)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// (median, max) in milliseconds.
fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (median(&ms), ms[ms.len() - 1])
}

/// A binary and its environment.
struct Spawn<'a> {
    binary: &'a Path,
    env: &'a BTreeMap<String, String>,
}

/// Runs `first` and `second` in turns, `runs` times each: each one's times in milliseconds.
async fn in_turns(first: &Spawn<'_>, second: &Spawn<'_>, runs: usize) -> Result<[Vec<f64>; 2]> {
    let mut ms = [Vec::with_capacity(runs), Vec::with_capacity(runs)];
    for _ in 0..runs {
        for (i, s) in [first, second].into_iter().enumerate() {
            ms[i].push(once(s.binary, s.env).await?.as_secs_f64() * 1000.0);
        }
    }
    Ok(ms)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let text = std::fs::read_to_string(&args.template)
        .with_context(|| format!("reading {}", args.template.display()))?;
    let app = Template::parse(&text, TemplateOptions::default())?.application()?;
    let mut base = BTreeMap::new();
    for (k, v) in [
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "placeholder"),
        ("AWS_SECRET_ACCESS_KEY", "placeholder"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("_HANDLER", "bootstrap"),
    ] {
        base.insert(k.to_owned(), v.to_owned());
    }
    let hello = args.bin_dir.join("hello-lambda");
    let mut hello_env = base.clone();
    hello_env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), "hello".into());
    let hello = Spawn {
        binary: &hello,
        env: &hello_env,
    };
    once(hello.binary, hello.env)
        .await
        .context("build it: cargo build --release -p courier-bench --bin hello-lambda")?;
    println!(
        "{:<44} {:>9} {:>8} {:>9} {:>7}",
        "function (binary)", "median ms", "max ms", "hello ms", "x hello"
    );
    let mut rows = Vec::new();
    let mut hello_all = Vec::new();
    for f in app.functions.values() {
        if !args.only.is_empty() && !args.only.contains(&f.binary) {
            continue;
        }
        let mut env = base.clone();
        env.extend(f.environment.clone());
        env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), f.function_name.clone());
        let function = Spawn {
            binary: &args.bin_dir.join(&f.binary),
            env: &env,
        };
        let [hello_ms, ms] = in_turns(&hello, &function, args.runs).await?;
        hello_all.extend_from_slice(&hello_ms);
        let ((med, max), (hello_med, _)) = (summary(ms), summary(hello_ms));
        let label = format!("{} ({})", f.logical_id, f.binary);
        println!(
            "{label:<44} {med:>9.2} {max:>8.2} {hello_med:>9.2} {:>7.2}",
            med / hello_med
        );
        rows.push(serde_json::json!({
            "function": f.logical_id, "binary": f.binary, "medianMs": med, "maxMs": max,
            "helloMedianMs": hello_med, "ratioToHello": med / hello_med,
        }));
    }
    if rows.is_empty() {
        bail!("no function matches --only");
    }
    let (hello_median, hello_max) = summary(hello_all);
    let highest = |name: &str| {
        rows.iter()
            .filter_map(|r| r[name].as_f64())
            .fold(0.0, f64::max)
    };
    let (worst, worst_ratio) = (highest("medianMs"), highest("ratioToHello"));
    println!(
        "\n{} functions, {} runs each in turns with hello-lambda (median {hello_median:.2} ms over all turns); slowest function median {worst:.2} ms; highest ratio {worst_ratio:.2}x",
        rows.len(),
        args.runs,
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "runs": args.runs, "binDir": args.bin_dir, "hello": {"medianMs": hello_median, "maxMs": hello_max},
            "functions": rows,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    }
    Ok(())
}
