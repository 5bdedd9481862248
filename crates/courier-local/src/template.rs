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

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value as J};
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

    /// Resolves a template value to plain JSON; `AWS::NoValue` at the top becomes `null`.
    pub fn resolve(&self, v: &Y, path: &str) -> Result<Option<J>> {
        self.resolve_depth(v, path, 0)
    }

    fn resolve_depth(&self, v: &Y, path: &str, depth: usize) -> Result<Option<J>> {
        if depth > 64 {
            bail!("{path}: intrinsic functions nest too deep (a cycle?)");
        }
        if let Some((name, arg)) = as_intrinsic(v)
            && name != "Condition"
        {
            return self.intrinsic(&name, arg, path, depth + 1);
        }
        Ok(Some(match v {
            Y::Null => J::Null,
            Y::Bool(b) => J::Bool(*b),
            Y::Number(n) => serde_json::to_value(n).unwrap_or(J::Null),
            Y::String(s) => J::String(s.clone()),
            Y::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(x) = self.resolve_depth(item, &format!("{path}[{i}]"), depth)? {
                        out.push(x);
                    }
                }
                J::Array(out)
            }
            Y::Mapping(m) => {
                let mut out = Map::new();
                for (k, val) in m {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        other => scalar_string(&yaml_to_json(other)?)
                            .with_context(|| format!("{path}: mapping key is not a scalar"))?,
                    };
                    if let Some(x) = self.resolve_depth(val, &format!("{path}.{key}"), depth)? {
                        out.insert(key, x);
                    }
                }
                J::Object(out)
            }
            Y::Tagged(t) => bail!("{path}: unknown tag {}", t.tag),
        }))
    }

    fn resolve_string(&self, v: &Y, path: &str, depth: usize) -> Result<String> {
        let r = self
            .resolve_depth(v, path, depth)?
            .with_context(|| format!("{path}: AWS::NoValue where a string is needed"))?;
        scalar_string(&r).with_context(|| format!("{path}: expected a string, got {r}"))
    }

    fn intrinsic(&self, name: &str, arg: &Y, path: &str, depth: usize) -> Result<Option<J>> {
        let p = format!("{path}.{name}");
        match name {
            "Ref" => {
                let target = arg
                    .as_str()
                    .with_context(|| format!("{p}: Ref needs a name"))?;
                self.reference(target, &p)
            }
            "Fn::GetAtt" => {
                let (id, attr) = match arg {
                    Y::String(s) => {
                        let (a, b) = s
                            .split_once('.')
                            .with_context(|| format!("{p}: expected Resource.Attribute"))?;
                        (a.to_string(), b.to_string())
                    }
                    Y::Sequence(s) if s.len() == 2 => (
                        self.resolve_string(&s[0], &p, depth)?,
                        self.resolve_string(&s[1], &p, depth)?,
                    ),
                    _ => bail!("{p}: expected Resource.Attribute"),
                };
                self.get_att(&id, &attr, &p).map(|s| Some(J::String(s)))
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Y::String(s) => (s.clone(), None),
                    Y::Sequence(s) if s.len() == 2 => {
                        (self.resolve_string(&s[0], &p, depth)?, s[1].as_mapping())
                    }
                    _ => bail!("{p}: Fn::Sub needs a string or [string, map]"),
                };
                self.sub(&text, vars, &p, depth).map(|s| Some(J::String(s)))
            }
            "Fn::Join" => {
                let s = arg
                    .as_sequence()
                    .filter(|s| s.len() == 2)
                    .with_context(|| format!("{p}: Fn::Join needs [delimiter, list]"))?;
                let delim = self.resolve_string(&s[0], &p, depth)?;
                let list = self.resolve_depth(&s[1], &p, depth)?;
                let items = match list {
                    Some(J::Array(items)) => items,
                    other => bail!("{p}: Fn::Join needs a list, got {other:?}"),
                };
                let parts: Result<Vec<String>> = items
                    .iter()
                    .map(|i| scalar_string(i).with_context(|| format!("{p}: {i} is not a string")))
                    .collect();
                Ok(Some(J::String(parts?.join(&delim))))
            }
            "Fn::Select" => {
                let s = arg
                    .as_sequence()
                    .filter(|s| s.len() == 2)
                    .with_context(|| format!("{p}: Fn::Select needs [index, list]"))?;
                let idx: usize = self
                    .resolve_string(&s[0], &p, depth)?
                    .parse()
                    .with_context(|| format!("{p}: index is not a number"))?;
                match self.resolve_depth(&s[1], &p, depth)? {
                    Some(J::Array(items)) => items
                        .get(idx)
                        .cloned()
                        .map(Some)
                        .with_context(|| format!("{p}: index {idx} out of range")),
                    other => bail!("{p}: Fn::Select needs a list, got {other:?}"),
                }
            }
            "Fn::Split" => {
                let s = arg
                    .as_sequence()
                    .filter(|s| s.len() == 2)
                    .with_context(|| format!("{p}: Fn::Split needs [delimiter, string]"))?;
                let delim = self.resolve_string(&s[0], &p, depth)?;
                let text = self.resolve_string(&s[1], &p, depth)?;
                Ok(Some(J::Array(
                    text.split(delim.as_str())
                        .map(|x| J::String(x.to_string()))
                        .collect(),
                )))
            }
            "Fn::If" => {
                let s = arg
                    .as_sequence()
                    .filter(|s| s.len() == 3)
                    .with_context(|| format!("{p}: Fn::If needs [condition, then, else]"))?;
                let cond = s[0]
                    .as_str()
                    .with_context(|| format!("{p}: Fn::If needs a condition name"))?;
                let value = self
                    .conditions
                    .get(cond)
                    .with_context(|| format!("{p}: no condition named {cond}"))?;
                let branch = if *value { &s[1] } else { &s[2] };
                self.resolve_depth(branch, &p, depth)
            }
            "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" => {
                let mut scratch = self.clone();
                let v = scratch.eval_condition(
                    &Y::Mapping(
                        [(Y::String(name.to_string()), arg.clone())]
                            .into_iter()
                            .collect(),
                    ),
                    &BTreeMap::new(),
                    &mut Vec::new(),
                    path,
                )?;
                Ok(Some(J::Bool(v)))
            }
            "Fn::FindInMap" => {
                let s = arg
                    .as_sequence()
                    .filter(|s| s.len() == 3)
                    .with_context(|| format!("{p}: Fn::FindInMap needs three values"))?;
                let keys: Vec<String> = s
                    .iter()
                    .map(|k| self.resolve_string(k, &p, depth))
                    .collect::<Result<_>>()?;
                let found = yget(&self.mappings, &keys[0])
                    .and_then(|m| yget(m, &keys[1]))
                    .and_then(|m| yget(m, &keys[2]))
                    .with_context(|| format!("{p}: no mapping {}", keys.join(".")))?;
                self.resolve_depth(found, &p, depth)
            }
            "Fn::Base64" => {
                use base64::Engine as _;
                let text = self.resolve_string(arg, &p, depth)?;
                Ok(Some(J::String(
                    base64::engine::general_purpose::STANDARD.encode(text),
                )))
            }
            "Fn::GetAZs" => Ok(Some(J::Array(
                ["a", "b", "c"]
                    .iter()
                    .map(|z| J::String(format!("{}{z}", self.opts.region)))
                    .collect(),
            ))),
            "Fn::ToJsonString" => {
                let v = self.resolve_depth(arg, &p, depth)?.unwrap_or(J::Null);
                Ok(Some(J::String(v.to_string())))
            }
            "Fn::Length" => match self.resolve_depth(arg, &p, depth)? {
                Some(J::Array(a)) => Ok(Some(J::from(a.len()))),
                other => bail!("{p}: Fn::Length needs a list, got {other:?}"),
            },
            other => bail!("{path}: cannot resolve {other} locally"),
        }
    }

    fn sub(
        &self,
        text: &str,
        vars: Option<&serde_yaml_ng::Mapping>,
        p: &str,
        d: usize,
    ) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .with_context(|| format!("{p}: unterminated ${{ in {text:?}"))?;
            let inner = &after[..end];
            if let Some(literal) = inner.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let name = inner.trim();
                let value = if let Some(v) = vars.and_then(|m| m.get(name)) {
                    self.resolve_string(v, &format!("{p}.{name}"), d)?
                } else if let Some((id, attr)) = name.split_once('.') {
                    self.get_att(id, attr, p)?
                } else {
                    match self.reference(name, p)? {
                        Some(v) => scalar_string(&v)
                            .with_context(|| format!("{p}: ${{{name}}} is not a string"))?,
                        None => String::new(),
                    }
                };
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn resource(&self, id: &str, p: &str) -> Result<&Resource> {
        if self.excluded.contains(id) {
            bail!("{p}: resource {id} is excluded by its condition");
        }
        self.resources
            .get(id)
            .with_context(|| format!("{p}: cannot resolve {id}: no such parameter or resource"))
    }

    fn reference(&self, name: &str, p: &str) -> Result<Option<J>> {
        let o = &self.opts;
        let s = |x: String| Ok(Some(J::String(x)));
        match name {
            "AWS::Region" => return s(o.region.clone()),
            "AWS::AccountId" => return s(o.account_id.clone()),
            "AWS::StackName" => return s(o.prefix.clone()),
            "AWS::StackId" => {
                return s(format!(
                    "arn:aws:cloudformation:{}:{}:stack/{}/00000000-0000-0000-0000-000000000000",
                    o.region, o.account_id, o.prefix
                ));
            }
            "AWS::Partition" => return s("aws".into()),
            "AWS::URLSuffix" => return s("amazonaws.com".into()),
            "AWS::NoValue" => return Ok(None),
            "AWS::NotificationARNs" => return Ok(Some(J::Array(vec![]))),
            _ => {}
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(Some(v.clone()));
        }
        if let Some(v) = self.physical.get(name).and_then(|x| x.ref_value.clone()) {
            return s(v);
        }
        if matches!(name, "ServerlessHttpApi" | "ServerlessRestApi") {
            return s(local_api_id(name));
        }
        let r = self.resource(name, p)?;
        let v = match r.kind.as_str() {
            "AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable" => self.table_name(name),
            "AWS::S3::Bucket" => self.bucket_name(name),
            "AWS::SNS::Topic" => self.get_att(name, "TopicArn", p)?,
            "AWS::SQS::Queue" => self.get_att(name, "QueueUrl", p)?,
            k if FUNCTION_TYPES.contains(&k) => self.function_name(name, p)?,
            "AWS::ApiGatewayV2::Api" | "AWS::Serverless::HttpApi" | "AWS::Serverless::Api" => {
                local_api_id(name)
            }
            "Custom::SnsPlatformApplication" => self.get_att(name, "Arn", p)?,
            _ => name.to_string(),
        };
        s(v)
    }

    fn get_att(&self, id: &str, attr: &str, p: &str) -> Result<String> {
        let o = &self.opts;
        if let Some(v) = self.physical.get(id).and_then(|x| x.attrs.get(attr)) {
            return Ok(v.clone());
        }
        // SAM's implicit role of a function.
        if let Some(func) = id.strip_suffix("Role")
            && !self.resources.contains_key(id)
            && self
                .resources
                .get(func)
                .is_some_and(|r| FUNCTION_TYPES.contains(&r.kind.as_str()))
        {
            return match attr {
                "Arn" => Ok(format!("arn:aws:iam::{}:role/{id}", o.account_id)),
                _ => bail!("{p}: cannot resolve !GetAtt {id}.{attr}"),
            };
        }
        let r = self.resource(id, p)?;
        let region = &o.region;
        let acct = &o.account_id;
        let v = match (r.kind.as_str(), attr) {
            ("AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable", "Arn") => {
                format!(
                    "arn:aws:dynamodb:{region}:{acct}:table/{}",
                    self.table_name(id)
                )
            }
            ("AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable", "StreamArn") => format!(
                "arn:aws:dynamodb:{region}:{acct}:table/{}/stream/1970-01-01T00:00:00.000",
                self.table_name(id)
            ),
            (k, "Arn") if FUNCTION_TYPES.contains(&k) => format!(
                "arn:aws:lambda:{region}:{acct}:function:{}",
                self.function_name(id, p)?
            ),
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{}", self.bucket_name(id)),
            ("AWS::S3::Bucket", "DomainName") => {
                format!("{}.s3.amazonaws.com", self.bucket_name(id))
            }
            ("AWS::S3::Bucket", "RegionalDomainName") => {
                format!("{}.s3.{region}.amazonaws.com", self.bucket_name(id))
            }
            ("AWS::SNS::Topic", "TopicArn" | "Arn") => {
                format!("arn:aws:sns:{region}:{acct}:{}", self.topic_name(id, p)?)
            }
            ("AWS::SNS::Topic", "TopicName") => self.topic_name(id, p)?,
            ("AWS::SQS::Queue", "Arn") => {
                format!("arn:aws:sqs:{region}:{acct}:{}", self.queue_name(id, p)?)
            }
            ("AWS::SQS::Queue", "QueueName") => self.queue_name(id, p)?,
            ("AWS::SQS::Queue", "QueueUrl") => format!(
                "https://sqs.{region}.amazonaws.com/{acct}/{}",
                self.queue_name(id, p)?
            ),
            ("Custom::SnsPlatformApplication", "Arn") => {
                let name = self.prop_string(id, "Name", p)?;
                let platform = self.prop_string(id, "Platform", p)?;
                format!("arn:aws:sns:{region}:{acct}:app/{platform}/{name}")
            }
            ("AWS::ApiGatewayV2::Api", "ApiEndpoint") => {
                format!(
                    "wss://{}.execute-api.{region}.amazonaws.com",
                    local_api_id(id)
                )
            }
            ("AWS::ApiGatewayV2::Api", "ApiId") => local_api_id(id),
            ("AWS::IAM::Role", "Arn") => format!("arn:aws:iam::{acct}:role/{id}"),
            (k, "Arn") => {
                let service = k
                    .split("::")
                    .nth(1)
                    .unwrap_or("unknown")
                    .to_ascii_lowercase();
                format!("arn:aws:{service}:{region}:{acct}:{id}")
            }
            _ => bail!("{p}: cannot resolve !GetAtt {id}.{attr} locally"),
        };
        Ok(v)
    }

    fn prop_string(&self, id: &str, prop: &str, p: &str) -> Result<String> {
        let r = self.resource(id, p)?;
        let v = yget(&r.properties, prop)
            .with_context(|| format!("Resources.{id}.Properties.{prop} is missing"))?;
        self.resolve_string(v, &format!("Resources.{id}.Properties.{prop}"), 1)
    }

    fn table_name(&self, id: &str) -> String {
        format!("{}-{id}", self.opts.prefix)
    }

    fn bucket_name(&self, id: &str) -> String {
        format!("{}-{id}", self.opts.prefix).to_ascii_lowercase()
    }

    fn topic_name(&self, id: &str, p: &str) -> Result<String> {
        let r = self.resource(id, p)?;
        match yget(&r.properties, "TopicName") {
            Some(v) => self.resolve_string(v, &format!("Resources.{id}.Properties.TopicName"), 1),
            None => Ok(format!("{}-{id}", self.opts.prefix)),
        }
    }

    fn queue_name(&self, id: &str, p: &str) -> Result<String> {
        let r = self.resource(id, p)?;
        if let Some(v) = yget(&r.properties, "QueueName") {
            return self.resolve_string(v, &format!("Resources.{id}.Properties.QueueName"), 1);
        }
        let fifo = yget(&r.properties, "FifoQueue")
            .and_then(|v| yaml_to_json(v).ok())
            .is_some_and(|v| as_bool(&v));
        Ok(format!(
            "{}-{id}{}",
            self.opts.prefix,
            if fifo { ".fifo" } else { "" }
        ))
    }

    fn function_name(&self, id: &str, p: &str) -> Result<String> {
        let r = self.resource(id, p)?;
        match yget(&r.properties, "FunctionName") {
            Some(v) => {
                self.resolve_string(v, &format!("Resources.{id}.Properties.FunctionName"), 1)
            }
            None => Ok(format!("{}-{id}", self.opts.prefix)),
        }
    }

    fn resolved_properties(&self, id: &str) -> Result<J> {
        let r = &self.resources[id];
        Ok(self
            .resolve(&r.properties, &format!("Resources.{id}.Properties"))?
            .unwrap_or(J::Null))
    }

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
    fn sam_stream_events(&self, id: &str, r: &Resource) -> Result<Vec<StreamMapping>> {
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
    fn event_source_mapping(
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

    fn stream_mapping(
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

    fn function(&self, id: &str, r: &Resource) -> Result<FunctionSpec> {
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

    fn http_routes(&self, id: &str, r: &Resource) -> Result<Vec<HttpRoute>> {
        let mut routes = Vec::new();
        let Some(events) = yget(&r.properties, "Events").and_then(Y::as_mapping) else {
            return Ok(routes);
        };
        for (name, ev) in events {
            let name = name.as_str().unwrap_or("?");
            if yget(ev, "Type").and_then(Y::as_str) != Some("HttpApi") {
                continue;
            }
            let p = format!("Resources.{id}.Properties.Events.{name}.Properties");
            let props = yget(ev, "Properties").cloned().unwrap_or(Y::Null);
            let path = yget(&props, "Path")
                .map(|v| self.resolve_string(v, &format!("{p}.Path"), 0))
                .transpose()?;
            let method = yget(&props, "Method")
                .map(|v| self.resolve_string(v, &format!("{p}.Method"), 0))
                .transpose()?
                .map(|m| m.to_ascii_uppercase());
            let mut route = match (path, method) {
                (Some(path), method) if path != "$default" => HttpRoute {
                    function: id.to_string(),
                    method: Some(method.unwrap_or_else(|| "ANY".into()).replace('*', "ANY")),
                    path: Some(path),
                    throttle: None,
                },
                _ => HttpRoute {
                    function: id.to_string(),
                    method: None,
                    path: None,
                    throttle: None,
                },
            };
            if let Some(api) = yget(&props, "ApiId") {
                let api = match as_intrinsic(api) {
                    Some((name, target)) if name == "Ref" => target.as_str().map(str::to_owned),
                    _ => None,
                }
                .with_context(|| format!("{p}.ApiId: expected !Ref <HttpApi>"))?;
                route.throttle = self.route_throttle(&api, &route.route_key())?;
            }
            routes.push(route);
        }
        Ok(routes)
    }

    /// The throttling of `route_key` on the `AWS::Serverless::HttpApi` `api`: its
    /// `RouteSettings.<route key>`, else its `DefaultRouteSettings`.
    fn route_throttle(&self, api: &str, route_key: &str) -> Result<Option<Throttle>> {
        let r = self.resource(api, &format!("ApiId {api}"))?;
        if r.kind != "AWS::Serverless::HttpApi" {
            return Ok(None);
        }
        self.settings_throttle(api, r, route_key)
    }

    /// The throttling of `route_key` that the resource `id` (an `AWS::Serverless::HttpApi` or an
    /// `AWS::ApiGatewayV2::Stage`, which spell the settings alike) sets: its
    /// `RouteSettings.<route key>`, else its `DefaultRouteSettings`.
    fn settings_throttle(
        &self,
        id: &str,
        r: &Resource,
        route_key: &str,
    ) -> Result<Option<Throttle>> {
        let p = format!("Resources.{id}.Properties");
        // Only the settings: the rest of the API (domains, CORS) is not needed here.
        let mut props = Map::new();
        for key in ["DefaultRouteSettings", "RouteSettings"] {
            if let Some(v) = yget(&r.properties, key)
                && let Some(v) = self.resolve(v, &format!("{p}.{key}"))?
            {
                props.insert(key.to_string(), v);
            }
        }
        let props = J::Object(props);
        let number = |settings: &J, key: &str| -> Result<Option<f64>> {
            match settings.get(key) {
                None | Some(J::Null) => Ok(None),
                Some(v) => scalar_string(v)
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|n| *n >= 0.0)
                    .map(Some)
                    .with_context(|| format!("{p}: {key} {v} is not a number >= 0")),
            }
        };
        let mut rate = None;
        let mut burst = None;
        for settings in [
            props.get("DefaultRouteSettings"),
            props.pointer(&format!(
                "/RouteSettings/{}",
                route_key.replace('~', "~0").replace('/', "~1")
            )),
        ]
        .into_iter()
        .flatten()
        {
            rate = number(settings, "ThrottlingRateLimit")?.or(rate);
            burst = number(settings, "ThrottlingBurstLimit")?.or(burst);
        }
        Ok(match (rate, burst) {
            (None, None) => None,
            // One set alone: the other is the account's default (10,000 a second, 5,000 burst).
            (rate, burst) => Some(Throttle {
                rate: rate.unwrap_or(10_000.0),
                burst: burst.unwrap_or(5_000.0),
            }),
        })
    }

    fn function_for_uri(
        &self,
        uri: &str,
        functions: &BTreeMap<String, FunctionSpec>,
        p: &str,
    ) -> Result<String> {
        let after = uri
            .split(":function:")
            .nth(1)
            .with_context(|| format!("{p}: {uri:?} does not name a Lambda function"))?;
        let name = after.split(['/', ':']).next().unwrap_or(after);
        functions
            .values()
            .find(|f| f.function_name == name || f.logical_id == name)
            .map(|f| f.logical_id.clone())
            .with_context(|| format!("{p}: {uri:?} names function {name}, not in this template"))
    }

    fn websocket(
        &self,
        functions: &BTreeMap<String, FunctionSpec>,
    ) -> Result<Option<WebSocketApi>> {
        let api = self.resources.iter().find(|(_, r)| {
            r.kind == "AWS::ApiGatewayV2::Api"
                && yget(&r.properties, "ProtocolType").and_then(Y::as_str) == Some("WEBSOCKET")
        });
        let Some((api_logical, api_res)) = api else {
            return Ok(None);
        };
        let api_id = local_api_id(api_logical);
        let rse = match yget(&api_res.properties, "RouteSelectionExpression") {
            Some(v) => self.resolve_string(
                v,
                &format!("Resources.{api_logical}.Properties.RouteSelectionExpression"),
                0,
            )?,
            None => "$request.body.action".into(),
        };
        let belongs = |id: &str, r: &Resource| -> Result<bool> {
            match yget(&r.properties, "ApiId") {
                Some(v) => Ok(self.resolve_string(
                    v,
                    &format!("Resources.{id}.Properties.ApiId"),
                    0,
                )? == api_id),
                None => Ok(false),
            }
        };
        let mut stage = None;
        let mut stage_resource = None;
        let mut routes = BTreeMap::new();
        for (id, r) in &self.resources {
            let p = format!("Resources.{id}.Properties");
            match r.kind.as_str() {
                "AWS::ApiGatewayV2::Stage" if belongs(id, r)? && stage.is_none() => {
                    if let Some(v) = yget(&r.properties, "StageName") {
                        stage = Some(self.resolve_string(v, &format!("{p}.StageName"), 0)?);
                    }
                    stage_resource = Some((id, r));
                }
                "AWS::ApiGatewayV2::Route" if belongs(id, r)? => {
                    let props = self.resolve(&r.properties, &p)?.unwrap_or(J::Null);
                    let route_key = props
                        .get("RouteKey")
                        .and_then(J::as_str)
                        .with_context(|| format!("{p}.RouteKey missing"))?
                        .to_string();
                    let function = match props.get("Target").and_then(J::as_str) {
                        Some(target) => {
                            let integration =
                                target.strip_prefix("integrations/").with_context(|| {
                                    format!("{p}.Target: {target:?} is not integrations/<id>")
                                })?;
                            Some(self.integration_function(integration, functions, &p)?)
                        }
                        None => None,
                    };
                    let authorization_type = props
                        .get("AuthorizationType")
                        .and_then(J::as_str)
                        .unwrap_or("NONE")
                        .to_string();
                    let authorizer_function = match props.get("AuthorizerId").and_then(J::as_str) {
                        Some(auth) if authorization_type == "CUSTOM" => {
                            Some(self.authorizer_function(auth, functions, &p)?)
                        }
                        _ => None,
                    };
                    if authorization_type == "CUSTOM" && authorizer_function.is_none() {
                        bail!("{p}: AuthorizationType CUSTOM without an AuthorizerId");
                    }
                    routes.insert(
                        route_key.clone(),
                        WsRoute {
                            route_key,
                            function,
                            authorization_type,
                            authorizer_function,
                            two_way: props.get("RouteResponseSelectionExpression").is_some(),
                            throttle: None,
                        },
                    );
                }
                _ => {}
            }
        }
        // The stage throttles every route, `$connect` (the handshake) included.
        if let Some((id, r)) = stage_resource {
            for route in routes.values_mut() {
                route.throttle = self.settings_throttle(id, r, &route.route_key)?;
            }
        }
        Ok(Some(WebSocketApi {
            logical_id: api_logical.clone(),
            api_id,
            route_selection_expression: rse,
            stage: stage.unwrap_or_else(|| "local".into()),
            routes,
        }))
    }

    fn find_by_local_id(&self, local_id: &str, kind: &str) -> Option<&str> {
        self.resources
            .iter()
            .find(|(id, r)| {
                r.kind == kind
                    && self
                        .physical
                        .get(id.as_str())
                        .and_then(|x| x.ref_value.as_deref())
                        .unwrap_or(id.as_str())
                        == local_id
            })
            .map(|(id, _)| id.as_str())
    }

    fn integration_function(
        &self,
        integration: &str,
        functions: &BTreeMap<String, FunctionSpec>,
        p: &str,
    ) -> Result<String> {
        let id = self
            .find_by_local_id(integration, "AWS::ApiGatewayV2::Integration")
            .ok_or_else(|| anyhow!("{p}.Target: no integration {integration}"))?;
        let ip = format!("Resources.{id}.Properties.IntegrationUri");
        let uri = yget(&self.resources[id].properties, "IntegrationUri")
            .with_context(|| format!("{ip} missing"))?;
        let uri = self.resolve_string(uri, &ip, 0)?;
        self.function_for_uri(&uri, functions, &ip)
    }

    fn authorizer_function(
        &self,
        authorizer: &str,
        functions: &BTreeMap<String, FunctionSpec>,
        p: &str,
    ) -> Result<String> {
        let id = self
            .find_by_local_id(authorizer, "AWS::ApiGatewayV2::Authorizer")
            .ok_or_else(|| anyhow!("{p}.AuthorizerId: no authorizer {authorizer}"))?;
        let ap = format!("Resources.{id}.Properties.AuthorizerUri");
        let uri = yget(&self.resources[id].properties, "AuthorizerUri")
            .with_context(|| format!("{ap} missing"))?;
        let uri = self.resolve_string(uri, &ap, 0)?;
        self.function_for_uri(&uri, functions, &ap)
    }
}

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
mod tests {
    use super::*;

    fn parse(text: &str) -> Template {
        Template::parse(text, TemplateOptions::default()).unwrap()
    }

    const BASE: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  StageName:
    Type: String
    Default: prod
  SmsSenderId:
    Type: String
    Default: ""
  EnablePush:
    Type: String
    Default: "false"
Conditions:
  PushOn: !Equals [!Ref EnablePush, "true"]
  PushOff: !Not [!Condition PushOn]
  Both: !And [!Condition PushOff, !Equals [!Ref StageName, prod]]
Globals:
  Function:
    Timeout: 10
    MemorySize: 256
    Environment:
      Variables:
        RUST_LOG: info
        USERS_TABLE: !Ref UsersTable
Resources:
  UsersTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}
  MediaBucket:
    Type: AWS::S3::Bucket
  PushTopic:
    Type: AWS::SNS::Topic
    Condition: PushOn
  IosApp:
    Type: Custom::SnsPlatformApplication
    Properties:
      ServiceToken: !GetAtt PlatformAppFunction.Arn
      Name: !Sub "${AWS::StackName}-ios"
      Platform: APNS_SANDBOX
      Attributes:
        PlatformCredential: cred
  PlatformAppFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: platformapp}}
    Properties:
      CodeUri: ./
      Handler: bootstrap
  RegisterAccountFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: registration
    Properties:
      CodeUri: ./
      Handler: bootstrap
      Timeout: 5
      Environment:
        Variables:
          COURIER_OPERATION: registerAccount
          RUST_LOG: debug
          TABLE_ARN: !GetAtt UsersTable.Arn
          WHERE: !Sub "${AWS::Region}/${AWS::AccountId}/${UsersTable}"
          LITERAL: !Sub "${!NotAVar}"
          SENDER: !If [PushOn, push, !Ref SmsSenderId]
          JOINED: !Join ["/", [a, !Ref StageName, !Select [1, !Split [",", "x,y,z"]]]]
          LONG: {"Fn::Sub": "${MediaBucket}.${StageName}"}
          APP: !GetAtt IosApp.Arn
          BOTH: !If [Both, yes, no]
          NOTHING: !If [PushOn, x, !Ref "AWS::NoValue"]
      Events:
        Register:
          Type: HttpApi
          Properties:
            Path: /v1/accounts
            Method: post
        Any:
          Type: HttpApi
          Properties:
            Path: /v1/devices/link-requests/{linkId}
            Method: ANY
        Fallback:
          Type: HttpApi
  ConnectFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: connections}}
    Properties:
      CodeUri: ./
      Environment:
        Variables:
          COURIER_OPERATION: connect
  AuthorizerFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: authorizer}}
    Properties:
      CodeUri: ./
  WebSocketApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: courier-ws
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref WebSocketApi
      StageName: !Ref StageName
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref WebSocketApi
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ConnectFunction.Arn}/invocations
  Authorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref WebSocketApi
      AuthorizerType: REQUEST
      AuthorizerUri: !Join ["", ["arn:aws:apigateway:", !Ref "AWS::Region", ":lambda:path/2015-03-31/functions/", !GetAtt [AuthorizerFunction, Arn], "/invocations"]]
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref WebSocketApi
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Authorizer
      Target: !Join ["/", [integrations, !Ref ConnectIntegration]]
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref WebSocketApi
      RouteKey: $default
      RouteResponseSelectionExpression: $default
      Target: !Sub integrations/${ConnectIntegration}
"#;

    #[test]
    fn resolves_tags_sub_getatt_and_globals() {
        let t = parse(BASE);
        let app = t.application().unwrap();
        let f = &app.functions["RegisterAccountFunction"];
        let env = &f.environment;
        assert_eq!(f.binary, "registration");
        assert_eq!(f.timeout, Duration::from_secs(5));
        assert_eq!(f.memory_mb, 256);
        assert_eq!(env["RUST_LOG"], "debug", "function's own variable wins");
        assert_eq!(env["USERS_TABLE"], "courier-UsersTable", "globals merged");
        assert_eq!(env["COURIER_OPERATION"], "registerAccount");
        assert_eq!(
            env["TABLE_ARN"],
            "arn:aws:dynamodb:us-east-1:000000000000:table/courier-UsersTable"
        );
        assert_eq!(env["WHERE"], "us-east-1/000000000000/courier-UsersTable");
        assert_eq!(env["LITERAL"], "${NotAVar}");
        assert_eq!(env["SENDER"], "");
        assert_eq!(env["JOINED"], "a/prod/y");
        assert_eq!(env["LONG"], "courier-mediabucket.prod");
        assert_eq!(
            env["APP"],
            "arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/courier-ios"
        );
        assert_eq!(env["BOTH"], "yes");
        assert!(!env.contains_key("NOTHING"), "AWS::NoValue drops the key");
        assert_eq!(
            app.functions["ConnectFunction"].timeout,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn conditions_skip_resources() {
        let t = parse(BASE);
        assert_eq!(t.condition("PushOn"), Some(false));
        assert_eq!(t.condition("PushOff"), Some(true));
        let infra = t.infrastructure().unwrap();
        assert!(infra.topics.is_empty());
        assert_eq!(infra.tables.len(), 1);
        assert_eq!(infra.tables[0].ttl_attribute().as_deref(), Some("ttl"));
        assert_eq!(infra.buckets[0].name, "courier-mediabucket");
        assert_eq!(infra.platform_apps[0].name, "courier-ios");

        let mut params = BTreeMap::new();
        params.insert("EnablePush".to_string(), "true".to_string());
        let t = Template::parse(
            BASE,
            TemplateOptions {
                parameters: params,
                ..Default::default()
            },
        )
        .unwrap();
        let infra = t.infrastructure().unwrap();
        assert_eq!(infra.topics[0].name, "courier-PushTopic");
        let env = &t.application().unwrap().functions["RegisterAccountFunction"].environment;
        assert_eq!(env["SENDER"], "push");
        assert_eq!(env["NOTHING"], "x");
    }

    #[test]
    fn physical_arn_wins() {
        let mut t = parse(BASE);
        let mut attrs = BTreeMap::new();
        attrs.insert("Arn".to_string(), "arn:moto:app".to_string());
        t.set_physical(
            "IosApp",
            Physical {
                ref_value: Some("arn:moto:app".into()),
                attrs,
            },
        );
        let app = t.application().unwrap();
        assert_eq!(
            app.functions["RegisterAccountFunction"].environment["APP"],
            "arn:moto:app"
        );
    }

    #[test]
    fn http_routes_and_websocket() {
        let app = parse(BASE).application().unwrap();
        let keys: Vec<String> = app.http_routes.iter().map(HttpRoute::route_key).collect();
        assert!(keys.contains(&"POST /v1/accounts".to_string()));
        assert!(keys.contains(&"ANY /v1/devices/link-requests/{linkId}".to_string()));
        assert!(keys.contains(&"$default".to_string()));
        let ws = app.websocket.unwrap();
        assert_eq!(ws.stage, "prod");
        assert_eq!(ws.api_id, "websocketapi");
        assert_eq!(ws.route_selection_expression, "$request.body.action");
        let connect = &ws.routes["$connect"];
        assert_eq!(connect.function.as_deref(), Some("ConnectFunction"));
        assert_eq!(connect.authorization_type, "CUSTOM");
        assert_eq!(
            connect.authorizer_function.as_deref(),
            Some("AuthorizerFunction")
        );
        assert!(!connect.two_way);
        assert!(ws.routes["$default"].two_way);
    }

    #[test]
    fn unresolvable_ref_names_the_path() {
        let text = r#"
Resources:
  F:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: x}}
    Properties:
      Environment:
        Variables:
          BAD: !Ref NoSuchThing
"#;
        let err = parse(text).application().unwrap_err().to_string();
        assert!(
            err.contains("Resources.F.Properties.Environment.Variables.BAD"),
            "{err}"
        );
        assert!(err.contains("NoSuchThing"), "{err}");

        let text = r#"
Resources:
  F:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: x}}
    Properties:
      Environment:
        Variables:
          BAD: !Sub "${Missing.Arn}"
"#;
        let err = parse(text).application().unwrap_err().to_string();
        assert!(err.contains("Missing"), "{err}");
    }

    const STREAMS: &str = r#"
Resources:
  MessagesTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  PlainTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  FanOutFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: fanout}}
    Properties:
      Events:
        MessageStream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt MessagesTable.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 100
            MaximumBatchingWindowInSeconds: 0
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
  Other:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: other}}
  OtherMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt MessagesTable.StreamArn
      FunctionName: !GetAtt Other.Arn
      StartingPosition: LATEST
      Enabled: false
"#;

    #[test]
    fn stream_mappings_sam_and_resource_forms() {
        let mut t = parse(STREAMS);
        let app = t.application().unwrap();
        assert_eq!(app.stream_mappings.len(), 2);
        let fan = &app.stream_mappings[0];
        assert_eq!(fan.id, "FanOutFunction.MessageStream");
        assert_eq!(fan.function, "FanOutFunction");
        assert_eq!(fan.table_name.as_deref(), Some("courier-MessagesTable"));
        assert_eq!(fan.starting_position, StartingPosition::TrimHorizon);
        assert_eq!(fan.batch_size, 100);
        assert_eq!(fan.batching_window, Duration::ZERO);
        assert!(fan.bisect_on_error && fan.report_batch_item_failures && fan.enabled);
        assert_eq!(fan.max_retry_attempts, Some(10));
        let other = &app.stream_mappings[1];
        assert_eq!(other.id, "OtherMapping");
        assert_eq!(other.function, "Other");
        assert_eq!(other.starting_position, StartingPosition::Latest);
        assert_eq!(other.max_retry_attempts, None);
        assert!(!other.enabled && !other.bisect_on_error);

        // Provisioning records the real stream ARN; the mapping then uses it.
        let real = "arn:aws:dynamodb:ddblocal:000000000000:table/courier-MessagesTable/stream/2026";
        let mut p = Physical::default();
        p.attrs.insert("StreamArn".into(), real.into());
        t.set_physical("MessagesTable", p);
        assert_eq!(t.application().unwrap().stream_mappings[0].stream_arn, real);

        let bad = STREAMS.replace(
            "!GetAtt MessagesTable.StreamArn\n            Start",
            "!GetAtt PlainTable.StreamArn\n            Start",
        );
        let err = parse(&bad).application().unwrap_err().to_string();
        assert!(
            err.contains("PlainTable has no StreamSpecification"),
            "{err}"
        );
        let bad = STREAMS.replace("TRIM_HORIZON", "AT_TIMESTAMP");
        let err = parse(&bad).application().unwrap_err().to_string();
        assert!(err.contains("StartingPosition"), "{err}");
    }

    #[test]
    fn only_tables_whose_stream_is_read_keep_their_stream_locally() {
        let text = r#"
Resources:
  MessagesTable:
    Type: AWS::DynamoDB::GlobalTable
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  UsersTable:
    Type: AWS::DynamoDB::GlobalTable
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  AuditTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  StandbyTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: f
      EventSourceArn: !If
        - Never
        - !GetAtt [MessagesTable, StreamArn]
        - !Sub "arn:aws:dynamodb:x:y:table/${AWS::StackName}-StandbyTable/stream/label"
  Policy:
    Type: AWS::IAM::Policy
    Properties:
      Resource: !Sub "${AuditTable.StreamArn}"
      Other: !GetAtt UsersTable.Arn
"#;
        let t = parse(text);
        let read: Vec<String> = t.read_streams().into_iter().collect();
        assert_eq!(read, ["AuditTable", "MessagesTable", "StandbyTable"]);
        let infra = t.infrastructure().unwrap();
        let streamed: Vec<&str> = infra
            .tables
            .iter()
            .filter(|t| t.has_stream())
            .map(|t| t.logical_id.as_str())
            .collect();
        assert_eq!(streamed, ["AuditTable", "MessagesTable", "StandbyTable"]);
        let users = infra
            .tables
            .iter()
            .find(|t| t.logical_id == "UsersTable")
            .unwrap();
        assert!(users.properties.get("KeySchema").is_some());
    }

    #[test]
    fn unknown_parameter_override_is_an_error() {
        let mut params = BTreeMap::new();
        params.insert("Nope".to_string(), "1".to_string());
        let err = Template::parse(
            BASE,
            TemplateOptions {
                parameters: params,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("Nope"));
    }
}
