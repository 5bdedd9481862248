//! `$connect`: the REQUEST authorizer's context and call, and reading the policy it returns as
//! API Gateway does.

use super::*;

pub(super) struct ConnectContext {
    pub(super) connection_id: String,
    pub(super) request_id: String,
    pub(super) connected_at: DateTime<Utc>,
    pub(super) source_ip: String,
    pub(super) user_agent: String,
    pub(super) domain: String,
}

impl WsGateway {
    pub(super) fn request_context(
        &self,
        c: &ConnectContext,
        route_key: &str,
        event_type: &str,
    ) -> J {
        let now = Utc::now();
        json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": c.request_id,
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "messageDirection": "IN",
            "stage": self.api.stage,
            "connectedAt": c.connected_at.timestamp_millis(),
            "requestTimeEpoch": now.timestamp_millis(),
            "identity": {"sourceIp": c.source_ip, "userAgent": c.user_agent},
            "requestId": c.request_id,
            "domainName": c.domain,
            "connectionId": c.connection_id,
            "apiId": self.api.api_id,
        })
    }

    pub(super) fn route(&self, key: &str) -> Option<&WsRoute> {
        self.api.routes.get(key)
    }

    /// Runs the authorizer; `Err` is the refusal to send instead of the handshake.
    pub(super) async fn authorize(
        &self,
        route: &WsRoute,
        function: &str,
        c: &ConnectContext,
        headers: &HeaderMap,
        query: &str,
    ) -> Result<Map<String, J>, Response> {
        let (q, mq) = query_maps(query);
        let mut event = json!({
            "type": "REQUEST",
            "methodArn": format!(
                "arn:aws:execute-api:{}:{}:{}/{}/{}",
                self.region, LOCAL_ACCOUNT_ID, self.api.api_id, self.api.stage, route.route_key
            ),
            "headers": joined_headers(headers),
            "multiValueHeaders": multi_value_headers(headers),
            "stageVariables": {},
            "requestContext": self.request_context(c, &route.route_key, "CONNECT"),
        });
        if !q.is_empty() {
            event["queryStringParameters"] = J::Object(q);
            event["multiValueQueryStringParameters"] = J::Object(mq);
        }
        let started = std::time::Instant::now();
        let payload = match self.functions.invoke(function, &event).await {
            Ok(p) => p,
            Err(InvokeError::Function { error_message, .. }) if error_message == "Unauthorized" => {
                return Err(message_body(StatusCode::UNAUTHORIZED, "Unauthorized"));
            }
            Err(_) => {
                return Err(message_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
        };
        let v: J = serde_json::from_slice(&payload).unwrap_or(J::Null);
        let method_arn = event["methodArn"].as_str().unwrap_or_default();
        match policy_decision(&v, method_arn) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("the authorizer's policy does not allow {method_arn}: 403");
                return Err(message_body(StatusCode::FORBIDDEN, "Forbidden"));
            }
            Err(why) => {
                tracing::warn!("the authorizer's answer is not a valid policy: {why}");
                return Err(message_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
        }
        let mut ctx = Map::new();
        if let Some(J::Object(m)) = v.get("context") {
            ctx.extend(m.clone());
        }
        ctx.insert(
            "principalId".into(),
            v.get("principalId").cloned().unwrap_or(J::Null),
        );
        ctx.insert(
            "integrationLatency".into(),
            J::from(started.elapsed().as_millis() as u64),
        );
        Ok(ctx)
    }
}

/// Whether an authorizer's answer allows invoking `method_arn`, as API Gateway evaluates it: a
/// statement applies when one of its `Action`s matches `execute-api:Invoke` and one of its
/// `Resource`s matches the method ARN (IAM wildcards: `*` any run of characters, `?` one; actions
/// ignore case, resources do not). An applicable `Deny` wins; otherwise an applicable `Allow` is
/// needed. `Err` for an answer that is no policy at all (API Gateway answers 500 then).
pub fn policy_decision(answer: &J, method_arn: &str) -> Result<bool, String> {
    if answer.get("principalId").is_none() {
        return Err("no principalId".into());
    }
    let statements: Vec<&J> = match answer.pointer("/policyDocument/Statement") {
        Some(J::Array(a)) => a.iter().collect(),
        Some(s @ J::Object(_)) => vec![s],
        _ => return Err("no policyDocument.Statement".into()),
    };
    let strings = |v: Option<&J>| -> Vec<String> {
        match v {
            Some(J::String(s)) => vec![s.clone()],
            Some(J::Array(a)) => a.iter().filter_map(J::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let mut allowed = false;
    for st in statements {
        let applies = strings(st.get("Action")).iter().any(|a| {
            wildcard_match(
                &a.to_ascii_lowercase(),
                &"execute-api:Invoke".to_ascii_lowercase(),
            )
        }) && strings(st.get("Resource"))
            .iter()
            .any(|r| wildcard_match(r, method_arn));
        if !applies {
            continue;
        }
        match st.get("Effect").and_then(J::as_str) {
            Some(e) if e.eq_ignore_ascii_case("Deny") => return Ok(false),
            Some(e) if e.eq_ignore_ascii_case("Allow") => allowed = true,
            other => return Err(format!("Effect {other:?}")),
        }
    }
    Ok(allowed)
}

/// IAM's wildcard match: `*` matches any run of characters (`/` and `:` included), `?` one.
pub(super) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Greedy with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}
