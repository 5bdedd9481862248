//! CloudFormation custom resource provider for `Custom::SnsPlatformApplication`.
//!
//! CloudFormation has no native resource for SNS platform applications (APNs / FCM), so
//! template.yaml declares them as custom resources served by this function:
//!
//! ```yaml
//! ApnsPlatformApplication:
//!   Type: Custom::SnsPlatformApplication
//!   Properties:
//!     ServiceToken: !GetAtt PlatformApplicationProviderFunction.Arn
//!     Name: courier-apns
//!     Platform: APNS            # APNS | APNS_SANDBOX | GCM (and the other SNS platforms)
//!     Attributes:               # passed to SNS as is
//!       PlatformCredential: ...
//!       PlatformPrincipal: ...
//! ```
//!
//! - Create: `CreatePlatformApplication`; PhysicalResourceId = the ARN, `Data.Arn` = the ARN.
//! - Update: `SetPlatformApplicationAttributes` on the same ARN, or, when `Name` or `Platform`
//!   changed, a new application (CloudFormation then deletes the old one, by its old id).
//! - Delete: `DeletePlatformApplication`; an application that is already gone is a success.
//!
//! Whatever happens, a SUCCESS or FAILED response is PUT to the presigned `ResponseURL`, so a
//! stack never hangs waiting for this function.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus,
};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::Value;

/// The request as CloudFormation sends it; properties are parsed by the handler so that bad
/// properties become a FAILED response instead of an undeliverable invocation error.
pub type Request = CloudFormationCustomResourceRequest<Value, Value>;
pub type Response = CloudFormationCustomResourceResponse;

/// CloudFormation rejects response bodies over 4096 bytes; keep the reason well below that.
const MAX_REASON_LEN: usize = 1024;

/// SNS platforms `CreatePlatformApplication` accepts.
const PLATFORMS: &[&str] = &["APNS", "APNS_SANDBOX", "GCM", "ADM", "BAIDU", "MPNS", "WNS"];

/// `Properties` of a `Custom::SnsPlatformApplication` (besides `ServiceToken`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PlatformAppProps {
    pub name: String,
    pub platform: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl PlatformAppProps {
    fn parse(value: &Value) -> Result<Self, String> {
        let props: Self = serde_json::from_value(value.clone())
            .map_err(|e| format!("invalid resource properties: {e}"))?;
        if props.name.trim().is_empty() {
            return Err("property Name must not be empty".into());
        }
        if !PLATFORMS.contains(&props.platform.as_str()) {
            return Err(format!(
                "property Platform must be one of {}, got {:?}",
                PLATFORMS.join(", "),
                props.platform
            ));
        }
        Ok(props)
    }
}

/// An error from SNS, reduced to what the handler needs to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnsError {
    /// The platform application does not exist (any more).
    NotFound,
    Other(String),
}

impl fmt::Display for SnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnsError::NotFound => f.write_str("platform application not found"),
            SnsError::Other(msg) => f.write_str(msg),
        }
    }
}

/// The three SNS calls this provider makes (a port, so the mapping is testable without AWS).
pub trait PlatformApps {
    fn create(
        &self,
        name: &str,
        platform: &str,
        attributes: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, SnsError>> + Send;
    fn set_attributes(
        &self,
        arn: &str,
        attributes: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), SnsError>> + Send;
    fn delete(&self, arn: &str) -> impl Future<Output = Result<(), SnsError>> + Send;
}

/// Maps one CloudFormation request to the SNS calls it needs and the response to send back.
/// Never fails: every error becomes a FAILED response.
pub async fn handle<S: PlatformApps>(sns: &S, request: &Request) -> Response {
    match request {
        CloudFormationCustomResourceRequest::Create(req) => {
            let fallback_id = format!("{}-{}", req.logical_resource_id, req.request_id);
            let outcome = match PlatformAppProps::parse(&req.resource_properties) {
                Ok(props) => sns
                    .create(&props.name, &props.platform, &props.attributes)
                    .await
                    .map_err(|e| format!("CreatePlatformApplication failed: {e}")),
                Err(e) => Err(e),
            };
            let ids = Ids {
                stack_id: &req.stack_id,
                request_id: &req.request_id,
                logical_resource_id: &req.logical_resource_id,
            };
            match outcome {
                Ok(arn) => ids.success(arn),
                // A failed Create still needs an id; CloudFormation sends a Delete for it on
                // rollback, which `is_arn` then recognises as nothing to delete.
                Err(reason) => ids.failed(fallback_id, reason),
            }
        }
        CloudFormationCustomResourceRequest::Update(req) => {
            let ids = Ids {
                stack_id: &req.stack_id,
                request_id: &req.request_id,
                logical_resource_id: &req.logical_resource_id,
            };
            let old_id = req.physical_resource_id.clone();
            let new = match PlatformAppProps::parse(&req.resource_properties) {
                Ok(props) => props,
                Err(reason) => return ids.failed(old_id, reason),
            };
            let old = PlatformAppProps::parse(&req.old_resource_properties).ok();
            let replace = !is_arn(&old_id)
                || old
                    .as_ref()
                    .is_none_or(|o| o.name != new.name || o.platform != new.platform);
            if replace {
                match sns.create(&new.name, &new.platform, &new.attributes).await {
                    Ok(arn) => ids.success(arn),
                    Err(e) => ids.failed(old_id, format!("CreatePlatformApplication failed: {e}")),
                }
            } else {
                match sns.set_attributes(&old_id, &new.attributes).await {
                    Ok(()) => ids.success(old_id),
                    Err(e) => ids.failed(
                        old_id,
                        format!("SetPlatformApplicationAttributes failed: {e}"),
                    ),
                }
            }
        }
        CloudFormationCustomResourceRequest::Delete(req) => {
            let ids = Ids {
                stack_id: &req.stack_id,
                request_id: &req.request_id,
                logical_resource_id: &req.logical_resource_id,
            };
            let id = req.physical_resource_id.clone();
            if !is_arn(&id) {
                // Left by a Create that failed: nothing was created.
                return ids.success(id);
            }
            match sns.delete(&id).await {
                Ok(()) | Err(SnsError::NotFound) => ids.success(id),
                Err(e) => ids.failed(id, format!("DeletePlatformApplication failed: {e}")),
            }
        }
        // The enum is non-exhaustive: a request type CloudFormation does not send today.
        _ => {
            let mut resp = Response::default();
            resp.status = CloudFormationCustomResourceResponseStatus::Failed;
            resp.reason = Some("unsupported RequestType".into());
            resp
        }
    }
}

/// An SNS platform application ARN, as opposed to the placeholder id of a failed Create.
fn is_arn(id: &str) -> bool {
    id.starts_with("arn:") && id.contains(":app/")
}

struct Ids<'a> {
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
}

impl Ids<'_> {
    fn base(&self, physical_resource_id: String) -> Response {
        let mut resp = Response::default();
        resp.stack_id = self.stack_id.to_owned();
        resp.request_id = self.request_id.to_owned();
        resp.logical_resource_id = self.logical_resource_id.to_owned();
        resp.physical_resource_id = physical_resource_id;
        resp.no_echo = false;
        resp
    }

    fn success(&self, arn: String) -> Response {
        let mut resp = self.base(arn.clone());
        resp.status = CloudFormationCustomResourceResponseStatus::Success;
        resp.reason = Some("OK".into());
        resp.data = HashMap::from([("Arn".to_owned(), arn)]);
        resp
    }

    fn failed(&self, physical_resource_id: String, reason: String) -> Response {
        let mut resp = self.base(physical_resource_id);
        resp.status = CloudFormationCustomResourceResponseStatus::Failed;
        let mut reason = truncate(reason, MAX_REASON_LEN);
        if let Ok(stream) = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME") {
            reason.push_str(&format!(" (see CloudWatch log stream {stream})"));
        }
        resp.reason = Some(reason);
        resp
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// PUTs the response to CloudFormation's presigned S3 URL. The URL is signed without a
/// content type, so the request must carry an empty `Content-Type` header.
pub async fn send_response(
    http: &reqwest::Client,
    url: &str,
    response: &Response,
) -> Result<(), lambda_runtime::Error> {
    let body = serde_json::to_vec(response)?;
    let reply = http
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, "")
        .header(reqwest::header::CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await?;
    let status = reply.status();
    if !status.is_success() {
        let text = reply.text().await.unwrap_or_default();
        return Err(format!("ResponseURL answered {status}: {text}").into());
    }
    Ok(())
}

fn response_url(request: &Request) -> &str {
    match request {
        CloudFormationCustomResourceRequest::Create(r) => &r.response_url,
        CloudFormationCustomResourceRequest::Update(r) => &r.response_url,
        CloudFormationCustomResourceRequest::Delete(r) => &r.response_url,
        _ => "",
    }
}

/// The real SNS, through the AWS SDK.
pub struct Sns(pub aws_sdk_sns::Client);

fn sns_error<E>(
    err: aws_sdk_sns::error::SdkError<E, aws_sdk_sns::config::http::HttpResponse>,
) -> SnsError
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sns::error::ProvideErrorMetadata;
    match (err.code(), err.message()) {
        (Some("NotFound" | "NotFoundException" | "ResourceNotFound"), _) => SnsError::NotFound,
        (Some(code), Some(msg)) => SnsError::Other(format!("{code}: {msg}")),
        (Some(code), None) => SnsError::Other(code.to_owned()),
        // An answer without an error code (e.g. an HTML 500 page): its status says enough.
        _ => match err.raw_response() {
            Some(raw) => SnsError::Other(format!(
                "SNS answered HTTP {} without an error code",
                raw.status().as_u16()
            )),
            // No answer at all: timeout, connection failure, ...
            None => SnsError::Other(aws_sdk_sns::error::DisplayErrorContext(&err).to_string()),
        },
    }
}

fn to_hash_map(attributes: &BTreeMap<String, String>) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl PlatformApps for Sns {
    async fn create(
        &self,
        name: &str,
        platform: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, SnsError> {
        let out = self
            .0
            .create_platform_application()
            .name(name)
            .platform(platform)
            .set_attributes(Some(to_hash_map(attributes)))
            .send()
            .await
            .map_err(sns_error)?;
        out.platform_application_arn
            .ok_or_else(|| SnsError::Other("SNS returned no PlatformApplicationArn".into()))
    }

    async fn set_attributes(
        &self,
        arn: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), SnsError> {
        self.0
            .set_platform_application_attributes()
            .platform_application_arn(arn)
            .set_attributes(Some(to_hash_map(attributes)))
            .send()
            .await
            .map_err(sns_error)?;
        Ok(())
    }

    async fn delete(&self, arn: &str) -> Result<(), SnsError> {
        self.0
            .delete_platform_application()
            .platform_application_arn(arn)
            .send()
            .await
            .map_err(sns_error)?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .without_time()
        .init();

    // The clients are built by the first invocation, once per process, as in the other
    // functions (courier_lambda::runtime::Lazy): the SNS client's configuration and reqwest's
    // root certificates would otherwise be init time on every cold start.
    let clients = tokio::sync::OnceCell::new();
    let clients = &clients;

    // The invocation's X-Ray trace id goes to the SNS calls through the client's interceptor
    // (the runtime no longer puts it in the environment: vendor/README.md).
    lambda_runtime::run(service_fn(|event: LambdaEvent<Request>| {
        let trace_id = event.context.xray_trace_id.clone();
        courier_aws::trace::scope(trace_id, async move {
            let (sns, http) = clients
                .get_or_try_init(|| async {
                    let config = courier_aws::config::sdk_config().await;
                    let http = reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(20))
                        .build()?;
                    Ok::<_, reqwest::Error>((Sns(courier_aws::config::sns(&config)), http))
                })
                .await?;
            let request = event.payload;
            let response = handle(sns, &request).await;
            tracing::info!(
                status = ?response.status,
                physical_resource_id = %response.physical_resource_id,
                reason = response.reason.as_deref().unwrap_or_default(),
                "custom resource handled"
            );
            send_response(http, response_url(&request), &response).await
        })
    }))
    .await
}

#[cfg(test)]
mod tests;
