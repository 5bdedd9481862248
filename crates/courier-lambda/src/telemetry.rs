//! Structured JSON logs for CloudWatch. Handlers log ids and outcomes, never payloads, codes or keys.
//!
//! After every invocation, [`metered`] prints one line with what it cost (from
//! [`courier_aws::capacity`]) in CloudWatch Embedded Metric Format, so the log line is also a
//! metric (`Courier` namespace, dimension `Operation`) once deployed; `courier-bench` reads the
//! same lines from the local cloud's logs.

use courier_aws::capacity::{self, Totals};
use serde::Serialize;
use std::future::Future;
use std::io::Write;

/// Installs the JSON subscriber (filter from `RUST_LOG`, default `info`). Safe to call twice.
pub fn init() {
    let _ = started();
    let fmt = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_target(false)
        .without_time();
    let _ = match log_filter(&std::env::var("RUST_LOG").unwrap_or_default()) {
        LogFilter::Level(level) => fmt.with_max_level(level).try_init(),
        LogFilter::Directives(filter) => fmt.with_env_filter(*filter).try_init(),
    };
}

/// What `RUST_LOG` asks for.
#[derive(Debug)]
enum LogFilter {
    Level(tracing_subscriber::filter::LevelFilter),
    Directives(Box<tracing_subscriber::EnvFilter>),
}

/// A plain level (template.yaml sets `RUST_LOG: info`), or nothing (`info`), is a level filter;
/// only directives (`courier_core=debug,info`) get an `EnvFilter`, which parses them and builds
/// matchers: init time on every cold start. Directives that do not parse mean `info`.
fn log_filter(rust_log: &str) -> LogFilter {
    use tracing_subscriber::filter::LevelFilter;
    let rust_log = rust_log.trim();
    if rust_log.is_empty() {
        return LogFilter::Level(LevelFilter::INFO);
    }
    match rust_log.parse::<LevelFilter>() {
        Ok(level) => LogFilter::Level(level),
        Err(_) => LogFilter::Directives(Box::new(
            tracing_subscriber::EnvFilter::try_new(rust_log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )),
    }
}

/// The metrics of the per-invocation line, in this order.
pub const METRICS: [&str; 5] = [
    "DynamoDBCalls",
    "DynamoDBReadUnits",
    "DynamoDBWriteUnits",
    "ManagementApiCalls",
    "SnsPublishes",
];

/// The operation this function serves (`COURIER_OPERATION`, set on every function in
/// template.yaml), or `"unknown"`.
pub fn operation() -> &'static str {
    static OP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OP.get_or_init(|| {
        std::env::var("COURIER_OPERATION")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    })
}

#[derive(Serialize)]
struct MetricName {
    #[serde(rename = "Name")]
    name: &'static str,
    #[serde(rename = "Unit")]
    unit: &'static str,
}

#[derive(Serialize)]
struct MetricDirective {
    #[serde(rename = "Namespace")]
    namespace: &'static str,
    #[serde(rename = "Dimensions")]
    dimensions: [[&'static str; 1]; 1],
    #[serde(rename = "Metrics")]
    metrics: Vec<MetricName>,
}

#[derive(Serialize)]
struct Metadata {
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "CloudWatchMetrics")]
    cloudwatch_metrics: [MetricDirective; 1],
}

/// One EMF document; a struct, so `_aws` comes first as in AWS's examples.
#[derive(Serialize)]
struct Emf<'a> {
    #[serde(rename = "_aws")]
    aws: Metadata,
    #[serde(rename = "Operation")]
    operation: &'a str,
    #[serde(rename = "DynamoDBCalls")]
    dynamodb_calls: u64,
    #[serde(rename = "DynamoDBReadUnits")]
    read_units: f64,
    #[serde(rename = "DynamoDBWriteUnits")]
    write_units: f64,
    #[serde(rename = "ManagementApiCalls")]
    management_api_calls: u64,
    #[serde(rename = "SnsPublishes")]
    sns_publishes: u64,
}

/// The Embedded Metric Format line (without the newline) for one invocation of `operation`
/// that cost `totals`.
pub fn emf_line(operation: &str, totals: &Totals, timestamp_ms: u64) -> String {
    let doc = Emf {
        aws: Metadata {
            timestamp: timestamp_ms,
            cloudwatch_metrics: [MetricDirective {
                namespace: "Courier",
                dimensions: [["Operation"]],
                metrics: METRICS
                    .iter()
                    .map(|&name| MetricName {
                        name,
                        unit: "Count",
                    })
                    .collect(),
            }],
        },
        operation,
        dynamodb_calls: totals.dynamodb_calls,
        read_units: totals.read_units,
        write_units: totals.write_units,
        management_api_calls: totals.management_api_calls,
        sns_publishes: totals.sns_publishes,
    };
    serde_json::to_string(&doc).expect("plain data serialises")
}

/// Runs one invocation's handler future, then prints its cost as one EMF line on stdout and
/// resets the totals. The totals are reset first too, so nothing done between invocations
/// (or at cold start) is charged to this one.
pub async fn metered<F: Future>(operation: &str, handler: F) -> F::Output {
    capacity::take();
    take_recorded();
    cold_start();
    let out = handler.await;
    let totals = capacity::take();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut line = emf_line(operation, &totals, now_ms);
    line.push('\n');
    for business in business_lines(operation, &take_recorded(), now_ms) {
        line.push_str(&business);
        line.push('\n');
    }
    // One write of the whole line, so it is not interleaved with the JSON log lines.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
    out
}

/// The unit of a business metric, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Things that happened; values of one invocation are summed.
    Count,
    /// A duration; every value is kept (EMF value array).
    Milliseconds,
    /// A size or other plain number; every value is kept (EMF value array).
    None,
}

impl Unit {
    /// CloudWatch's name of the unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

/// One business measurement, waiting for the end of its invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Metric name, e.g. `MessagesSent`.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// An extra dimension besides `Operation` (name, value), e.g. `("Kind", "direct")`.
    pub dimension: Option<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

static RECORDED: std::sync::Mutex<Vec<Recorded>> = std::sync::Mutex::new(Vec::new());

fn push(r: Recorded) {
    RECORDED.lock().unwrap_or_else(|e| e.into_inner()).push(r);
}

/// Adds `value` to the counter `name` of this invocation (emitted by [`metered`]).
pub fn count(name: &'static str, value: u64) {
    push(Recorded {
        name,
        unit: Unit::Count,
        dimension: None,
        value: value as f64,
    });
}

/// Adds `value` to the counter `name` with one extra dimension, e.g.
/// `count_by("MessagesSent", "Kind", "direct", 1)`. Dimension values must be low-cardinality
/// labels, never ids, payloads, codes or keys.
pub fn count_by(name: &'static str, dimension: &'static str, label: &str, value: u64) {
    push(Recorded {
        name,
        unit: Unit::Count,
        dimension: Some((dimension, label.to_owned())),
        value: value as f64,
    });
}

/// Records one observation of a distribution (a duration or a size).
pub fn observe(name: &'static str, unit: Unit, value: f64) {
    push(Recorded {
        name,
        unit,
        dimension: None,
        value,
    });
}

/// Takes what this invocation recorded so far.
pub fn take_recorded() -> Vec<Recorded> {
    std::mem::take(&mut *RECORDED.lock().unwrap_or_else(|e| e.into_inner()))
}

/// When this process started (first call: [`init`], at cold start).
fn started() -> std::time::Instant {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(std::time::Instant::now)
}

/// On the first invocation of the process, records `ColdStart` and `InitDurationMs` (from
/// [`init`] to this first invocation).
fn cold_start() {
    static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    if FIRST.swap(false, std::sync::atomic::Ordering::Relaxed) {
        count("ColdStart", 1);
        observe(
            "InitDurationMs",
            Unit::Milliseconds,
            started().elapsed().as_secs_f64() * 1000.0,
        );
    }
}

/// Values per metric in one EMF document (CloudWatch's limit).
const MAX_VALUES: usize = 100;

/// The EMF lines (without newlines) for business measurements: one line per metric and
/// dimension value, counts summed, other units as a value array.
pub fn business_lines(operation: &str, recorded: &[Recorded], timestamp_ms: u64) -> Vec<String> {
    // (name, unit, dimension) in first-seen order, with their values.
    let mut groups: Vec<(&Recorded, Vec<f64>)> = Vec::new();
    for r in recorded {
        match groups
            .iter_mut()
            .find(|(g, _)| g.name == r.name && g.unit == r.unit && g.dimension == r.dimension)
        {
            Some((_, values)) => values.push(r.value),
            None => groups.push((r, vec![r.value])),
        }
    }
    groups
        .into_iter()
        .flat_map(|(r, values)| {
            // EMF takes at most 100 values per metric in one document.
            let batches: Vec<Vec<f64>> = if r.unit == Unit::Count {
                vec![values]
            } else {
                values.chunks(MAX_VALUES).map(<[f64]>::to_vec).collect()
            };
            batches
                .into_iter()
                .map(move |values| line_of(operation, r, &values, timestamp_ms))
        })
        .collect()
}

/// One EMF document for `values` of the metric `r`.
fn line_of(operation: &str, r: &Recorded, values: &[f64], timestamp_ms: u64) -> String {
    let mut dims = vec!["Operation"];
    let mut doc = serde_json::Map::new();
    doc.insert("Operation".into(), operation.into());
    if let Some((dim, label)) = &r.dimension {
        dims.push(dim);
        doc.insert((*dim).into(), label.as_str().into());
    }
    let value = if r.unit == Unit::Count {
        let sum = values.iter().sum::<f64>();
        if sum.fract() == 0.0 && sum >= 0.0 && sum < u64::MAX as f64 {
            serde_json::json!(sum as u64)
        } else {
            serde_json::json!(sum)
        }
    } else {
        serde_json::json!(values)
    };
    doc.insert(r.name.into(), value);
    let aws = serde_json::json!({
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": [{
            "Namespace": "Courier",
            "Dimensions": [dims],
            "Metrics": [{"Name": r.name, "Unit": r.unit.as_str()}],
        }],
    });
    // `_aws` first, as in AWS's examples (a plain map would sort it last).
    let rest = serde_json::Value::Object(doc).to_string();
    format!("{{\"_aws\":{aws},{}", &rest[1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn rust_log_levels_are_level_filters_and_only_directives_get_an_env_filter() {
        use tracing_subscriber::filter::LevelFilter;
        for (rust_log, level) in [
            ("", LevelFilter::INFO),
            ("info", LevelFilter::INFO),
            (" WARN ", LevelFilter::WARN),
            ("debug", LevelFilter::DEBUG),
            ("off", LevelFilter::OFF),
        ] {
            match log_filter(rust_log) {
                LogFilter::Level(l) => assert_eq!(l, level, "{rust_log:?}"),
                other => panic!("{rust_log:?}: {other:?}"),
            }
        }
        match log_filter("courier_core=debug,info") {
            LogFilter::Directives(f) => {
                assert_eq!(f.to_string(), "courier_core=debug,info");
            }
            other => panic!("{other:?}"),
        }
        match log_filter("courier_core=loud") {
            LogFilter::Directives(f) => assert_eq!(f.to_string(), "info", "unparsable: info"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn emf_line_has_the_metrics_and_their_values() {
        let totals = Totals {
            dynamodb_calls: 3,
            read_units: 2.0,
            write_units: 4.0,
            management_api_calls: 1,
            sns_publishes: 0,
        };
        let line = emf_line("sendMessage", &totals, 1_700_000_000_000);
        assert!(line.starts_with(r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Courier","Dimensions":[["Operation"]],"Metrics":[{"Name":"DynamoDBCalls","Unit":"Count"},"#));
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "Courier");
        assert_eq!(m["Dimensions"], json!([["Operation"]]));
        assert_eq!(m["Metrics"].as_array().unwrap().len(), 5);
        assert_eq!(v["Operation"], "sendMessage");
        assert_eq!(v["DynamoDBCalls"], 3);
        assert_eq!(v["DynamoDBReadUnits"], 2.0);
        assert_eq!(v["DynamoDBWriteUnits"], 4.0);
        assert_eq!(v["ManagementApiCalls"], 1);
        assert_eq!(v["SnsPublishes"], 0);
        // Every declared metric has a value at the top level, as EMF requires.
        for name in METRICS {
            assert!(v[name].is_number(), "{name}");
        }
    }

    #[test]
    fn business_lines_sum_counts_and_keep_observations() {
        // Built by hand: the process-wide recorder is shared with the other tests.
        let sent = |kind: &str| Recorded {
            name: "MessagesSent",
            unit: Unit::Count,
            dimension: Some(("Kind", kind.to_owned())),
            value: 1.0,
        };
        let size = |value| Recorded {
            name: "FanOutSize",
            unit: Unit::None,
            dimension: None,
            value,
        };
        let recorded = [
            sent("direct"),
            size(3.0),
            sent("group"),
            sent("direct"),
            size(5.0),
        ];
        let lines = business_lines("sendMessage", &recorded, 7);
        assert_eq!(lines.len(), 3);
        let v: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines[0].starts_with(r#"{"_aws":"#));
        assert_eq!(
            v[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Operation", "Kind"]])
        );
        assert_eq!(v[0]["Kind"], "direct");
        assert_eq!(v[0]["MessagesSent"], 2);
        assert!(
            lines[0].ends_with(r#""Kind":"direct","MessagesSent":2,"Operation":"sendMessage"}"#)
        );
        assert_eq!(v[1]["FanOutSize"], json!([3.0, 5.0]));
        assert_eq!(
            v[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "None"
        );
        assert_eq!(
            v[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Operation"]])
        );
        assert_eq!(v[2]["Kind"], "group");
        assert_eq!(v[2]["MessagesSent"], 1);
    }

    #[tokio::test]
    async fn metered_passes_the_output_through() {
        assert_eq!(metered("test", async { 42 }).await, 42);
    }

    #[test]
    fn more_than_a_hundred_values_are_split_into_documents_of_at_most_a_hundred() {
        let recorded: Vec<Recorded> = (0..250)
            .map(|i| Recorded {
                name: "GroupSize",
                unit: Unit::None,
                dimension: None,
                value: f64::from(i),
            })
            .collect();
        let lines = business_lines("groupCensus", &recorded, 1);
        let docs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let sizes: Vec<usize> = docs
            .iter()
            .map(|d| d["GroupSize"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let all: Vec<f64> = docs
            .iter()
            .flat_map(|d| {
                d["GroupSize"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
            })
            .collect();
        assert_eq!(
            all,
            (0..250).map(f64::from).collect::<Vec<_>>(),
            "every value, in order"
        );
    }
}
