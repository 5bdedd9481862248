//! The functions' CloudWatch Embedded Metric Format lines, aggregated in memory and served as
//! Prometheus text at `GET /_local/metrics`, so a developer sees locally what an operator sees in
//! CloudWatch.
//!
//! Every metric of every EMF line a function prints is added to one series per metric name and
//! dimension values (labels are the dimension names in snake case). A `Count` metric becomes a
//! counter `courier_<name>_total` (the sum of its values); any other unit becomes a summary
//! `courier_<name>_sum` / `courier_<name>_count` (one observation per value).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde_json::Value;

/// How many recent values a series keeps for its percentiles.
const KEPT_VALUES: usize = 1024;

/// One series: the total, how many values made it, and the last [`KEPT_VALUES`] of them.
#[derive(Debug, Clone, Default, PartialEq)]
struct Series {
    sum: f64,
    count: u64,
    recent: std::collections::VecDeque<f64>,
}

/// (metric name, labels sorted by name) -> series; with each metric's unit, and messages sent
/// per minute (Unix minute -> count, the last 60 minutes).
#[derive(Debug, Default)]
struct State {
    series: BTreeMap<(String, Vec<(String, String)>), Series>,
    units: BTreeMap<String, String>,
    sent_per_minute: BTreeMap<u64, f64>,
    /// (UTC day `YYYY-MM-DD` of the EMF timestamp, what) -> sum; `what` is `active` (first
    /// activity of the day) or `sent:<kind>`.
    daily: BTreeMap<(String, String), f64>,
    /// UTC month `YYYY-MM` -> first activities of the month.
    monthly: BTreeMap<String, f64>,
    /// The latest group census: its timestamp and every group's size.
    census: Option<(u64, Vec<f64>)>,
}

/// The analytics figures, as the CloudWatch dashboard derives them from the same metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Analytics {
    /// Today's UTC date.
    pub today: String,
    /// Users active today (first `$connect` of the UTC day).
    pub daily_active_users: f64,
    /// Users active this UTC month.
    pub monthly_active_users: f64,
    /// Messages sent today by kind (direct, group, media, status).
    pub messages_today: Vec<(String, f64)>,
    /// Groups counted by the latest census, and their median size.
    pub groups_counted: usize,
    /// Median group size of the latest census.
    pub median_group_size: Option<f64>,
    /// Delivery latency (ms): how many, p50, p90, p99 of the kept values.
    pub delivery_latency: Option<(u64, f64, f64, f64)>,
}

/// One series as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesView {
    /// Metric name as the functions emit it (`MessagesSent`).
    pub name: String,
    /// The metric's unit (`Count`, `Milliseconds`, ...).
    pub unit: String,
    /// Dimension labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Sum of every value.
    pub sum: f64,
    /// Number of values.
    pub count: u64,
    /// Median of the kept recent values.
    pub p50: f64,
    /// 90th percentile of the kept recent values.
    pub p90: f64,
    /// 99th percentile of the kept recent values.
    pub p99: f64,
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The UTC day (`YYYY-MM-DD`) of a Unix time in milliseconds.
fn utc_day(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

fn unix_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// The in-memory aggregate of every EMF line the local cloud's functions printed.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics of `line` if it is an EMF document; other lines are ignored. Returns
    /// whether it was one.
    pub fn ingest_line(&self, line: &str) -> bool {
        let line = line.trim();
        if !line.starts_with('{') || !line.contains("\"_aws\"") {
            return false;
        }
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        let Some(directives) = doc
            .get("_aws")
            .and_then(|a| a.get("CloudWatchMetrics"))
            .and_then(Value::as_array)
        else {
            return false;
        };
        let timestamp = doc
            .get("_aws")
            .and_then(|a| a.get("Timestamp"))
            .and_then(Value::as_u64)
            .unwrap_or_else(now_ms);
        let day = utc_day(timestamp);
        let mut state = self.state.lock().unwrap();
        for directive in directives {
            // The first dimension set names the series (Courier declares exactly one).
            let mut labels: Vec<(String, String)> = directive
                .get("Dimensions")
                .and_then(|d| d.get(0))
                .and_then(Value::as_array)
                .map(|dims| {
                    dims.iter()
                        .filter_map(Value::as_str)
                        .map(|d| {
                            let v = doc.get(d).and_then(Value::as_str).unwrap_or_default();
                            (snake(d), v.to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            labels.sort();
            let metrics = directive.get("Metrics").and_then(Value::as_array);
            for m in metrics.into_iter().flatten() {
                let Some(name) = m.get("Name").and_then(Value::as_str) else {
                    continue;
                };
                let unit = m.get("Unit").and_then(Value::as_str).unwrap_or("None");
                let values: Vec<f64> = match doc.get(name) {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
                    Some(v) => v.as_f64().into_iter().collect(),
                    None => Vec::new(),
                };
                if values.is_empty() {
                    continue;
                }
                state
                    .units
                    .entry(name.to_owned())
                    .or_insert_with(|| unit.to_owned());
                let s = state
                    .series
                    .entry((name.to_owned(), labels.clone()))
                    .or_default();
                let total: f64 = values.iter().sum();
                for &v in &values {
                    s.sum += v;
                    s.count += 1;
                    if s.recent.len() == KEPT_VALUES {
                        s.recent.pop_front();
                    }
                    s.recent.push_back(v);
                }
                let label = |k: &str| {
                    labels
                        .iter()
                        .find(|(lk, _)| lk == k)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or_default()
                };
                match (name, label("period")) {
                    ("ActiveUsers", "day") => {
                        *state
                            .daily
                            .entry((day.clone(), "active".into()))
                            .or_default() += total;
                    }
                    ("ActiveUsers", "month") => {
                        *state.monthly.entry(day[..7].to_owned()).or_default() += total;
                    }
                    ("MessagesSent", _) => {
                        let key = (day.clone(), format!("sent:{}", label("kind")));
                        *state.daily.entry(key).or_default() += total;
                    }
                    ("GroupSize", _) => {
                        let sizes = values;
                        // One census prints its sizes in several lines of one timestamp.
                        match &mut state.census {
                            Some((t, all)) if *t == timestamp => all.extend(sizes),
                            Some((t, _)) if *t > timestamp => {}
                            _ => state.census = Some((timestamp, sizes)),
                        }
                    }
                    _ => {}
                }
                if name == "MessagesSent" {
                    let now = unix_minute();
                    *state.sent_per_minute.entry(now).or_default() += total;
                    state.sent_per_minute.retain(|m, _| m + 60 > now);
                }
            }
        }
        true
    }

    /// The sum of a metric over every series whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let state = self.state.lock().unwrap();
        state
            .series
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, s)| s.sum)
            .sum()
    }

    /// Every series, sorted by metric name then labels, with its percentiles.
    pub fn series(&self) -> Vec<SeriesView> {
        let state = self.state.lock().unwrap();
        state
            .series
            .iter()
            .map(|((name, labels), s)| {
                let mut sorted: Vec<f64> = s.recent.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                SeriesView {
                    name: name.clone(),
                    unit: state.units.get(name).cloned().unwrap_or_default(),
                    labels: labels.clone(),
                    sum: s.sum,
                    count: s.count,
                    p50: percentile(&sorted, 50.0),
                    p90: percentile(&sorted, 90.0),
                    p99: percentile(&sorted, 99.0),
                }
            })
            .collect()
    }

    /// Messages sent in each of the last 60 minutes, oldest first (minutes ago, count).
    pub fn sent_per_minute(&self) -> Vec<(u64, f64)> {
        let state = self.state.lock().unwrap();
        let now = unix_minute();
        (0..60)
            .rev()
            .map(|ago| {
                let m = now.saturating_sub(ago);
                (ago, state.sent_per_minute.get(&m).copied().unwrap_or(0.0))
            })
            .collect()
    }

    /// The analytics figures for today (UTC) and this month.
    pub fn analytics(&self) -> Analytics {
        let today = utc_day(now_ms());
        let state = self.state.lock().unwrap();
        let of_today = |what: &str| {
            state
                .daily
                .get(&(today.clone(), what.to_owned()))
                .copied()
                .unwrap_or(0.0)
        };
        let messages_today = ["direct", "group", "media", "status"]
            .iter()
            .map(|k| ((*k).to_owned(), of_today(&format!("sent:{k}"))))
            .collect();
        let sizes = state
            .census
            .as_ref()
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let mut sorted = sizes.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => None,
            n if n % 2 == 1 => Some(sorted[n / 2]),
            n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        };
        let latency = state
            .series
            .iter()
            .filter(|((n, _), _)| n == "DeliveryLatencyMs")
            .fold(None::<(u64, Vec<f64>)>, |acc, (_, s)| {
                let (count, mut values) = acc.unwrap_or_default();
                values.extend(s.recent.iter().copied());
                Some((count + s.count, values))
            })
            .map(|(count, mut values)| {
                values.sort_by(f64::total_cmp);
                (
                    count,
                    percentile(&values, 50.0),
                    percentile(&values, 90.0),
                    percentile(&values, 99.0),
                )
            });
        Analytics {
            daily_active_users: of_today("active"),
            monthly_active_users: state.monthly.get(&today[..7]).copied().unwrap_or(0.0),
            today,
            messages_today,
            groups_counted: sizes.len(),
            median_group_size: median,
            delivery_latency: latency,
        }
    }

    /// Forgets everything.
    pub fn reset(&self) {
        *self.state.lock().unwrap() = State::default();
    }

    /// The Prometheus text exposition (version 0.0.4) of every series.
    pub fn prometheus(&self) -> String {
        let state = self.state.lock().unwrap();
        let mut out = String::new();
        let mut last = None;
        for ((name, labels), s) in &state.series {
            let unit = state.units.get(name).map_or("None", String::as_str);
            let family = format!("courier_{}", snake(name));
            let counter = unit == "Count";
            if last != Some(name) {
                let kind = if counter { "counter" } else { "summary" };
                let _ = writeln!(
                    out,
                    "# HELP {family} {name} ({unit}), from the functions' EMF lines."
                );
                let _ = writeln!(out, "# TYPE {family} {kind}");
                last = Some(name);
            }
            if counter {
                let labels = render_labels(labels);
                let _ = writeln!(out, "{family}_total{labels} {}", number(s.sum));
            } else {
                let mut sorted: Vec<f64> = s.recent.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                for q in [0.5, 0.9, 0.99] {
                    let mut with_q = labels.clone();
                    with_q.push(("quantile".to_owned(), q.to_string()));
                    let _ = writeln!(
                        out,
                        "{family}{} {}",
                        render_labels(&with_q),
                        number(percentile(&sorted, q * 100.0))
                    );
                }
                let labels = render_labels(labels);
                let _ = writeln!(out, "{family}_sum{labels} {}", number(s.sum));
                let _ = writeln!(out, "{family}_count{labels} {}", s.count);
            }
        }
        drop(state);
        let a = self.analytics();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
        };
        gauge(
            &mut out,
            "courier_daily_active_users",
            "Users active today (UTC).",
        );
        let _ = writeln!(
            out,
            "courier_daily_active_users {}",
            number(a.daily_active_users)
        );
        gauge(
            &mut out,
            "courier_monthly_active_users",
            "Users active this month (UTC).",
        );
        let _ = writeln!(
            out,
            "courier_monthly_active_users {}",
            number(a.monthly_active_users)
        );
        gauge(
            &mut out,
            "courier_messages_today",
            "Messages sent today (UTC) by kind.",
        );
        for (kind, n) in &a.messages_today {
            let _ = writeln!(
                out,
                "courier_messages_today{{kind=\"{kind}\"}} {}",
                number(*n)
            );
        }
        if let Some(m) = a.median_group_size {
            gauge(
                &mut out,
                "courier_median_group_size",
                "Median group size, latest census.",
            );
            let _ = writeln!(out, "courier_median_group_size {}", number(m));
        }
        out
    }
}

fn render_labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A value as Prometheus and the dashboard print it (integers without a fraction).
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// `MessagesSent` -> `messages_sent`, `DynamoDBCalls` -> `dynamo_db_calls`,
/// `FanOutDurationMs` -> `fan_out_duration_ms`.
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.push('_');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &str = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"Courier","Dimensions":[["Operation","Kind"]],"Metrics":[{"Name":"MessagesSent","Unit":"Count"}]}]},"Operation":"sendMessage","Kind":"direct","MessagesSent":2}"#;
    const SIZE: &str = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"Courier","Dimensions":[["Operation"]],"Metrics":[{"Name":"FanOutSize","Unit":"None"}]}]},"Operation":"fanOut","FanOutSize":[3,5]}"#;

    #[test]
    fn names_become_snake_case() {
        assert_eq!(snake("MessagesSent"), "messages_sent");
        assert_eq!(snake("DynamoDBCalls"), "dynamo_db_calls");
        assert_eq!(snake("FanOutDurationMs"), "fan_out_duration_ms");
        assert_eq!(snake("Operation"), "operation");
    }

    #[test]
    fn counts_are_summed_and_other_units_observed() {
        let m = Metrics::new();
        assert!(m.ingest_line(SENT));
        assert!(m.ingest_line(SENT));
        assert!(m.ingest_line(SIZE));
        assert!(!m.ingest_line(r#"{"level":"INFO","fields":{"message":"hi"}}"#));
        assert!(!m.ingest_line("not json"));
        assert_eq!(m.sum("MessagesSent", &[("kind", "direct")]), 4.0);
        assert_eq!(m.sum("MessagesSent", &[("kind", "group")]), 0.0);
        let text = m.prometheus();
        assert!(text.contains("# TYPE courier_messages_sent counter\n"));
        assert!(text.contains(
            "courier_messages_sent_total{kind=\"direct\",operation=\"sendMessage\"} 4\n"
        ));
        assert!(text.contains("# TYPE courier_fan_out_size summary\n"));
        assert!(text.contains("courier_fan_out_size_sum{operation=\"fanOut\"} 8\n"));
        assert!(text.contains("courier_fan_out_size_count{operation=\"fanOut\"} 2\n"));
        let size = m
            .series()
            .into_iter()
            .find(|s| s.name == "FanOutSize")
            .unwrap();
        assert_eq!((size.count, size.p50, size.p99), (2, 3.0, 5.0));
        assert_eq!(m.sent_per_minute().last().unwrap(), &(0, 4.0));
        assert!(text.contains("courier_fan_out_size{operation=\"fanOut\",quantile=\"0.5\"} 3\n"));
        assert!(text.contains("courier_fan_out_size{operation=\"fanOut\",quantile=\"0.99\"} 5\n"));
        m.reset();
        let after = m.prometheus();
        assert!(!after.contains("courier_messages_sent"), "{after}");
        assert!(!after.contains("courier_fan_out_size"), "{after}");
        assert!(after.contains("courier_daily_active_users 0\n"));
    }
}
