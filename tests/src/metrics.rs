//! The local cloud's business metrics (`GET /_local/metrics`, Prometheus text), read as the
//! difference between two snapshots so that a test holds on a cloud that served other traffic.
//! The functions print their EMF lines before they answer, but the local cloud reads their stdout
//! through a pipe, so a figure is polled until it reaches what is expected (or the wait ends).

use crate::{TestCloud, WAIT};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Prometheus text -> (series name with its labels as written, value).
pub type Samples = BTreeMap<String, f64>;

/// One snapshot of every series.
pub async fn scrape(cloud: &TestCloud) -> Samples {
    let resp = reqwest::get(format!("{}/_local/metrics", cloud.http_url))
        .await
        .expect("metrics endpoint answers");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The sum of `metric` over the series whose labels include every `label="value"` of `labels`.
pub fn total(samples: &Samples, metric: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (name, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            name == metric && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Polls until `metric` (with `labels`) grew by at least `expected` since `before`, waiting at
/// most `wait`, then returns by how much it grew.
pub async fn grown_within(
    cloud: &TestCloud,
    before: &Samples,
    metric: &str,
    labels: &[&str],
    expected: f64,
    wait: Duration,
) -> f64 {
    let deadline = Instant::now() + wait;
    loop {
        let now = scrape(cloud).await;
        let delta = total(&now, metric, labels) - total(before, metric, labels);
        if delta >= expected || Instant::now() > deadline {
            return delta;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`grown_within`] the end-to-end tests' usual wait ([`WAIT`]).
pub async fn grown(
    cloud: &TestCloud,
    before: &Samples,
    metric: &str,
    labels: &[&str],
    expected: f64,
) -> f64 {
    grown_within(cloud, before, metric, labels, expected, WAIT).await
}
