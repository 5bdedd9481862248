//! `registerPushToken`: create or refresh the device's SNS platform endpoint and record it where
//! the fan-out looks.

use crate::error::ApiError;
use crate::ports::{DeviceCredential, PresenceStore, PushService};
use crate::protocol::{PushTokenReply, RegisterPushTokenParams};

/// Registers the calling device's push token.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn register_push_token(
    push: &dyn PushService,
    presence: &dyn PresenceStore,
    who: &DeviceCredential,
    p: RegisterPushTokenParams,
) -> Result<PushTokenReply, ApiError> {
    let token = p.token.trim();
    if token.is_empty() || token.len() > 4096 || token.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "token must be 1 to 4096 printable characters",
        ));
    }
    let endpoint = push
        .register(p.platform, token, &who.device_id)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request("push for this platform is not configured on this deployment")
        })?;
    presence
        .set_push_endpoint(&who.user_id, &who.device_id, &endpoint)
        .await?;
    Ok(PushTokenReply { registered: true })
}
