//! Reads a SAM / CloudFormation `template.yaml` into what the local cloud needs to run it.
//!
//! Intrinsic functions (`!Ref`, `!Sub`, `!GetAtt`, `!Join`, `!If`, `!Select`, `!Split`,
//! `!FindInMap`, conditions, and their long forms) are evaluated against local names: a table
//! `!Ref` is `<prefix>-<LogicalId>`, a bucket's is the lowercase of that, ARNs are plausible
//! ARNs in account `000000000000` unless provisioning recorded the real one (see
//! [`Template::set_physical`]). Anything that cannot be resolved is an error naming the path in
//! the template where it was found, so a broken template fails loudly instead of running with a
//! wrong value.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value as J;
use serde_yaml_ng::Value as Y;

/// The account id used for every locally made ARN.
pub const LOCAL_ACCOUNT_ID: &str = "000000000000";

/// How names are made for this stack locally.
#[derive(Debug, Clone)]
pub struct TemplateOptions {
    /// Stands in for the stack name (`AWS::StackName`) and prefixes every table/bucket/topic.
    pub prefix: String,
    /// `AWS::Region`.
    pub region: String,
    /// `AWS::AccountId`.
    pub account_id: String,
    /// `--parameter Key=Value` overrides of the template's parameter defaults.
    pub parameters: BTreeMap<String, String>,
}

impl Default for TemplateOptions {
    fn default() -> Self {
        Self {
            prefix: "courier".into(),
            region: "us-east-1".into(),
            account_id: LOCAL_ACCOUNT_ID.into(),
            parameters: BTreeMap::new(),
        }
    }
}

/// What provisioning learned about a resource (for example the ARN moto gave a platform app).
#[derive(Debug, Clone, Default)]
pub struct Physical {
    /// What `!Ref` returns, if it differs from the local default.
    pub ref_value: Option<String>,
    /// Attributes for `!GetAtt`, e.g. `Arn`.
    pub attrs: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Resource {
    kind: String,
    properties: Y,
    metadata: Y,
}

/// A parsed template whose conditions and parameters are already evaluated.
#[derive(Debug, Clone)]
pub struct Template {
    opts: TemplateOptions,
    parameters: BTreeMap<String, J>,
    conditions: BTreeMap<String, bool>,
    mappings: Y,
    globals_function: Y,
    resources: BTreeMap<String, Resource>,
    excluded: BTreeSet<String>,
    physical: BTreeMap<String, Physical>,
}

/// A Lambda function to run locally.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// Logical id in the template, e.g. `ConnectFunction`.
    pub logical_id: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub function_name: String,
    /// The function's ARN as the template would resolve it.
    pub arn: String,
    /// File name of the binary in `--bin-dir` (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    /// Resolved environment: `Globals.Function` variables overlaid by the function's own.
    pub environment: BTreeMap<String, String>,
    /// Invocation timeout (default 3 s, like Lambda).
    pub timeout: Duration,
    /// `MemorySize` in MB (default 128).
    pub memory_mb: u32,
}

/// One route of the HTTP API, from a function's `Type: HttpApi` event.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// Logical id of the function behind the route.
    pub function: String,
    /// Upper-case method or `ANY`; `None` for `$default`.
    pub method: Option<String>,
    /// Path with `{param}` / `{proxy+}` segments; `None` for `$default`.
    pub path: Option<String>,
    /// The stage's throttling for this route: the API's `RouteSettings` for its route key, else
    /// its `DefaultRouteSettings` (`None`: the template sets none).
    pub throttle: Option<Throttle>,
}

/// API Gateway's route throttling: a token bucket of `burst` requests refilled at `rate` a
/// second (`ThrottlingBurstLimit`, `ThrottlingRateLimit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// `ThrottlingRateLimit`: requests a second, steady state.
    pub rate: f64,
    /// `ThrottlingBurstLimit`: requests at once.
    pub burst: f64,
}

impl HttpRoute {
    /// The API Gateway route key: `POST /v1/accounts` or `$default`.
    pub fn route_key(&self) -> String {
        match (&self.method, &self.path) {
            (Some(m), Some(p)) => format!("{m} {p}"),
            _ => "$default".into(),
        }
    }
}

/// One route of the WebSocket API.
#[derive(Debug, Clone, PartialEq)]
pub struct WsRoute {
    /// `$connect`, `$disconnect`, `$default` or an action name.
    pub route_key: String,
    /// Logical id of the integration's function (`None` for a route without a Lambda target).
    pub function: Option<String>,
    /// `NONE`, `CUSTOM`, `AWS_IAM`.
    pub authorization_type: String,
    /// Logical id of the authorizer's function when `authorization_type` is `CUSTOM`.
    pub authorizer_function: Option<String>,
    /// A route with a `RouteResponseSelectionExpression` sends the function's `body` back.
    pub two_way: bool,
    /// The stage's throttling for this route: the stage's `RouteSettings` for its route key,
    /// else its `DefaultRouteSettings` (`None`: the template sets none).
    pub throttle: Option<Throttle>,
}

/// The template's WebSocket API (`AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketApi {
    /// Logical id of the API resource.
    pub logical_id: String,
    /// The local API id (what `!Ref` of the API gives).
    pub api_id: String,
    /// e.g. `$request.body.action`.
    pub route_selection_expression: String,
    /// The stage name from `AWS::ApiGatewayV2::Stage` (or `local`).
    pub stage: String,
    /// Routes by route key.
    pub routes: BTreeMap<String, WsRoute>,
}

/// A DynamoDB table's schema, as the template declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// Logical id.
    pub logical_id: String,
    /// Local table name `<prefix>-<LogicalId>`.
    pub name: String,
    /// Resolved `Properties` (KeySchema, AttributeDefinitions, indexes, streams, TTL...).
    pub properties: J,
}

impl TableSpec {
    /// Whether the table is created with a stream (its `StreamSpecification`, which
    /// [`Template::infrastructure`] keeps only where something reads the stream).
    pub fn has_stream(&self) -> bool {
        self.properties.get("StreamSpecification").is_some()
    }

    /// The TTL attribute, when `TimeToLiveSpecification.Enabled` is true.
    pub fn ttl_attribute(&self) -> Option<String> {
        let ttl = self.properties.get("TimeToLiveSpecification")?;
        if !as_bool(ttl.get("Enabled")?) {
            return None;
        }
        ttl.get("AttributeName")?.as_str().map(str::to_owned)
    }
}

/// An S3 bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSpec {
    /// Logical id.
    pub logical_id: String,
    /// Local bucket name, lowercase `<prefix>-<logicalid>`.
    pub name: String,
    /// Resolved `CorsConfiguration`, if any.
    pub cors: Option<J>,
}

/// An SNS topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    /// Logical id.
    pub logical_id: String,
    /// Topic name (`TopicName` or `<prefix>-<LogicalId>`).
    pub name: String,
    /// Resolved `Properties`.
    pub properties: J,
}

/// An SNS platform application (`Custom::SnsPlatformApplication`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformAppSpec {
    /// Logical id.
    pub logical_id: String,
    /// `Name`.
    pub name: String,
    /// `APNS`, `APNS_SANDBOX` or `GCM`.
    pub platform: String,
    /// `Attributes`.
    pub attributes: BTreeMap<String, String>,
}

/// An SQS queue (`AWS::SQS::Queue`), created in moto.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Logical id.
    pub logical_id: String,
    /// `QueueName`, or `<prefix>-<LogicalId>` (`.fifo` added for a FIFO queue).
    pub name: String,
    /// Resolved `Properties`.
    pub properties: J,
}

/// Everything that must exist in the emulators before functions run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Infrastructure {
    /// SQS queues.
    pub queues: Vec<QueueSpec>,
    /// DynamoDB tables.
    pub tables: Vec<TableSpec>,
    /// S3 buckets.
    pub buckets: Vec<BucketSpec>,
    /// SNS topics.
    pub topics: Vec<TopicSpec>,
    /// SNS platform applications.
    pub platform_apps: Vec<PlatformAppSpec>,
}

/// Where a stream mapping starts in the shards that exist when it starts (shards that appear
/// later are always read from their start, as Lambda does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records written after the mapping started.
    Latest,
}

/// A DynamoDB Streams event source mapping: a function's `Type: DynamoDB` event, or an
/// `AWS::Lambda::EventSourceMapping` whose `EventSourceArn` is a table's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMapping {
    /// `<FunctionLogicalId>.<EventName>` for a SAM event, the resource's logical id otherwise.
    pub id: String,
    /// Logical id of the function it invokes.
    pub function: String,
    /// The stream ARN as the template resolves it (the real one once provisioning recorded it).
    pub stream_arn: String,
    /// The table whose stream it is (`<prefix>-<LogicalId>`), parsed from the ARN.
    pub table_name: Option<String>,
    /// `StartingPosition`.
    pub starting_position: StartingPosition,
    /// `BatchSize` (default 100, at most 10000; one `GetRecords` returns at most 1000).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (default 0: invoke as soon as records arrive).
    pub batching_window: Duration,
    /// `BisectBatchOnFunctionError`.
    pub bisect_on_error: bool,
    /// `MaximumRetryAttempts`; `None` (the default, `-1`) retries until the records expire.
    pub max_retry_attempts: Option<u32>,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `Enabled` (default true).
    pub enabled: bool,
    /// `DestinationConfig.OnFailure.Destination`: the SQS queue or SNS topic ARN that gets an
    /// invocation record for each batch whose retries ran out.
    pub on_failure: Option<String>,
}

/// What the gateways run: functions, HTTP routes and the WebSocket API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Application {
    /// Functions by logical id.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// HTTP API routes.
    pub http_routes: Vec<HttpRoute>,
    /// The WebSocket API, if the template has one.
    pub websocket: Option<WebSocketApi>,
    /// DynamoDB Streams event source mappings.
    pub stream_mappings: Vec<StreamMapping>,
}

const FUNCTION_TYPES: [&str; 2] = ["AWS::Serverless::Function", "AWS::Lambda::Function"];

fn as_bool(v: &J) -> bool {
    match v {
        J::Bool(b) => *b,
        J::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn yget<'a>(v: &'a Y, key: &str) -> Option<&'a Y> {
    v.as_mapping()?.get(key)
}

fn scalar_string(v: &J) -> Option<String> {
    match v {
        J::String(s) => Some(s.clone()),
        J::Number(n) => Some(n.to_string()),
        J::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The name of an intrinsic function given as a short tag (`!Sub`) or a long key (`Fn::Sub`).
fn intrinsic_name(tag_or_key: &str) -> Option<String> {
    let t = tag_or_key.trim_start_matches('!');
    if t == "Ref" || t == "Condition" {
        return Some(t.to_string());
    }
    if let Some(rest) = t.strip_prefix("Fn::") {
        return Some(format!("Fn::{rest}"));
    }
    Some(format!("Fn::{t}"))
}

impl Template {
    /// Parses the YAML text and evaluates parameters and conditions.
    pub fn parse(text: &str, opts: TemplateOptions) -> Result<Self> {
        let root: Y = serde_yaml_ng::from_str(text).context("template is not valid YAML")?;
        let mut t = Template {
            opts,
            parameters: BTreeMap::new(),
            conditions: BTreeMap::new(),
            mappings: yget(&root, "Mappings").cloned().unwrap_or(Y::Null),
            globals_function: yget(&root, "Globals")
                .and_then(|g| yget(g, "Function"))
                .cloned()
                .unwrap_or(Y::Null),
            resources: BTreeMap::new(),
            excluded: BTreeSet::new(),
            physical: BTreeMap::new(),
        };

        if let Some(params) = yget(&root, "Parameters").and_then(Y::as_mapping) {
            for (k, def) in params {
                let name = k.as_str().context("parameter name must be a string")?;
                let ty = yget(def, "Type").and_then(Y::as_str).unwrap_or("String");
                let raw = if let Some(v) = t.opts.parameters.get(name) {
                    J::String(v.clone())
                } else if let Some(d) = yget(def, "Default") {
                    yaml_to_json(d).with_context(|| format!("Parameters.{name}.Default"))?
                } else {
                    bail!("Parameters.{name}: no Default and no --parameter {name}=... given");
                };
                let value = if ty.starts_with("List<") || ty == "CommaDelimitedList" {
                    match raw {
                        J::String(s) => J::Array(
                            s.split(',')
                                .map(|p| J::String(p.trim().to_string()))
                                .collect(),
                        ),
                        other => other,
                    }
                } else {
                    match raw {
                        J::Number(n) => J::String(n.to_string()),
                        J::Bool(b) => J::String(b.to_string()),
                        other => other,
                    }
                };
                t.parameters.insert(name.to_string(), value);
            }
        }
        for name in t.opts.parameters.keys() {
            if !t.parameters.contains_key(name) {
                bail!(
                    "parameter {name} (from --parameter or the parameters file): the template \
                     has no such parameter"
                );
            }
        }

        let raw_conditions = yget(&root, "Conditions")
            .and_then(Y::as_mapping)
            .cloned()
            .unwrap_or_default();
        let mut raw_by_name = BTreeMap::new();
        for (k, v) in &raw_conditions {
            let name = k.as_str().context("condition name must be a string")?;
            raw_by_name.insert(name.to_string(), v.clone());
        }
        for name in raw_by_name.keys() {
            let mut visiting = Vec::new();
            t.eval_named_condition(name, &raw_by_name, &mut visiting)?;
        }

        let resources = yget(&root, "Resources")
            .and_then(Y::as_mapping)
            .context("template has no Resources")?;
        for (k, r) in resources {
            let id = k
                .as_str()
                .context("resource id must be a string")?
                .to_string();
            let kind = yget(r, "Type")
                .and_then(Y::as_str)
                .with_context(|| format!("Resources.{id}.Type missing"))?
                .to_string();
            if let Some(cond) = yget(r, "Condition") {
                let cond = cond
                    .as_str()
                    .with_context(|| format!("Resources.{id}.Condition must be a name"))?;
                let value = *t
                    .conditions
                    .get(cond)
                    .with_context(|| format!("Resources.{id}.Condition: no condition {cond}"))?;
                if !value {
                    t.excluded.insert(id);
                    continue;
                }
            }
            t.resources.insert(
                id,
                Resource {
                    kind,
                    properties: yget(r, "Properties").cloned().unwrap_or(Y::Null),
                    metadata: yget(r, "Metadata").cloned().unwrap_or(Y::Null),
                },
            );
        }
        Ok(t)
    }

    /// The evaluated value of a named condition.
    pub fn condition(&self, name: &str) -> Option<bool> {
        self.conditions.get(name).copied()
    }

    /// The value of a parameter (after `--parameter` overrides).
    pub fn parameter(&self, name: &str) -> Option<&J> {
        self.parameters.get(name)
    }

    /// Records what provisioning created, so later `!Ref`/`!GetAtt` resolve to the real thing.
    pub fn set_physical(&mut self, logical_id: &str, physical: Physical) {
        self.physical.insert(logical_id.to_string(), physical);
    }

    /// Logical ids and types of the resources whose condition holds.
    pub fn resource_types(&self) -> impl Iterator<Item = (&str, &str)> {
        self.resources
            .iter()
            .map(|(k, r)| (k.as_str(), r.kind.as_str()))
    }

    fn eval_named_condition(
        &mut self,
        name: &str,
        raw: &BTreeMap<String, Y>,
        visiting: &mut Vec<String>,
    ) -> Result<bool> {
        if let Some(v) = self.conditions.get(name) {
            return Ok(*v);
        }
        if visiting.iter().any(|v| v == name) {
            bail!("Conditions.{name}: refers to itself");
        }
        let body = raw
            .get(name)
            .with_context(|| format!("Conditions: no condition named {name}"))?
            .clone();
        visiting.push(name.to_string());
        let v = self.eval_condition(&body, raw, visiting, &format!("Conditions.{name}"))?;
        visiting.pop();
        self.conditions.insert(name.to_string(), v);
        Ok(v)
    }

    fn eval_condition(
        &mut self,
        v: &Y,
        raw: &BTreeMap<String, Y>,
        visiting: &mut Vec<String>,
        path: &str,
    ) -> Result<bool> {
        let (name, arg) = match as_intrinsic(v) {
            Some(x) => x,
            None => {
                return match v {
                    Y::Bool(b) => Ok(*b),
                    Y::String(s) if s == "true" || s == "false" => Ok(s == "true"),
                    _ => bail!("{path}: not a condition function"),
                };
            }
        };
        match name.as_str() {
            "Condition" => {
                let n = arg
                    .as_str()
                    .with_context(|| format!("{path}: Condition needs a name"))?;
                self.eval_named_condition(n, raw, visiting)
            }
            "Fn::Equals" => {
                let items = arg
                    .as_sequence()
                    .filter(|s| s.len() == 2)
                    .with_context(|| format!("{path}: Fn::Equals needs two values"))?;
                let a = self.resolve(&items[0], &format!("{path}.Fn::Equals[0]"))?;
                let b = self.resolve(&items[1], &format!("{path}.Fn::Equals[1]"))?;
                Ok(loose_eq(&a, &b))
            }
            "Fn::Not" => {
                let inner = arg.as_sequence().and_then(|s| s.first()).unwrap_or(arg);
                Ok(!self.eval_condition(inner, raw, visiting, &format!("{path}.Fn::Not"))?)
            }
            "Fn::And" | "Fn::Or" => {
                let items = arg
                    .as_sequence()
                    .with_context(|| format!("{path}: {name} needs a list"))?;
                let mut acc = name == "Fn::And";
                for (i, c) in items.iter().enumerate() {
                    let b =
                        self.eval_condition(c, raw, visiting, &format!("{path}.{name}[{i}]"))?;
                    if name == "Fn::And" {
                        acc &= b;
                    } else {
                        acc |= b;
                    }
                }
                Ok(acc)
            }
            other => bail!("{path}: {other} is not a condition function"),
        }
    }
}

mod intrinsics;
mod resources;
mod routes;

/// The local id of an API: its logical id, lowercased (API Gateway ids are lowercase).
fn local_api_id(logical_id: &str) -> String {
    logical_id.to_ascii_lowercase()
}

fn loose_eq(a: &Option<J>, b: &Option<J>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => match (scalar_string(a), scalar_string(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        (None, None) => true,
        _ => false,
    }
}

/// `(function name, argument)` if the value is an intrinsic function call in short or long form.
fn as_intrinsic(v: &Y) -> Option<(String, &Y)> {
    match v {
        Y::Tagged(t) => Some((intrinsic_name(&t.tag.to_string())?, &t.value)),
        Y::Mapping(m) if m.len() == 1 => {
            let (k, val) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" || k == "Condition" || k.starts_with("Fn::") {
                Some((k.to_string(), val))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Adds to `read` each table of `tables` whose stream `v` refers to (see
/// [`Template::read_streams`]).
fn walk_stream_reads(v: &Y, tables: &[&String], read: &mut BTreeSet<String>) {
    if let Some((name, arg)) = as_intrinsic(v) {
        match name.as_str() {
            "Fn::GetAtt" => {
                let target = match arg {
                    Y::String(s) => s.split_once('.'),
                    Y::Sequence(s) if s.len() == 2 => s[0].as_str().zip(s[1].as_str()),
                    _ => None,
                };
                if let Some((id, "StreamArn")) = target
                    && let Some(t) = tables.iter().find(|t| t.as_str() == id)
                {
                    read.insert(t.to_string());
                }
            }
            "Fn::Sub" => {
                let text = match arg {
                    Y::Sequence(s) => s.first().and_then(Y::as_str),
                    other => other.as_str(),
                };
                if let Some(text) = text {
                    for t in tables {
                        if text.contains(&format!("${{{t}.StreamArn}}"))
                            || text.contains(&format!("-{t}/stream/"))
                        {
                            read.insert(t.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
        walk_stream_reads(arg, tables, read);
        return;
    }
    match v {
        Y::Sequence(items) => items
            .iter()
            .for_each(|i| walk_stream_reads(i, tables, read)),
        Y::Mapping(m) => m.values().for_each(|i| walk_stream_reads(i, tables, read)),
        Y::Tagged(t) => walk_stream_reads(&t.value, tables, read),
        _ => {}
    }
}

fn yaml_to_json(v: &Y) -> Result<J> {
    Ok(match v {
        Y::Tagged(t) => bail!("unexpected tag {}", t.tag),
        other => serde_json::to_value(other)?,
    })
}

#[cfg(test)]
mod tests;
