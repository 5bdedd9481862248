//! `GET /_local/dashboard`: one self-contained HTML page (inline CSS and SVG, no scripts but a
//! 5-second reload) with the figures of the CloudWatch dashboard in template.yaml, drawn from the
//! same in-memory aggregate as `/_local/metrics` ([`crate::metrics`]).

use std::fmt::Write as _;

use crate::metrics::{Metrics, SeriesView, number};

/// The panels, in the CloudWatch dashboard's order: (heading, metric names).
const PANELS: &[(&str, &[&str])] = &[
    ("Messages sent", &["MessagesSent"]),
    ("Delivered and read", &["MessagesDelivered", "MessagesRead"]),
    ("Fan-out", &["FanOutSize", "FanOutDurationMs"]),
    ("Pushes and SMS", &["PushesSent", "SmsSent"]),
    (
        "Registrations",
        &["RegistrationsStarted", "RegistrationsCompleted"],
    ),
    ("Connections", &["ConnectionsOpened", "ConnectionsClosed"]),
    ("Errors", &["Errors"]),
    ("Cold starts", &["ColdStart", "InitDurationMs"]),
    ("Active users", &["ActiveUsers"]),
    ("Delivery latency", &["DeliveryLatencyMs"]),
    ("Group census", &["GroupsCounted", "GroupSize"]),
];

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn label_text(s: &SeriesView) -> String {
    let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if l.is_empty() {
        s.name.clone()
    } else {
        format!("{} {}", s.name, l.join(" "))
    }
}

/// Horizontal bars, one per (label, value), with the value written beside each bar.
fn bars(out: &mut String, title: &str, rows: &[(String, f64)]) {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0);
    let h = 34 * rows.len().max(1);
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 400 {h}" width="100%" style="max-width:36rem" role="img" aria-label="{}">"#,
        escape(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let w = (v / max * 300.0).max(1.0);
        let y = i * 34;
        let _ = write!(
            out,
            r##"<text x="0" y="{}" font-size="11">{}</text><rect x="0" y="{}" width="{w:.1}" height="14" fill="#3b82f6"/><text x="{:.1}" y="{}" font-size="11">{}</text>"##,
            y + 11,
            escape(label),
            y + 15,
            w + 4.0,
            y + 26,
            round2(*v)
        );
    }
    out.push_str("</svg>");
}

/// The analytics section: active users, messages today by kind, median group size and delivery
/// latency, as the CloudWatch dashboard's analytics row shows them.
fn analytics(out: &mut String, a: &crate::metrics::Analytics) {
    let _ = write!(
        out,
        r#"<section><h2>Analytics</h2><p>Daily active users ({}): <strong>{}</strong>. Monthly active users ({}): <strong>{}</strong>.</p>"#,
        escape(&a.today),
        number(a.daily_active_users),
        escape(a.today.get(..7).unwrap_or_default()),
        number(a.monthly_active_users)
    );
    let _ = write!(out, "<h3>Messages today by kind</h3>");
    bars(out, "Messages today by kind", &a.messages_today);
    match a.median_group_size {
        Some(m) => {
            let _ = write!(
                out,
                "<p>Median group size: <strong>{}</strong> (latest census: {} {}).</p>",
                round2(m),
                a.groups_counted,
                if a.groups_counted == 1 { "group" } else { "groups" }
            );
        }
        None => out.push_str(
            "<p>Median group size: no census yet (<code>POST /_local/invoke/GroupCensusFunction</code> runs it).</p>",
        ),
    }
    match a.delivery_latency {
        Some((n, p50, p90, p99)) => {
            let _ = write!(
                out,
                "<p>Delivery latency over {n} delivered acks: p50 <strong>{} ms</strong>, p90 <strong>{} ms</strong>, p99 <strong>{} ms</strong>.</p>",
                round2(p50),
                round2(p90),
                round2(p99)
            );
        }
        None => out.push_str("<p>Delivery latency: no delivered acks yet.</p>"),
    }
    out.push_str("</section>");
}

/// A value with at most two decimals.
fn round2(v: f64) -> String {
    number((v * 100.0).round() / 100.0)
}

/// The dashboard page for the current aggregate.
pub fn render(metrics: &Metrics) -> String {
    let all = metrics.series();
    let mut out = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="5"><title>Courier local dashboard</title><style>body{font-family:system-ui,sans-serif;margin:1rem;max-width:60rem}section{margin-bottom:1.5rem}table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{border-bottom:1px solid #ddd;padding:.2rem .4rem;text-align:left}td.n{text-align:right}</style></head><body><h1>Courier local dashboard</h1><p>The functions' metrics since the local cloud started (or since <code>DELETE /_local/metrics</code>); the page reloads every 5 s. Prometheus text: <a href="/_local/metrics">/_local/metrics</a>.</p>"#,
    );
    analytics(&mut out, &metrics.analytics());
    let per_minute = metrics.sent_per_minute();
    let total: f64 = per_minute.iter().map(|p| p.1).sum();
    let max = per_minute.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let _ = write!(
        out,
        r#"<section><h2>Messages sent per minute</h2><p>Last 60 minutes: {} messages; this minute: {}.</p><svg viewBox="0 0 600 125" width="100%" role="img" aria-label="Messages sent per minute, last 60 minutes">"#,
        number(total),
        number(per_minute.last().map_or(0.0, |p| p.1))
    );
    for (i, (ago, v)) in per_minute.iter().enumerate() {
        let h = v / max * 100.0;
        let _ = write!(
            out,
            r##"<rect x="{}" y="{:.1}" width="8" height="{h:.1}" fill="#3b82f6"><title>{ago} min ago: {}</title></rect>"##,
            i * 10,
            110.0 - h,
            number(*v)
        );
    }
    out.push_str(r#"<text x="0" y="122" font-size="10">60 min ago</text><text x="600" y="122" font-size="10" text-anchor="end">now</text></svg></section>"#);
    for (heading, names) in PANELS {
        let rows: Vec<&SeriesView> = all
            .iter()
            .filter(|s| names.contains(&s.name.as_str()))
            .collect();
        let _ = write!(out, "<section><h2>{}</h2>", escape(heading));
        if rows.is_empty() {
            out.push_str("<p>No data yet.</p></section>");
            continue;
        }
        let chart: Vec<(String, f64)> = rows
            .iter()
            .map(|s| {
                (
                    label_text(s),
                    if s.unit == "Count" {
                        s.sum
                    } else {
                        s.sum / s.count.max(1) as f64
                    },
                )
            })
            .collect();
        bars(&mut out, heading, &chart);
        out.push_str(r#"<table><tr><th scope="col">Series</th><th scope="col">Total</th><th scope="col">Count</th><th scope="col">Mean</th><th scope="col">p50</th><th scope="col">p99</th></tr>"#);
        for s in rows {
            let mean = s.sum / s.count.max(1) as f64;
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                escape(&label_text(s)),
                round2(s.sum),
                s.count,
                round2(mean),
                round2(s.p50),
                round2(s.p99)
            );
        }
        out.push_str("</table></section>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_numbers_and_escapes_labels() {
        let m = Metrics::new();
        let sent = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"Courier","Dimensions":[["Operation","Kind"]],"Metrics":[{"Name":"MessagesSent","Unit":"Count"}]}]},"Operation":"sendMessage","Kind":"<b>&x","MessagesSent":7}"#;
        let fan = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"Courier","Dimensions":[["Operation"]],"Metrics":[{"Name":"FanOutSize","Unit":"None"}]}]},"Operation":"fanOut","FanOutSize":[2,4,9]}"#;
        assert!(m.ingest_line(sent));
        assert!(m.ingest_line(fan));
        let html = render(&m);
        assert!(html.contains("<title>Courier local dashboard</title>"));
        assert!(html.contains(r#"<html lang="en">"#));
        assert!(html.contains("Last 60 minutes: 7 messages"));
        assert!(html.contains(
            "MessagesSent kind=&lt;b&gt;&amp;x operation=sendMessage</td><td class=\"n\">7</td>"
        ));
        assert!(!html.contains("<b>&x"));
        // FanOutSize: total 15, 3 values, mean 5, p50 4, p99 9.
        assert!(html.contains(r#"FanOutSize operation=fanOut</td><td class="n">15</td><td class="n">3</td><td class="n">5</td><td class="n">4</td><td class="n">9</td>"#));
        assert!(html.contains("<h2>Errors</h2><p>No data yet.</p>"));
        assert!(html.contains("Median group size: no census yet"));
    }

    #[test]
    fn shows_the_analytics_of_today() {
        let m = Metrics::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let line = |name: &str, unit: &str, dim: Option<(&str, &str)>, value: &str, ts: u128| {
            let (dims, extra) = match dim {
                Some((k, v)) => (
                    format!(r#"["Operation","{k}"]"#),
                    format!(r#","{k}":"{v}""#),
                ),
                None => (r#"["Operation"]"#.to_owned(), String::new()),
            };
            format!(
                r#"{{"_aws":{{"Timestamp":{ts},"CloudWatchMetrics":[{{"Namespace":"Courier","Dimensions":[{dims}],"Metrics":[{{"Name":"{name}","Unit":"{unit}"}}]}}]}},"Operation":"op"{extra},"{name}":{value}}}"#
            )
        };
        let yesterday = now - 86_400_000;
        for l in [
            line("ActiveUsers", "Count", Some(("Period", "day")), "3", now),
            line(
                "ActiveUsers",
                "Count",
                Some(("Period", "day")),
                "5",
                yesterday,
            ),
            line("ActiveUsers", "Count", Some(("Period", "month")), "4", now),
            line("MessagesSent", "Count", Some(("Kind", "direct")), "6", now),
            line("MessagesSent", "Count", Some(("Kind", "group")), "2", now),
            line(
                "MessagesSent",
                "Count",
                Some(("Kind", "group")),
                "9",
                yesterday,
            ),
            // An older census, then the latest one in two lines of the same timestamp.
            line("GroupSize", "None", None, "[100,100,100]", now - 5),
            line("GroupSize", "None", None, "[2,10]", now),
            line("GroupSize", "None", None, "[3]", now),
            line(
                "DeliveryLatencyMs",
                "Milliseconds",
                None,
                "[10,20,30,40,1000]",
                now,
            ),
        ] {
            assert!(m.ingest_line(&l), "{l}");
        }
        let a = m.analytics();
        assert_eq!(
            a.daily_active_users, 3.0,
            "yesterday's activity is not today's"
        );
        assert_eq!(a.monthly_active_users, 4.0);
        let today: std::collections::BTreeMap<_, _> = a.messages_today.iter().cloned().collect();
        assert_eq!(today["direct"], 6.0);
        assert_eq!(today["group"], 2.0);
        assert_eq!(today["media"], 0.0);
        assert_eq!((a.groups_counted, a.median_group_size), (3, Some(3.0)));
        assert_eq!(a.delivery_latency, Some((5, 30.0, 1000.0, 1000.0)));
        let html = render(&m);
        assert!(html.contains("Daily active users"), "{html}");
        assert!(html.contains("Median group size: <strong>3</strong> (latest census: 3 groups)"));
        assert!(html.contains("p50 <strong>30 ms</strong>, p90 <strong>1000 ms</strong>"));
        let prom = m.prometheus();
        assert!(prom.contains("courier_daily_active_users 3\n"), "{prom}");
        assert!(prom.contains("courier_monthly_active_users 4\n"));
        assert!(prom.contains("courier_messages_today{kind=\"group\"} 2\n"));
        assert!(prom.contains("courier_median_group_size 3\n"));
        assert!(
            prom.contains("courier_delivery_latency_ms{operation=\"op\",quantile=\"0.5\"} 30\n")
        );
    }
}
