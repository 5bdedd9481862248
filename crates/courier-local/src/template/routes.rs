//! The APIs' routes: the HTTP API's (with its stage throttles) and the WebSocket API's (routes,
//! integrations, authorizer, stage throttles).

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value as J};
use serde_yaml_ng::Value as Y;

use super::*;

impl Template {
    pub(super) fn http_routes(&self, id: &str, r: &Resource) -> Result<Vec<HttpRoute>> {
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
    pub(super) fn route_throttle(&self, api: &str, route_key: &str) -> Result<Option<Throttle>> {
        let r = self.resource(api, &format!("ApiId {api}"))?;
        if r.kind != "AWS::Serverless::HttpApi" {
            return Ok(None);
        }
        self.settings_throttle(api, r, route_key)
    }

    /// The throttling of `route_key` that the resource `id` (an `AWS::Serverless::HttpApi` or an
    /// `AWS::ApiGatewayV2::Stage`, which spell the settings alike) sets: its
    /// `RouteSettings.<route key>`, else its `DefaultRouteSettings`.
    pub(super) fn settings_throttle(
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

    pub(super) fn function_for_uri(
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

    pub(super) fn websocket(
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

    pub(super) fn find_by_local_id(&self, local_id: &str, kind: &str) -> Option<&str> {
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

    pub(super) fn integration_function(
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

    pub(super) fn authorizer_function(
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
