//! One shard's reader: batches from `GetRecords` to the function, retries, bisection on
//! failure and the on-failure destination, as Lambda's stream event source does.

use super::*;

/// One record, ready for the event.
pub(super) struct Rec {
    pub(super) seq: String,
    /// `ApproximateCreationDateTime` (seconds), for an on-failure invocation record.
    pub(super) arrival: Option<i64>,
    pub(super) json: J,
}

pub(super) struct Shard {
    pub(super) poller: Arc<Poller>,
    pub(super) arn: String,
    pub(super) id: String,
    pub(super) start: Position,
}

impl Shard {
    pub(super) fn mapping(&self) -> &StreamMapping {
        &self.poller.mapping
    }

    /// Reads the shard to its end; `true` when it was read to the end (not shut down).
    pub(super) async fn run(&self, iterator: String) -> bool {
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

    pub(super) fn record(&self, r: &Record) -> Option<Rec> {
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
    pub(super) async fn deliver(&self, records: Vec<Rec>) -> bool {
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
    pub(super) async fn retry(
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
    pub(super) fn invocation_record(
        &self,
        batch: &[Rec],
        invocations: u32,
        function_error: bool,
    ) -> J {
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
    pub(super) async fn send_to_destination(&self, destination: &str, record: &J) {
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
    pub(super) fn partial_failure(
        &self,
        payload: &[u8],
        batch: &[Rec],
    ) -> Option<Result<usize, String>> {
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
