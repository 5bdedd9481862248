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

impl Poller {
    fn id(&self) -> &str {
        &self.mapping.id
    }

    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.ctx.shutdown.cancelled() => false,
        }
    }

    /// The table's current stream ARN (the template's may be a placeholder), else the template's.
    async fn stream_arn(&self) -> Option<String> {
        let Some(table) = &self.mapping.table_name else {
            return Some(self.mapping.stream_arn.clone());
        };
        let mut failures = 0u32;
        loop {
            match self
                .ctx
                .dynamodb
                .describe_table()
                .table_name(table)
                .send()
                .await
            {
                Ok(out) => match out.table().and_then(|t| t.latest_stream_arn()) {
                    Some(arn) => return Some(arn.to_string()),
                    None => {
                        if failures.is_multiple_of(20) {
                            tracing::warn!(mapping = %self.id(), "table {table} has no stream");
                        }
                    }
                },
                Err(e) => {
                    if failures.is_multiple_of(20) {
                        tracing::warn!(
                            mapping = %self.id(),
                            "DescribeTable {table}: {}",
                            describe(&e)
                        );
                    }
                }
            }
            failures += 1;
            if !self.sleep(Duration::from_millis(500)).await {
                return None;
            }
        }
    }

    async fn list_shards(
        &self,
        arn: &str,
    ) -> Result<Vec<aws_sdk_dynamodbstreams::types::Shard>, String> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .ctx
                .streams
                .describe_stream()
                .stream_arn(arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let Some(d) = out.stream_description() else {
                return Ok(shards);
            };
            shards.extend(d.shards().iter().cloned());
            match d.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_string()),
                None => return Ok(shards),
            }
        }
    }

    async fn iterator(&self, arn: &str, shard: &str, pos: &Position) -> Result<String, String> {
        let mut req = self
            .ctx
            .streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard);
        req = match pos {
            Position::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            Position::After(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
        };
        let out = req.send().await.map_err(|e| describe(&e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| format!("no iterator for shard {shard}"))
    }

    async fn run(self: Arc<Self>, ready: tokio::sync::oneshot::Sender<()>) {
        let Some(arn) = self.stream_arn().await else {
            return;
        };
        tracing::info!(
            mapping = %self.id(),
            function = %self.mapping.function,
            "polling {arn} ({:?})",
            self.mapping.starting_position
        );
        let mut ready = Some(ready);
        let mut initial: Option<HashSet<String>> = None;
        let mut started: HashSet<String> = HashSet::new();
        let finished: Arc<Mutex<HashSet<String>>> = Arc::default();
        let shard_done = Arc::new(Notify::new());
        let mut failures = 0u32;
        loop {
            match self.list_shards(&arn).await {
                Ok(shards) => {
                    failures = 0;
                    let listed: HashSet<String> = shards
                        .iter()
                        .filter_map(|s| s.shard_id().map(str::to_owned))
                        .collect();
                    let initial = initial.get_or_insert_with(|| listed.clone());
                    // Parents before children: repeat while a pass starts something.
                    let mut progress = true;
                    while progress {
                        progress = false;
                        for s in &shards {
                            let Some(id) = s.shard_id() else { continue };
                            if started.contains(id) {
                                continue;
                            }
                            if let Some(parent) = s.parent_shard_id()
                                && listed.contains(parent)
                                && !finished.lock().unwrap().contains(parent)
                            {
                                continue;
                            }
                            let closed = s
                                .sequence_number_range()
                                .and_then(|r| r.ending_sequence_number())
                                .is_some();
                            let pos = match (initial.contains(id), self.mapping.starting_position) {
                                (true, StartingPosition::Latest) if closed => {
                                    // Nothing after LATEST in a closed shard.
                                    started.insert(id.to_string());
                                    finished.lock().unwrap().insert(id.to_string());
                                    progress = true;
                                    continue;
                                }
                                (true, StartingPosition::Latest) => Position::Latest,
                                _ => Position::TrimHorizon,
                            };
                            match self.iterator(&arn, id, &pos).await {
                                Ok(it) => {
                                    started.insert(id.to_string());
                                    progress = true;
                                    tracing::debug!(mapping = %self.id(), "reading shard {id} from {pos:?}");
                                    let shard = Shard {
                                        poller: self.clone(),
                                        arn: arn.clone(),
                                        id: id.to_string(),
                                        start: pos,
                                    };
                                    let finished = finished.clone();
                                    let done = shard_done.clone();
                                    tokio::spawn(async move {
                                        let id = shard.id.clone();
                                        if shard.run(it).await {
                                            finished.lock().unwrap().insert(id);
                                            done.notify_one();
                                        }
                                    });
                                }
                                Err(e) => {
                                    tracing::warn!(mapping = %self.id(), "GetShardIterator {id}: {e}");
                                }
                            }
                        }
                    }
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Err(e) => {
                    if failures.is_multiple_of(20) {
                        tracing::warn!(mapping = %self.id(), "DescribeStream {arn}: {e}");
                    }
                    failures += 1;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(DESCRIBE_EVERY) => {}
                _ = shard_done.notified() => {}
                _ = self.ctx.shutdown.cancelled() => return,
            }
        }
    }
}

/// One record, ready for the event.
struct Rec {
    seq: String,
    /// `ApproximateCreationDateTime` (seconds), for an on-failure invocation record.
    arrival: Option<i64>,
    json: J,
}

struct Shard {
    poller: Arc<Poller>,
    arn: String,
    id: String,
    start: Position,
}

impl Shard {
    fn mapping(&self) -> &StreamMapping {
        &self.poller.mapping
    }

    /// Reads the shard to its end; `true` when it was read to the end (not shut down).
    async fn run(&self, iterator: String) -> bool {
        let p = &self.poller;
        let m = self.mapping();
        let mut iter = Some(iterator);
        let mut last_seq: Option<String> = None;
        let mut buffer: Vec<Rec> = Vec::new();
        let mut buffered_since = Instant::now();
        let mut failures = 0u32;
        while let Some(it) = iter.take() {
            if p.ctx.shutdown.is_cancelled() {
                return false;
            }
            let limit = (m.batch_size - buffer.len()).clamp(1, GET_RECORDS_MAX);
            let out = p
                .ctx
                .streams
                .get_records()
                .shard_iterator(&it)
                .limit(limit as i32)
                .send()
                .await;
            let out = match out {
                Ok(out) => {
                    failures = 0;
                    out
                }
                Err(e) => {
                    let svc = e.as_service_error();
                    let expired = svc.is_some_and(|e| e.is_expired_iterator_exception());
                    let trimmed = svc.is_some_and(|e| e.is_trimmed_data_access_exception());
                    let gone = svc.is_some_and(|e| e.is_resource_not_found_exception());
                    failures += 1;
                    if gone {
                        tracing::warn!(mapping = %m.id, shard = %self.id, "shard is gone: {}", describe(&e));
                        return true;
                    }
                    if expired || trimmed {
                        // DynamoDB Local numbers records across all tables, and an iterator
                        // taken while a shard was empty reads as "trimmed" once other tables'
                        // writes move the counter on: start again from the last record read,
                        // or (nothing read yet: everything in the shard is new) from the start.
                        let pos = match &last_seq {
                            Some(seq) if failures <= 2 => Position::After(seq.clone()),
                            Some(_) => Position::TrimHorizon,
                            None if trimmed => Position::TrimHorizon,
                            None => self.start.clone(),
                        };
                        tracing::debug!(mapping = %m.id, shard = %self.id, "GetRecords: {}; new iterator at {pos:?}", describe(&e));
                        match p.iterator(&self.arn, &self.id, &pos).await {
                            Ok(fresh) => {
                                add(&p.counters.new_iterators, 1);
                                iter = Some(fresh);
                                continue;
                            }
                            Err(e) => {
                                tracing::warn!(mapping = %m.id, shard = %self.id, "GetShardIterator: {e}");
                            }
                        }
                    } else {
                        if failures.is_multiple_of(20) || failures == 1 {
                            tracing::warn!(mapping = %m.id, shard = %self.id, "GetRecords: {}", describe(&e));
                        }
                        // DynamoDB Local restarted (or unreachable for a while): the old
                        // iterator may mean nothing to the new process. Take a new one after
                        // the last record read (records still buffered stay buffered), or at
                        // the starting position if none was read yet.
                        if failures >= 3 && failures.is_multiple_of(3) {
                            let pos = match &last_seq {
                                Some(seq) => Position::After(seq.clone()),
                                None => self.start.clone(),
                            };
                            match p.iterator(&self.arn, &self.id, &pos).await {
                                Ok(fresh) => {
                                    add(&p.counters.new_iterators, 1);
                                    tracing::info!(mapping = %m.id, shard = %self.id, "GetRecords kept failing; new iterator at {pos:?}");
                                    iter = Some(fresh);
                                    if !p.sleep(Duration::from_millis(200)).await {
                                        return false;
                                    }
                                    continue;
                                }
                                Err(e) => {
                                    tracing::debug!(mapping = %m.id, shard = %self.id, "GetShardIterator: {e}");
                                }
                            }
                        }
                    }
                    if !p.sleep(Duration::from_millis(200)).await {
                        return false;
                    }
                    iter = Some(it);
                    continue;
                }
            };
            iter = out.next_shard_iterator().map(str::to_owned);
            let records = out.records();
            if buffer.is_empty() {
                buffered_since = Instant::now();
            }
            for r in records {
                if let Some(rec) = self.record(r) {
                    last_seq = Some(rec.seq.clone());
                    buffer.push(rec);
                }
            }
            let due = buffer.len() >= m.batch_size
                || buffered_since.elapsed() >= m.batching_window
                || iter.is_none();
            if !buffer.is_empty() && due {
                let batch = std::mem::take(&mut buffer);
                if !self.deliver(batch).await {
                    return false;
                }
            }
            if records.is_empty() && iter.is_some() && !p.sleep(p.ctx.idle_poll).await {
                return false;
            }
        }
        tracing::debug!(mapping = %m.id, shard = %self.id, "shard read to its end");
        true
    }

    fn record(&self, r: &Record) -> Option<Rec> {
        let d = r.dynamodb()?;
        let seq = d.sequence_number()?.to_string();
        let mut change = Map::new();
        if let Some(t) = d.approximate_creation_date_time() {
            change.insert("ApproximateCreationDateTime".into(), J::from(t.secs()));
        }
        if let Some(k) = d.keys() {
            change.insert("Keys".into(), item_json(k));
        }
        if let Some(n) = d.new_image() {
            change.insert("NewImage".into(), item_json(n));
        }
        if let Some(o) = d.old_image() {
            change.insert("OldImage".into(), item_json(o));
        }
        change.insert("SequenceNumber".into(), J::String(seq.clone()));
        change.insert("SizeBytes".into(), J::from(d.size_bytes().unwrap_or(0)));
        if let Some(v) = d.stream_view_type() {
            change.insert("StreamViewType".into(), J::String(v.as_str().to_string()));
        }
        let mut json = json!({
            "eventID": r.event_id().unwrap_or_default(),
            "eventName": r.event_name().map(|n| n.as_str()).unwrap_or_default(),
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.poller.ctx.region,
            "dynamodb": change,
            "eventSourceARN": self.arn,
        });
        if let Some(u) = r.user_identity() {
            json["userIdentity"] = json!({
                "type": u.r#type().unwrap_or_default(),
                "principalId": u.principal_id().unwrap_or_default(),
            });
        }
        Some(Rec {
            seq,
            arrival: d.approximate_creation_date_time().map(|t| t.secs()),
            json,
        })
    }

    /// Invokes the function with `records` until they are accepted or skipped; `false` on
    /// shutdown.
    async fn deliver(&self, records: Vec<Rec>) -> bool {
        let p = &self.poller;
        let m = self.mapping();
        let c = &p.counters;
        add(&c.batches, 1);
        // (records, retries so far, is a retry)
        let mut queue: VecDeque<(Vec<Rec>, u32, bool)> = VecDeque::new();
        queue.push_back((records, 0, false));
        let mut unreachable_warned = false;
        while let Some((batch, attempts, retry)) = queue.pop_front() {
            if retry {
                let backoff = BACKOFF_START
                    .saturating_mul(1u32 << attempts.saturating_sub(1).min(10))
                    .min(BACKOFF_MAX);
                if !p.sleep(backoff).await {
                    return false;
                }
                add(&c.retries, 1);
            }
            let first = batch.first().map_or("", |r| r.seq.as_str());
            let last = batch.last().map_or("", |r| r.seq.as_str());
            let event = json!({"Records": batch.iter().map(|r| &r.json).collect::<Vec<_>>()});
            let started = Instant::now();
            add(&c.invocations, 1);
            let result = tokio::select! {
                r = p.ctx.functions.invoke(&m.function, &event) => r,
                _ = p.ctx.shutdown.cancelled() => return false,
            };
            let failure = match result {
                Ok(payload) => match self.partial_failure(&payload, &batch) {
                    None => {
                        tracing::debug!(
                            mapping = %m.id, shard = %self.id, records = batch.len(),
                            attempt = attempts, "batch {first}..{last} done in {} ms",
                            started.elapsed().as_millis()
                        );
                        add(&c.records, batch.len());
                        continue;
                    }
                    Some(Ok(index)) => {
                        add(&c.records, index);
                        let failed = &batch[index].seq;
                        tracing::warn!(
                            mapping = %m.id, shard = %self.id, records = batch.len(),
                            "batch {first}..{last}: the function reported record {failed} \
                             failed; retrying from it"
                        );
                        let mut batch = batch;
                        let rest = batch.split_off(index);
                        self.retry(
                            &mut queue,
                            rest,
                            attempts,
                            false,
                            "batch item failure",
                            false,
                        )
                        .await;
                        continue;
                    }
                    Some(Err(why)) => why,
                },
                Err(InvokeError::Spawn(e)) => {
                    // The batch never reached the function: not a retry attempt.
                    if !unreachable_warned {
                        tracing::warn!(mapping = %m.id, "cannot invoke {}: {e}; waiting", m.function);
                        unreachable_warned = true;
                    }
                    if !p.sleep(Duration::from_secs(1)).await {
                        return false;
                    }
                    queue.push_front((batch, attempts, retry));
                    continue;
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(
                mapping = %m.id, shard = %self.id, records = batch.len(),
                "batch {first}..{last} failed (attempt {}): {failure}", attempts + 1
            );
            self.retry(
                &mut queue,
                batch,
                attempts,
                m.bisect_on_error,
                &failure,
                true,
            )
            .await;
        }
        true
    }

    /// Queues `batch` again (first), split in two if `bisect`, or skips it when out of retries
    /// (after sending its invocation record to the on-failure destination, if any).
    /// `function_error`: the invocation failed (rather than reporting a batch item failure).
    async fn retry(
        &self,
        queue: &mut VecDeque<(Vec<Rec>, u32, bool)>,
        mut batch: Vec<Rec>,
        attempts: u32,
        bisect: bool,
        why: &str,
        function_error: bool,
    ) {
        let m = self.mapping();
        if bisect && batch.len() > 1 {
            // Splitting does not use up a retry attempt (as on AWS).
            let second = batch.split_off(batch.len() / 2);
            queue.push_front((second, attempts, true));
            queue.push_front((batch, attempts, true));
            return;
        }
        if m.max_retry_attempts.is_some_and(|max| attempts >= max) {
            let first = batch.first().map_or("", |r| r.seq.as_str());
            let last = batch.last().map_or("", |r| r.seq.as_str());
            tracing::warn!(
                mapping = %m.id, shard = %self.id, records = batch.len(),
                "skipping records {first}..{last} after {attempts} retries ({why})"
            );
            add(&self.poller.counters.dropped, batch.len());
            if let Some(destination) = &m.on_failure {
                let record = self.invocation_record(&batch, attempts + 1, function_error);
                self.send_to_destination(destination, &record).await;
            }
            return;
        }
        queue.push_front((batch, attempts + 1, true));
    }

    /// What Lambda sends to a DynamoDB stream mapping's on-failure destination when a batch's
    /// retries run out ("Retaining records of failed invocations", AWS Lambda developer guide):
    /// where the records are in the stream, not the records themselves.
    fn invocation_record(&self, batch: &[Rec], invocations: u32, function_error: bool) -> J {
        let p = &self.poller;
        let function_arn = p
            .ctx
            .functions
            .get(&p.mapping.function)
            .map(|f| f.spec().arn.clone())
            .unwrap_or_default();
        let arrival = |r: Option<&Rec>| {
            r.and_then(|r| r.arrival)
                .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        };
        let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
        if function_error {
            response["functionError"] = J::String("Unhandled".into());
        }
        json!({
            "requestContext": {
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "DDBStreamBatchInfo": {
                "shardId": self.id,
                "startSequenceNumber": batch.first().map(|r| r.seq.clone()),
                "endSequenceNumber": batch.last().map(|r| r.seq.clone()),
                "approximateArrivalOfFirstRecord": arrival(batch.first()),
                "approximateArrivalOfLastRecord": arrival(batch.last()),
                "batchSize": batch.len(),
                "streamArn": self.arn,
            }
        })
    }

    /// Sends `record` to an SQS queue or SNS topic by ARN; a failure is logged (Lambda counts
    /// it in `DestinationDeliveryFailures` and moves on too).
    async fn send_to_destination(&self, destination: &str, record: &J) {
        let m = self.mapping();
        let body = record.to_string();
        let result = if let Some(name) = destination
            .strip_prefix("arn:aws:sqs:")
            .and_then(|rest| rest.rsplit(':').next())
        {
            match &self.poller.ctx.sqs {
                None => Err("no SQS endpoint".to_string()),
                Some(sqs) => match sqs.get_queue_url().queue_name(name).send().await {
                    Err(e) => Err(format!("GetQueueUrl {name}: {}", describe_any(&e))),
                    Ok(out) => sqs
                        .send_message()
                        .queue_url(out.queue_url().unwrap_or_default())
                        .message_body(body)
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| format!("SendMessage: {}", describe_any(&e))),
                },
            }
        } else {
            match &self.poller.ctx.sns {
                None => Err("no SNS endpoint".to_string()),
                Some(sns) => sns
                    .publish()
                    .topic_arn(destination)
                    .message(body)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| format!("Publish: {}", describe_any(&e))),
            }
        };
        match result {
            Ok(()) => {
                add(&self.poller.counters.sent_to_destination, 1);
                tracing::info!(mapping = %m.id, shard = %self.id, "invocation record sent to {destination}");
            }
            Err(e) => {
                tracing::warn!(mapping = %m.id, shard = %self.id, "on-failure destination {destination}: {e}")
            }
        }
    }

    /// `None`: the batch succeeded. `Some(Ok(i))`: records before `i` succeeded, retry from `i`.
    /// `Some(Err(_))`: the whole batch failed (a malformed failure list).
    fn partial_failure(&self, payload: &[u8], batch: &[Rec]) -> Option<Result<usize, String>> {
        if !self.mapping().report_batch_item_failures {
            return None;
        }
        let v: J = serde_json::from_slice(payload).ok()?;
        let failures = match v.get("batchItemFailures") {
            Some(J::Array(a)) if !a.is_empty() => a,
            _ => return None,
        };
        let mut first: Option<usize> = None;
        for f in failures {
            let id = f.get("itemIdentifier").and_then(J::as_str).unwrap_or("");
            let Some(i) = batch.iter().position(|r| r.seq == id) else {
                return Some(Err(format!(
                    "batchItemFailures names {f}, not a record of the batch"
                )));
            };
            first = Some(first.map_or(i, |x: usize| x.min(i)));
        }
        first.map(Ok)
    }
}

fn b64(b: &aws_sdk_dynamodbstreams::primitives::Blob) -> J {
    J::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
}

/// An attribute value in DynamoDB's JSON (`{"S": "x"}`, `{"N": "1"}`, `{"B": "<base64>"}`, ...).
pub fn attribute_json(v: &AttributeValue) -> J {
    match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::B(b) => json!({"B": b64(b)}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": item_json(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(attribute_json).collect::<Vec<_>>()}),
        AttributeValue::Null(b) => json!({"NULL": b}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        _ => J::Null,
    }
}

/// An item (attribute name to value) in DynamoDB's JSON.
pub fn item_json(item: &HashMap<String, AttributeValue>) -> J {
    J::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect(),
    )
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
