//! One event source mapping's poller: finds the stream's shards as DynamoDB Streams lists them,
//! and starts a reader for each once its parent shard is finished, as Lambda keeps a key's
//! records in order.

use super::*;

impl Poller {
    pub(super) fn id(&self) -> &str {
        &self.mapping.id
    }

    pub(super) async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.ctx.shutdown.cancelled() => false,
        }
    }

    /// The table's current stream ARN (the template's may be a placeholder), else the template's.
    pub(super) async fn stream_arn(&self) -> Option<String> {
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

    pub(super) async fn list_shards(
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

    pub(super) async fn iterator(
        &self,
        arn: &str,
        shard: &str,
        pos: &Position,
    ) -> Result<String, String> {
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

    pub(super) async fn run(self: Arc<Self>, ready: tokio::sync::oneshot::Sender<()>) {
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
