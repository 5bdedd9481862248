//! Creates the template's tables, buckets, topics and platform applications in the emulators.
//!
//! Everything comes from `template.yaml`, so local and deployed schemas cannot drift. Creating
//! something that already exists is fine (a restart against a long-running emulator).

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_dynamodb::types as ddb;
use serde_json::Value as J;

use crate::emulators::Endpoints;
use crate::template::{Infrastructure, Physical, TableSpec};

/// Region and static credentials for every SDK client the local cloud builds.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// `AWS_REGION`.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID` (placeholder locally).
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY` (placeholder locally).
    pub secret_access_key: String,
}

impl AwsSettings {
    /// From the environment, defaulting to `us-east-1` and `local`/`local`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id: var("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "local".into()),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "local".into()),
        }
    }

    /// What every client shares: this region and these static credentials, `endpoint`, and
    /// nothing taken from the environment or EC2 metadata.
    fn sdk_config(&self, endpoint: &str) -> aws_config::SdkConfig {
        let credentials = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "courier-local",
        );
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .endpoint_url(endpoint)
            .build()
    }

    /// A DynamoDB client for `endpoint`.
    pub fn dynamodb(&self, endpoint: &str) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config(endpoint))
    }

    /// A DynamoDB Streams client for `endpoint` (DynamoDB's own endpoint locally).
    pub fn dynamodb_streams(&self, endpoint: &str) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&self.sdk_config(endpoint))
    }

    /// A path-style S3 client for `endpoint`.
    pub fn s3(&self, endpoint: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config(endpoint))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// An SQS client for `endpoint`.
    pub fn sqs(&self, endpoint: &str) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config(endpoint))
    }

    /// An SNS client for `endpoint`.
    pub fn sns(&self, endpoint: &str) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.sdk_config(endpoint))
    }
}

fn s(v: &J, key: &str) -> Option<String> {
    v.get(key).and_then(J::as_str).map(str::to_owned)
}

fn list<'a>(v: &'a J, key: &str) -> &'a [J] {
    v.get(key).and_then(J::as_array).map_or(&[], Vec::as_slice)
}

fn strings(v: &J, key: &str) -> Option<Vec<String>> {
    v.get(key).and_then(J::as_array).map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    })
}

fn number(v: &J, key: &str) -> Option<i64> {
    match v.get(key)? {
        J::Number(n) => n.as_i64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn key_schema(v: &J, path: &str) -> Result<Vec<ddb::KeySchemaElement>> {
    let mut out = Vec::new();
    for k in list(v, "KeySchema") {
        out.push(
            ddb::KeySchemaElement::builder()
                .attribute_name(s(k, "AttributeName").with_context(|| format!("{path}.KeySchema"))?)
                .key_type(ddb::KeyType::from(
                    s(k, "KeyType")
                        .with_context(|| format!("{path}.KeySchema"))?
                        .as_str(),
                ))
                .build()?,
        );
    }
    if out.is_empty() {
        bail!("{path}.KeySchema is empty");
    }
    Ok(out)
}

fn projection(v: &J) -> ddb::Projection {
    let p = v.get("Projection").cloned().unwrap_or(J::Null);
    ddb::Projection::builder()
        .projection_type(ddb::ProjectionType::from(
            s(&p, "ProjectionType")
                .unwrap_or_else(|| "ALL".into())
                .as_str(),
        ))
        .set_non_key_attributes(strings(&p, "NonKeyAttributes"))
        .build()
}

fn throughput(v: &J) -> Result<Option<ddb::ProvisionedThroughput>> {
    let Some(t) = v.get("ProvisionedThroughput") else {
        return Ok(None);
    };
    Ok(Some(
        ddb::ProvisionedThroughput::builder()
            .read_capacity_units(number(t, "ReadCapacityUnits").unwrap_or(5))
            .write_capacity_units(number(t, "WriteCapacityUnits").unwrap_or(5))
            .build()?,
    ))
}

async fn create_table(client: &aws_sdk_dynamodb::Client, t: &TableSpec) -> Result<()> {
    let p = &t.properties;
    let path = format!("Resources.{}.Properties", t.logical_id);
    let mut req = client
        .create_table()
        .table_name(&t.name)
        .set_key_schema(Some(key_schema(p, &path)?));
    for a in list(p, "AttributeDefinitions") {
        req = req.attribute_definitions(
            ddb::AttributeDefinition::builder()
                .attribute_name(s(a, "AttributeName").context("AttributeName")?)
                .attribute_type(ddb::ScalarAttributeType::from(
                    s(a, "AttributeType").context("AttributeType")?.as_str(),
                ))
                .build()?,
        );
    }
    let provisioned = s(p, "BillingMode").as_deref() == Some("PROVISIONED");
    if provisioned {
        req = req
            .billing_mode(ddb::BillingMode::Provisioned)
            .set_provisioned_throughput(throughput(p)?);
    } else {
        req = req.billing_mode(ddb::BillingMode::PayPerRequest);
    }
    for (i, g) in list(p, "GlobalSecondaryIndexes").iter().enumerate() {
        let gp = format!("{path}.GlobalSecondaryIndexes[{i}]");
        req = req.global_secondary_indexes(
            ddb::GlobalSecondaryIndex::builder()
                .index_name(s(g, "IndexName").with_context(|| format!("{gp}.IndexName"))?)
                .set_key_schema(Some(key_schema(g, &gp)?))
                .projection(projection(g))
                .set_provisioned_throughput(if provisioned { throughput(g)? } else { None })
                .build()?,
        );
    }
    for (i, l) in list(p, "LocalSecondaryIndexes").iter().enumerate() {
        let lp = format!("{path}.LocalSecondaryIndexes[{i}]");
        req = req.local_secondary_indexes(
            ddb::LocalSecondaryIndex::builder()
                .index_name(s(l, "IndexName").with_context(|| format!("{lp}.IndexName"))?)
                .set_key_schema(Some(key_schema(l, &lp)?))
                .projection(projection(l))
                .build()?,
        );
    }
    if let Some(view) = p
        .get("StreamSpecification")
        .and_then(|x| s(x, "StreamViewType"))
    {
        req = req.stream_specification(
            ddb::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(ddb::StreamViewType::from(view.as_str()))
                .build()?,
        );
    }
    match req.send().await {
        Ok(_) => tracing::info!("created table {}", t.name),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            tracing::info!("table {} already exists", t.name)
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("creating table {}", t.name)));
        }
    }
    if let Some(attr) = t.ttl_attribute() {
        let r = client
            .update_time_to_live()
            .table_name(&t.name)
            .time_to_live_specification(
                ddb::TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await;
        if let Err(e) = r {
            // Already enabled on a table that existed: fine.
            tracing::debug!(
                "UpdateTimeToLive on {}: {:?}",
                t.name,
                e.into_service_error()
            );
        }
    }
    Ok(())
}

async fn create_bucket(client: &aws_sdk_s3::Client, name: &str, cors: Option<&J>) -> Result<()> {
    match client.create_bucket().bucket(name).send().await {
        Ok(_) => tracing::info!("created bucket {name}"),
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            }) => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("creating bucket {name}"))),
    }
    if let Some(cors) = cors {
        let mut rules = Vec::new();
        for r in list(cors, "CorsRules") {
            rules.push(
                aws_sdk_s3::types::CorsRule::builder()
                    .set_id(s(r, "Id"))
                    .set_allowed_headers(strings(r, "AllowedHeaders"))
                    .set_allowed_methods(strings(r, "AllowedMethods"))
                    .set_allowed_origins(strings(r, "AllowedOrigins"))
                    .set_expose_headers(strings(r, "ExposedHeaders"))
                    .set_max_age_seconds(number(r, "MaxAge").map(|n| n as i32))
                    .build()?,
            );
        }
        client
            .put_bucket_cors()
            .bucket(name)
            .cors_configuration(
                aws_sdk_s3::types::CorsConfiguration::builder()
                    .set_cors_rules(Some(rules))
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("PutBucketCors on {name}"))?;
    }
    Ok(())
}

/// A created resource's physical names: `!Ref` gives `ref_value`, `!GetAtt` the `attrs`.
fn referred_as<const N: usize>(ref_value: String, attrs: [(&str, String); N]) -> Physical {
    Physical {
        ref_value: Some(ref_value),
        attrs: attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// Creates everything in `infra` and returns what `!Ref`/`!GetAtt` must now resolve to.
pub async fn provision(
    infra: &Infrastructure,
    endpoints: &Endpoints,
    aws: &AwsSettings,
) -> Result<Vec<(String, Physical)>> {
    let mut physical = Vec::new();
    if !infra.tables.is_empty() {
        let client = aws.dynamodb(&endpoints.dynamodb);
        for t in &infra.tables {
            create_table(&client, t).await?;
            if t.has_stream() {
                let out = client
                    .describe_table()
                    .table_name(&t.name)
                    .send()
                    .await
                    .with_context(|| format!("DescribeTable {}", t.name))?;
                if let Some(arn) = out.table().and_then(|d| d.latest_stream_arn()) {
                    let mut p = Physical::default();
                    p.attrs.insert("StreamArn".into(), arn.to_string());
                    physical.push((t.logical_id.clone(), p));
                }
            }
        }
    }
    if !infra.buckets.is_empty() {
        let client = aws.s3(&endpoints.s3);
        for b in &infra.buckets {
            create_bucket(&client, &b.name, b.cors.as_ref()).await?;
        }
    }
    if !infra.queues.is_empty() {
        let client = aws.sqs(&endpoints.sqs);
        for q in &infra.queues {
            let mut req = client.create_queue().queue_name(&q.name);
            if q.name.ends_with(".fifo") {
                req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
            }
            let url = req
                .send()
                .await
                .with_context(|| format!("creating queue {}", q.name))?
                .queue_url()
                .unwrap_or_default()
                .to_string();
            tracing::info!("created queue {url}");
            let p = referred_as(url.clone(), [("QueueUrl", url)]);
            physical.push((q.logical_id.clone(), p));
        }
    }
    if !infra.topics.is_empty() || !infra.platform_apps.is_empty() {
        let client = aws.sns(&endpoints.sns);
        for t in &infra.topics {
            let mut req = client.create_topic().name(&t.name);
            if t.name.ends_with(".fifo") {
                req = req.attributes("FifoTopic", "true");
            }
            let out = req
                .send()
                .await
                .with_context(|| format!("creating topic {}", t.name))?;
            let arn = out.topic_arn().unwrap_or_default().to_string();
            tracing::info!("created topic {arn}");
            let p = referred_as(
                arn.clone(),
                [("TopicArn", arn), ("TopicName", t.name.clone())],
            );
            physical.push((t.logical_id.clone(), p));
        }
        for app in &infra.platform_apps {
            let mut attributes: std::collections::HashMap<String, String> =
                app.attributes.clone().into_iter().collect();
            if endpoints.localstack.is_some() {
                // LocalStack refuses a PlatformCredential without a PlatformPrincipal ("provided
                // without PlatformPrincipal"), though SNS takes FCM's service account JSON alone.
                attributes.entry("PlatformPrincipal".into()).or_default();
            }
            let out = client
                .create_platform_application()
                .name(&app.name)
                .platform(&app.platform)
                .set_attributes(Some(attributes))
                .send()
                .await
                .with_context(|| format!("creating platform application {}", app.name))?;
            let arn = out
                .platform_application_arn()
                .unwrap_or_default()
                .to_string();
            tracing::info!("created platform application {arn}");
            let p = referred_as(arn.clone(), [("Arn", arn)]);
            physical.push((app.logical_id.clone(), p));
        }
    }
    Ok(physical)
}
