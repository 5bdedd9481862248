//! Intrinsic functions and conditions: `!Ref`, `!Sub`, `!GetAtt` and the rest, resolved against
//! local names (see the module above).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value as J};
use serde_yaml_ng::Value as Y;

use super::*;

impl Template {
    /// Resolves a template value to plain JSON; `AWS::NoValue` at the top becomes `null`.
    pub fn resolve(&self, v: &Y, path: &str) -> Result<Option<J>> {
        self.resolve_depth(v, path, 0)
    }

    pub(super) fn resolve_depth(&self, v: &Y, path: &str, depth: usize) -> Result<Option<J>> {
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

    pub(super) fn resolve_string(&self, v: &Y, path: &str, depth: usize) -> Result<String> {
        let r = self
            .resolve_depth(v, path, depth)?
            .with_context(|| format!("{path}: AWS::NoValue where a string is needed"))?;
        scalar_string(&r).with_context(|| format!("{path}: expected a string, got {r}"))
    }

    pub(super) fn intrinsic(
        &self,
        name: &str,
        arg: &Y,
        path: &str,
        depth: usize,
    ) -> Result<Option<J>> {
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

    pub(super) fn sub(
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

    pub(super) fn resource(&self, id: &str, p: &str) -> Result<&Resource> {
        if self.excluded.contains(id) {
            bail!("{p}: resource {id} is excluded by its condition");
        }
        self.resources
            .get(id)
            .with_context(|| format!("{p}: cannot resolve {id}: no such parameter or resource"))
    }

    pub(super) fn reference(&self, name: &str, p: &str) -> Result<Option<J>> {
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

    pub(super) fn get_att(&self, id: &str, attr: &str, p: &str) -> Result<String> {
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

    pub(super) fn prop_string(&self, id: &str, prop: &str, p: &str) -> Result<String> {
        let r = self.resource(id, p)?;
        let v = yget(&r.properties, prop)
            .with_context(|| format!("Resources.{id}.Properties.{prop} is missing"))?;
        self.resolve_string(v, &format!("Resources.{id}.Properties.{prop}"), 1)
    }

    pub(super) fn table_name(&self, id: &str) -> String {
        format!("{}-{id}", self.opts.prefix)
    }

    pub(super) fn bucket_name(&self, id: &str) -> String {
        format!("{}-{id}", self.opts.prefix).to_ascii_lowercase()
    }

    pub(super) fn topic_name(&self, id: &str, p: &str) -> Result<String> {
        let r = self.resource(id, p)?;
        match yget(&r.properties, "TopicName") {
            Some(v) => self.resolve_string(v, &format!("Resources.{id}.Properties.TopicName"), 1),
            None => Ok(format!("{}-{id}", self.opts.prefix)),
        }
    }

    pub(super) fn queue_name(&self, id: &str, p: &str) -> Result<String> {
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

    pub(super) fn function_name(&self, id: &str, p: &str) -> Result<String> {
        let r = self.resource(id, p)?;
        match yget(&r.properties, "FunctionName") {
            Some(v) => {
                self.resolve_string(v, &format!("Resources.{id}.Properties.FunctionName"), 1)
            }
            None => Ok(format!("{}-{id}", self.opts.prefix)),
        }
    }

    pub(super) fn resolved_properties(&self, id: &str) -> Result<J> {
        let r = &self.resources[id];
        Ok(self
            .resolve(&r.properties, &format!("Resources.{id}.Properties"))?
            .unwrap_or(J::Null))
    }
}
