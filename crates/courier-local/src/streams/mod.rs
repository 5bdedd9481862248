//! DynamoDB Streams event source mappings, polled as Lambda polls them.
//!
//! For each mapping a task reads the stream's shards from DynamoDB (DescribeStream, again every
//! second to find child shards; a child starts only once its parent is read to the end) and a
//! task per shard reads records (GetRecords at once after a read that returned records, else
//! after [`StreamContext::idle_poll`]: [`IDLE_POLL`], AWS's 4 reads a second, by default),
//! batches them (`BatchSize`, `MaximumBatchingWindowInSeconds`) and invokes the function with the
//! event Lambda sends (`aws_lambda_events::event::dynamodb::Event`): one batch at a time per
//! shard, in order. A failed batch (function error, timeout, crashed process) is retried with
//! backoff ([`BACKOFF_START`] doubling to [`BACKOFF_MAX`]) up to `MaximumRetryAttempts`, split in
//! two first with `BisectBatchOnFunctionError`; with `ReportBatchItemFailures` a response
//! `{"batchItemFailures":[{"itemIdentifier": <SequenceNumber>}]}` retries from the first failed
//! record. When retries run out the records are logged and skipped, and with a
//! `DestinationConfig.OnFailure` the invocation record Lambda sends (shard, first and last
//! sequence numbers, arrival times, batch size, stream ARN) goes to that SQS queue or SNS topic
//! first. A batch that could not reach the function (its binary is
//! missing) is retried forever without counting, as Lambda does with service errors.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine as _;
use serde_json::{Map, Value as J, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Functions, InvokeError};
use crate::template::{StartingPosition, StreamMapping};

mod poller;
mod records;
mod shard;

pub use records::{attribute_json, item_json};
use shard::Shard;

/// How long a shard poller waits after a `GetRecords` that returned nothing, by default: Lambda
/// polls each shard of a DynamoDB stream 4 times a second ("Using AWS Lambda with Amazon
/// DynamoDB", AWS Lambda developer guide). A shorter wait is a flag for experiments only
/// (`--stream-poll-ms`): it makes delivery look faster than AWS can make it.
pub const IDLE_POLL: Duration = Duration::from_millis(250);
/// First delay before retrying a failed batch.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the shard list is read again (child shards, new shards).
const DESCRIBE_EVERY: Duration = Duration::from_secs(1);
/// `GetRecords` returns at most this many records.
const GET_RECORDS_MAX: usize = 1000;

/// Counters of one mapping (or the sum over a function's mappings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Invocations made, retries included.
    pub invocations: u64,
    /// Batches read from the stream and finished with (delivered or skipped).
    pub batches: u64,
    /// Records the function accepted.
    pub records: u64,
    /// Invocations that repeated records already sent (after an error, a timeout, a crash, a
    /// partial failure, or a split).
    pub retries: u64,
    /// Records skipped after the retries ran out.
    pub dropped: u64,
    /// Shard iterators taken again after a read failed: expired, trimmed, or failing three
    /// times in a row (DynamoDB Local restarted or unreachable).
    pub new_iterators: u64,
    /// Invocation records sent to the on-failure destination (one per skipped batch).
    pub sent_to_destination: u64,
}

#[derive(Debug, Default)]
struct Counters {
    invocations: AtomicU64,
    batches: AtomicU64,
    records: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    new_iterators: AtomicU64,
    sent_to_destination: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> StreamStats {
        StreamStats {
            invocations: self.invocations.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            new_iterators: self.new_iterators.load(Ordering::Relaxed),
            sent_to_destination: self.sent_to_destination.load(Ordering::Relaxed),
        }
    }
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// The running mappings and their counters.
#[derive(Debug, Default, Clone)]
pub struct StreamPollers {
    mappings: Vec<(StreamMapping, Arc<Counters>)>,
}

impl StreamPollers {
    /// Counters summed over every mapping that invokes `function` (by logical id); `None` if it
    /// has none.
    pub fn function_stats(&self, function: &str) -> Option<StreamStats> {
        let mut found = false;
        let mut sum = StreamStats::default();
        for (m, c) in &self.mappings {
            if m.function == function {
                found = true;
                let s = c.snapshot();
                sum.invocations += s.invocations;
                sum.batches += s.batches;
                sum.records += s.records;
                sum.retries += s.retries;
                sum.dropped += s.dropped;
                sum.new_iterators += s.new_iterators;
                sum.sent_to_destination += s.sent_to_destination;
            }
        }
        found.then_some(sum)
    }

    /// Counters of one mapping, by [`StreamMapping::id`].
    pub fn mapping_stats(&self, id: &str) -> Option<StreamStats> {
        self.mappings
            .iter()
            .find(|(m, _)| m.id == id)
            .map(|(_, c)| c.snapshot())
    }

    /// The mappings being polled.
    pub fn mappings(&self) -> impl Iterator<Item = &StreamMapping> {
        self.mappings.iter().map(|(m, _)| m)
    }
}

/// Clients and settings the pollers share.
pub struct StreamContext {
    /// Invokes the mapped functions.
    pub functions: Functions,
    /// Finds a table's current stream ARN.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Reads the streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// `awsRegion` of each record.
    pub region: String,
    /// How long a shard poller waits after an empty `GetRecords` ([`IDLE_POLL`] by default).
    pub idle_poll: Duration,
    /// Sends on-failure invocation records to SQS destinations.
    pub sqs: Option<aws_sdk_sqs::Client>,
    /// Publishes them to SNS destinations.
    pub sns: Option<aws_sdk_sns::Client>,
    /// Stops every poller.
    pub shutdown: CancellationToken,
}

/// Starts a poller per enabled mapping. Returns once each has found its shards and taken its
/// starting position (so a `LATEST` mapping sees every write made after this returns), or after
/// a few seconds if the stream cannot be read yet (it keeps trying in the background).
pub async fn start(mappings: Vec<StreamMapping>, ctx: StreamContext) -> StreamPollers {
    let ctx = Arc::new(ctx);
    let mut pollers = StreamPollers::default();
    let mut ready = Vec::new();
    for m in mappings {
        let counters = Arc::new(Counters::default());
        pollers.mappings.push((m.clone(), counters.clone()));
        if !m.enabled {
            tracing::info!(mapping = %m.id, "event source mapping is disabled");
            continue;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push((m.id.clone(), rx));
        let poller = Arc::new(Poller {
            mapping: m,
            ctx: ctx.clone(),
            counters,
        });
        tokio::spawn(poller.run(tx));
    }
    for (id, rx) in ready {
        if tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .is_err()
        {
            tracing::warn!(mapping = %id, "stream not readable yet; its poller keeps trying");
        }
    }
    pollers
}

struct Poller {
    mapping: StreamMapping,
    ctx: Arc<StreamContext>,
    counters: Arc<Counters>,
}

/// Where a shard's reading starts.
#[derive(Debug, Clone)]
enum Position {
    TrimHorizon,
    Latest,
    After(String),
}

type SdkError<E> = aws_sdk_dynamodbstreams::error::SdkError<E>;

fn describe<E: std::error::Error + 'static>(e: &SdkError<E>) -> String {
    describe_any(e)
}

/// An error and its sources, on one line.
fn describe_any(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_in_dynamodb_json() {
        let mut inner = HashMap::new();
        inner.insert("n".to_string(), AttributeValue::N("1".into()));
        let mut item = HashMap::new();
        item.insert("s".to_string(), AttributeValue::S("x".into()));
        item.insert(
            "b".to_string(),
            AttributeValue::B(aws_sdk_dynamodbstreams::primitives::Blob::new(vec![
                0, 1, 2,
            ])),
        );
        item.insert("m".to_string(), AttributeValue::M(inner));
        item.insert(
            "l".to_string(),
            AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)]),
        );
        item.insert("ss".to_string(), AttributeValue::Ss(vec!["a".into()]));
        assert_eq!(
            item_json(&item),
            json!({
                "s": {"S": "x"},
                "b": {"B": "AAEC"},
                "m": {"M": {"n": {"N": "1"}}},
                "l": {"L": [{"BOOL": true}, {"NULL": true}]},
                "ss": {"SS": ["a"]},
            })
        );
    }
}
