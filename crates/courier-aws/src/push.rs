//! Push through SNS mobile push: one platform endpoint per device, created or refreshed from the
//! device's APNs/FCM token; publishes carry no message content.

use async_trait::async_trait;
use courier_core::error::PortError;
use courier_core::ports::{PushNote, PushPlatform, PushService};
use courier_core::{DeviceId, UserId};
use serde_json::json;

/// SNS platform applications for APNs and FCM (either may be absent in a deployment).
#[derive(Clone)]
pub struct SnsPush {
    client: aws_sdk_sns::Client,
    apns_app: Option<String>,
    fcm_app: Option<String>,
}

impl SnsPush {
    /// Empty application ARNs mean the platform is not configured.
    pub fn new(
        client: aws_sdk_sns::Client,
        apns_app: Option<String>,
        fcm_app: Option<String>,
    ) -> Self {
        let set = |s: Option<String>| s.filter(|v| !v.is_empty());
        Self {
            client,
            apns_app: set(apns_app),
            fcm_app: set(fcm_app),
        }
    }

    async fn refresh(&self, endpoint: &str, token: &str) -> Result<(), PortError> {
        let attrs = self
            .client
            .get_endpoint_attributes()
            .endpoint_arn(endpoint)
            .send()
            .await
            .map_err(|e| PortError::backend(aws_sdk_sns::Error::from(e)))?;
        let attrs = attrs.attributes.unwrap_or_default();
        let enabled = attrs.get("Enabled").is_some_and(|v| v == "true");
        let same_token = attrs.get("Token").is_some_and(|v| v == token);
        if !enabled || !same_token {
            self.client
                .set_endpoint_attributes()
                .endpoint_arn(endpoint)
                .attributes("Token", token)
                .attributes("Enabled", "true")
                .send()
                .await
                .map_err(|e| PortError::backend(aws_sdk_sns::Error::from(e)))?;
        }
        Ok(())
    }
}

/// SNS answers a create for a token it already has, with other attributes, with an error that
/// names the existing endpoint: "... Endpoint <arn> already exists with the same Token ...".
fn existing_endpoint(message: &str) -> Option<String> {
    message
        .split_whitespace()
        .find(|w| w.starts_with("arn:"))
        .map(|w| w.trim_matches(|c| c == '(' || c == ')').to_owned())
}

/// Whether `endpoint` is an endpoint of the platform application `app`: the application
/// `arn:<p>:sns:<region>:<account>:app/<platform>/<name>` has endpoints
/// `arn:<p>:sns:<region>:<account>:endpoint/<platform>/<name>/<id>`. An ARN read from error text
/// is adopted (and its attributes set) only if it is one of ours: never another application's
/// endpoint, nor anything else an error might name.
fn belongs_to(endpoint: &str, app: &str) -> bool {
    let Some((prefix, rest)) = app.split_once(":app/") else {
        return false;
    };
    endpoint
        .strip_prefix(&format!("{prefix}:endpoint/{rest}/"))
        .is_some_and(|id| !id.is_empty() && !id.contains(['/', ' ', ':']))
}

#[async_trait]
impl PushService for SnsPush {
    async fn register(
        &self,
        platform: PushPlatform,
        token: &str,
        device: &DeviceId,
    ) -> Result<Option<String>, PortError> {
        let app = match platform {
            PushPlatform::Apns => &self.apns_app,
            PushPlatform::Fcm => &self.fcm_app,
        };
        let Some(app) = app else { return Ok(None) };
        let created = self
            .client
            .create_platform_endpoint()
            .platform_application_arn(app)
            .token(token)
            .custom_user_data(device.as_str())
            .send()
            .await;
        let endpoint = match created {
            Ok(out) => out
                .endpoint_arn
                .ok_or_else(|| PortError::backend("SNS returned no endpoint ARN"))?,
            Err(e) => {
                let e = aws_sdk_sns::Error::from(e);
                match existing_endpoint(&e.to_string()) {
                    Some(arn)
                        if e.to_string().contains("already exists") && belongs_to(&arn, app) =>
                    {
                        arn
                    }
                    Some(arn) if e.to_string().contains("already exists") => {
                        tracing::warn!(endpoint = %arn, "an SNS error named an endpoint of another application; not adopted");
                        return Err(PortError::backend(e));
                    }
                    _ => return Err(PortError::backend(e)),
                }
            }
        };
        self.refresh(&endpoint, token).await?;
        Ok(Some(endpoint))
    }

    async fn notify(&self, endpoint: &str, note: &PushNote) -> Result<(), PortError> {
        self.publish(endpoint, serde_json::to_value(note).expect("serialisable"))
            .await
    }

    async fn notify_device_message(
        &self,
        endpoint: &str,
        sender: &UserId,
    ) -> Result<(), PortError> {
        self.publish(endpoint, json!({ "deviceMessage": true, "sender": sender }))
            .await
    }
}

impl SnsPush {
    /// One content-free publish: `data` says what is waiting, never what it says.
    async fn publish(&self, endpoint: &str, data: serde_json::Value) -> Result<(), PortError> {
        let apns = json!({ "aps": { "content-available": 1 }, "courier": data }).to_string();
        let fcm = json!({ "fcmV1Message": { "message": { "data": data, "android": { "priority": "high" } } } }).to_string();
        let message =
            json!({ "default": data.to_string(), "APNS": apns, "APNS_SANDBOX": apns, "GCM": fcm })
                .to_string();
        let res = self
            .client
            .publish()
            .target_arn(endpoint)
            .message_structure("json")
            .message(message)
            .send()
            .await;
        crate::capacity::record_sns_publish();
        match res {
            Ok(_) => Ok(()),
            // A token the platform has retired: nothing to deliver to; the device syncs when it
            // next connects and registers a fresh token.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_endpoint_disabled_exception()) =>
            {
                tracing::info!("push endpoint disabled; skipped");
                Ok(())
            }
            Err(e) => Err(PortError::backend(aws_sdk_sns::Error::from(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_endpoints_of_the_configured_application_are_adopted() {
        let app = "arn:aws:sns:us-east-1:1:app/APNS/courier-apns";
        let ours = "arn:aws:sns:us-east-1:1:endpoint/APNS/courier-apns/0f1e2d";
        assert!(super::belongs_to(ours, app));
        for other in [
            "arn:aws:sns:us-east-1:1:endpoint/APNS/other-app/0f1e2d",
            "arn:aws:sns:us-east-1:1:endpoint/APNS/courier-apns-2/0f1e2d",
            "arn:aws:sns:us-east-1:1:endpoint/GCM/courier-apns/0f1e2d",
            "arn:aws:sns:us-east-1:2:endpoint/APNS/courier-apns/0f1e2d",
            "arn:aws:sns:eu-west-1:1:endpoint/APNS/courier-apns/0f1e2d",
            "arn:aws:sns:us-east-1:1:endpoint/APNS/courier-apns/",
            "arn:aws:sns:us-east-1:1:endpoint/APNS/courier-apns/a/b",
            "arn:aws:sns:us-east-1:1:app/APNS/courier-apns",
            "arn:aws:sns:us-east-1:1:mytopic",
        ] {
            assert!(!super::belongs_to(other, app), "{other}");
        }
    }

    #[test]
    fn finds_the_existing_endpoint_in_the_sns_error() {
        let m = "Invalid parameter: Token Reason: Endpoint arn:aws:sns:us-east-1:1:endpoint/APNS/app/abc already exists with the same Token, but different attributes.";
        assert_eq!(
            super::existing_endpoint(m).unwrap(),
            "arn:aws:sns:us-east-1:1:endpoint/APNS/app/abc"
        );
    }
}
