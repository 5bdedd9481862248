//! What the template declares, read into specs: tables, buckets, topics, queues, stream mappings,
//! functions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value as J;
use serde_yaml_ng::Value as Y;

use super::*;

impl Template {
    /// Tables, buckets, topics and platform applications to create before anything runs.
    ///
    /// A table keeps its `StreamSpecification` only when something in the template reads its
    /// stream (see [`Template::read_streams`]). In AWS a global table always has a stream (it
    /// replicates through it), but locally there is no replication, and DynamoDB Local looks a
    /// table's stream up on every write to it, through the one thread that serves every request:
    /// a stream nobody reads would only slow every write down (docs/benchmarks.md).
    pub fn infrastructure(&self) -> Result<Infrastructure> {
        let mut infra = Infrastructure::default();
        let read_streams = self.read_streams();
        for (id, r) in &self.resources {
            match r.kind.as_str() {
                "AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable" => {
                    let mut properties = self.resolved_properties(id)?;
                    if !read_streams.contains(id)
                        && let J::Object(m) = &mut properties
                    {
                        m.remove("StreamSpecification");
                    }
                    infra.tables.push(TableSpec {
                        logical_id: id.clone(),
                        name: self.table_name(id),
                        properties,
                    })
                }
                "AWS::S3::Bucket" => {
                    let props = self.resolved_properties(id)?;
                    infra.buckets.push(BucketSpec {
                        logical_id: id.clone(),
                        name: self.bucket_name(id),
                        cors: props.get("CorsConfiguration").cloned(),
                    })
                }
                "AWS::SQS::Queue" => infra.queues.push(QueueSpec {
                    logical_id: id.clone(),
                    name: self.queue_name(id, &format!("Resources.{id}"))?,
                    properties: self.resolved_properties(id)?,
                }),
                "AWS::SNS::Topic" => infra.topics.push(TopicSpec {
                    logical_id: id.clone(),
                    name: self.topic_name(id, &format!("Resources.{id}"))?,
                    properties: self.resolved_properties(id)?,
                }),
                "Custom::SnsPlatformApplication" => {
                    let props = self.resolved_properties(id)?;
                    let field = |k: &str| {
                        props
                            .get(k)
                            .and_then(scalar_string)
                            .with_context(|| format!("Resources.{id}.Properties.{k} is missing"))
                    };
                    let mut attributes = BTreeMap::new();
                    if let Some(J::Object(m)) = props.get("Attributes") {
                        for (k, v) in m {
                            let v = scalar_string(v).with_context(|| {
                                format!("Resources.{id}.Properties.Attributes.{k} is not a string")
                            })?;
                            attributes.insert(k.clone(), v);
                        }
                    }
                    infra.platform_apps.push(PlatformAppSpec {
                        logical_id: id.clone(),
                        name: field("Name")?,
                        platform: field("Platform")?,
                        attributes,
                    });
                }
                _ => {}
            }
        }
        Ok(infra)
    }

    /// The logical ids of the tables whose stream something reads: a `!GetAtt Table.StreamArn`
    /// (or `${Table.StreamArn}` in a `!Sub`) anywhere outside the table itself, or a `!Sub` that
    /// spells the table's stream ARN out (`${AWS::StackName}-Table/stream/...`).
    pub fn read_streams(&self) -> BTreeSet<String> {
        let tables: Vec<&String> = self
            .resources
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.kind.as_str(),
                    "AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable"
                )
            })
            .map(|(id, _)| id)
            .collect();
        let mut read = BTreeSet::new();
        for (id, r) in &self.resources {
            if tables.contains(&id) {
                continue;
            }
            for v in [&r.properties, &r.metadata] {
                walk_stream_reads(v, &tables, &mut read);
            }
        }
        read
    }

    /// Functions, HTTP routes and the WebSocket API, with every value resolved.
    pub fn application(&self) -> Result<Application> {
        let mut app = Application::default();
        for (id, r) in &self.resources {
            if FUNCTION_TYPES.contains(&r.kind.as_str()) {
                let f = self.function(id, r)?;
                app.functions.insert(id.clone(), f);
                app.http_routes.extend(self.http_routes(id, r)?);
            }
        }
        app.websocket = self.websocket(&app.functions)?;
        for (id, r) in &self.resources {
            if FUNCTION_TYPES.contains(&r.kind.as_str()) {
                app.stream_mappings.extend(self.sam_stream_events(id, r)?);
            } else if r.kind == "AWS::Lambda::EventSourceMapping" {
                app.stream_mappings
                    .extend(self.event_source_mapping(id, &app.functions)?);
            }
        }
        Ok(app)
    }

    /// `Type: DynamoDB` events of a SAM function.
    pub(super) fn sam_stream_events(&self, id: &str, r: &Resource) -> Result<Vec<StreamMapping>> {
        let mut out = Vec::new();
        let Some(events) = yget(&r.properties, "Events").and_then(Y::as_mapping) else {
            return Ok(out);
        };
        for (name, ev) in events {
            let name = name.as_str().unwrap_or("?");
            let kind = yget(ev, "Type").and_then(Y::as_str).unwrap_or("");
            let p = format!("Resources.{id}.Properties.Events.{name}.Properties");
            match kind {
                "DynamoDB" => {}
                "Kinesis" | "SQS" | "MSK" | "MQ" | "SelfManagedKafka" | "DocumentDB" => {
                    tracing::warn!("{p}: {kind} event sources do not run locally; ignored");
                    continue;
                }
                _ => continue,
            }
            let props = match yget(ev, "Properties") {
                Some(v) => self.resolve(v, &p)?.unwrap_or(J::Null),
                None => J::Null,
            };
            let arn = props
                .get("Stream")
                .and_then(scalar_string)
                .with_context(|| format!("{p}.Stream is missing"))?;
            out.push(self.stream_mapping(format!("{id}.{name}"), id, arn, &props, &p)?);
        }
        Ok(out)
    }

    /// An `AWS::Lambda::EventSourceMapping` whose source is a DynamoDB stream.
    pub(super) fn event_source_mapping(
        &self,
        id: &str,
        functions: &BTreeMap<String, FunctionSpec>,
    ) -> Result<Option<StreamMapping>> {
        let p = format!("Resources.{id}.Properties");
        let props = self.resolved_properties(id)?;
        let arn = props
            .get("EventSourceArn")
            .and_then(scalar_string)
            .with_context(|| format!("{p}.EventSourceArn is missing"))?;
        if !(arn.contains(":dynamodb:") && arn.contains("/stream/")) {
            tracing::warn!("{p}.EventSourceArn: {arn} is not a DynamoDB stream; ignored locally");
            return Ok(None);
        }
        let name = props
            .get("FunctionName")
            .and_then(scalar_string)
            .with_context(|| format!("{p}.FunctionName is missing"))?;
        // A name, a name with a qualifier, or an ARN (`...:function:name[:qualifier]`).
        let bare = match name.split_once(":function:") {
            Some((_, rest)) => rest.split(':').next().unwrap_or(rest).to_string(),
            None => name.split(':').next().unwrap_or(&name).to_string(),
        };
        let function = functions
            .values()
            .find(|f| f.function_name == bare || f.logical_id == bare || f.arn == name)
            .map(|f| f.logical_id.clone())
            .with_context(|| {
                format!("{p}.FunctionName: {name} is not a function of this template")
            })?;
        self.stream_mapping(id.to_string(), &function, arn, &props, &p)
            .map(Some)
    }

    pub(super) fn stream_mapping(
        &self,
        id: String,
        function: &str,
        stream_arn: String,
        props: &J,
        p: &str,
    ) -> Result<StreamMapping> {
        let int = |key: &str| -> Result<Option<i64>> {
            match props.get(key) {
                None | Some(J::Null) => Ok(None),
                Some(v) => {
                    let s = scalar_string(v).unwrap_or_default();
                    s.parse()
                        .map(Some)
                        .with_context(|| format!("{p}.{key}: {v} is not a number"))
                }
            }
        };
        let flag = |key: &str| props.get(key).is_some_and(as_bool);
        let starting_position = match props.get("StartingPosition").and_then(J::as_str) {
            Some("TRIM_HORIZON") => StartingPosition::TrimHorizon,
            Some("LATEST") => StartingPosition::Latest,
            other => bail!("{p}.StartingPosition: expected TRIM_HORIZON or LATEST, got {other:?}"),
        };
        let batch_size = int("BatchSize")?.unwrap_or(100);
        if !(1..=10_000).contains(&batch_size) {
            bail!("{p}.BatchSize: {batch_size} is not within 1..=10000");
        }
        let window = int("MaximumBatchingWindowInSeconds")?.unwrap_or(0);
        if !(0..=300).contains(&window) {
            bail!("{p}.MaximumBatchingWindowInSeconds: {window} is not within 0..=300");
        }
        let max_retry_attempts = match int("MaximumRetryAttempts")?.unwrap_or(-1) {
            -1 => None,
            n if (0..=10_000).contains(&n) => Some(n as u32),
            n => bail!("{p}.MaximumRetryAttempts: {n} is not -1 or within 0..=10000"),
        };
        let report_batch_item_failures = match props.get("FunctionResponseTypes") {
            Some(J::Array(a)) => a
                .iter()
                .any(|t| t.as_str() == Some("ReportBatchItemFailures")),
            _ => false,
        };
        let on_failure = match props.pointer("/DestinationConfig/OnFailure/Destination") {
            None | Some(J::Null) => None,
            Some(v) => {
                let arn = scalar_string(v).with_context(|| {
                    format!("{p}.DestinationConfig.OnFailure.Destination: {v} is not an ARN")
                })?;
                if !(arn.starts_with("arn:aws:sqs:") || arn.starts_with("arn:aws:sns:")) {
                    bail!(
                        "{p}.DestinationConfig.OnFailure.Destination: {arn} is not an SQS queue \
                         or SNS topic (what a DynamoDB stream's on-failure destination can be)"
                    );
                }
                Some(arn)
            }
        };
        for unsupported in [
            "FilterCriteria",
            "TumblingWindowInSeconds",
            "MaximumRecordAgeInSeconds",
            "ParallelizationFactor",
        ] {
            if props.get(unsupported).is_some() {
                tracing::warn!("{p}.{unsupported} is not applied locally");
            }
        }
        let table_name = stream_arn
            .split_once(":table/")
            .and_then(|(_, rest)| rest.split_once("/stream/"))
            .map(|(table, _)| table.to_string());
        if let Some(name) = &table_name
            && let Some((tid, r)) = self.resources.iter().find(|(tid, r)| {
                r.kind.starts_with("AWS::DynamoDB::")
                    && r.kind.ends_with("Table")
                    && &self.table_name(tid) == name
            })
            && yget(&r.properties, "StreamSpecification").is_none()
        {
            bail!("{p}: table {tid} has no StreamSpecification, so it has no stream to read");
        }
        Ok(StreamMapping {
            id,
            function: function.to_string(),
            stream_arn,
            table_name,
            starting_position,
            batch_size: batch_size as usize,
            batching_window: Duration::from_secs(window as u64),
            bisect_on_error: flag("BisectBatchOnFunctionError"),
            max_retry_attempts,
            report_batch_item_failures,
            enabled: props.get("Enabled").is_none_or(as_bool),
            on_failure,
        })
    }

    pub(super) fn function(&self, id: &str, r: &Resource) -> Result<FunctionSpec> {
        let path = format!("Resources.{id}");
        let g = &self.globals_function;
        let mut environment = BTreeMap::new();
        for (source, spath) in [
            (g, "Globals.Function".to_string()),
            (&r.properties, format!("{path}.Properties")),
        ] {
            if let Some(vars) = yget(source, "Environment").and_then(|e| yget(e, "Variables")) {
                let resolved = self.resolve(vars, &format!("{spath}.Environment.Variables"))?;
                if let Some(J::Object(m)) = resolved {
                    for (k, v) in m {
                        let v = scalar_string(&v).with_context(|| {
                            format!("{spath}.Environment.Variables.{k}: not a string")
                        })?;
                        environment.insert(k, v);
                    }
                }
            }
        }
        let number = |key: &str, default: u64| -> Result<u64> {
            let v = yget(&r.properties, key).or_else(|| yget(g, key));
            match v {
                None => Ok(default),
                Some(v) => {
                    let s = self.resolve_string(v, &format!("{path}.Properties.{key}"), 0)?;
                    s.parse()
                        .with_context(|| format!("{path}.Properties.{key}: {s:?} is not a number"))
                }
            }
        };
        let timeout = Duration::from_secs(number("Timeout", 3)?);
        let memory_mb = number("MemorySize", 128)? as u32;
        let binary = match yget(&r.metadata, "BuildProperties").and_then(|b| yget(b, "Binary")) {
            Some(b) => {
                self.resolve_string(b, &format!("{path}.Metadata.BuildProperties.Binary"), 0)?
            }
            None => bail!(
                "{path}.Metadata.BuildProperties.Binary: missing; the local cloud needs it to find the binary"
            ),
        };
        let function_name = self.function_name(id, &path)?;
        Ok(FunctionSpec {
            logical_id: id.to_string(),
            arn: self.get_att(id, "Arn", &path)?,
            function_name,
            binary,
            environment,
            timeout,
            memory_mb,
        })
    }
}
