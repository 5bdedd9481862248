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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
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
    let out = handler.await;
    let totals = capacity::take();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut line = emf_line(operation, &totals, now_ms);
    line.push('\n');
    // One write of the whole line, so it is not interleaved with the JSON log lines.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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

    #[tokio::test]
    async fn metered_passes_the_output_through() {
        assert_eq!(metered("test", async { 42 }).await, 42);
    }
}
