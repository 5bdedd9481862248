//! The `$connect` authorizer: an API key (from `Authorization: Bearer` or the `token` query
//! parameter, for browsers) names a live device, or the connection is refused.

use crate::error::{ApiError, ErrorCode};
use crate::ports::{CredentialStore, DeviceCredential};
use crate::secrets::ApiKey;

/// Longest key accepted before hashing (real keys are 46 characters).
const MAX_KEY_LEN: usize = 256;

/// Reads the key from an `Authorization` header value (`Bearer <key>`) or a `token` query value.
pub fn presented_key(authorization: Option<&str>, token: Option<&str>) -> Option<ApiKey> {
    let from_header = authorization.and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    from_header
        .or(token)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .map(ApiKey::presented)
}

/// The device the key belongs to; `UNAUTHORIZED` for a missing, unknown or revoked key.
#[tracing::instrument(skip_all)]
pub async fn authorize(
    credentials: &dyn CredentialStore,
    key: Option<ApiKey>,
) -> Result<DeviceCredential, ApiError> {
    let key = key.ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing API key"))?;
    credentials
        .device_for_key(&key.hash())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown or revoked API key"))
}

/// [`authorize`] behind the failed-connection limit of `source_ip`: while the address is over
/// its limit every attempt is refused with `LIMIT_EXCEEDED` before the key is looked at (so the
/// answer says nothing about the key), and each refused key counts as one failure. A right key
/// from an address under the limit connects as usual and counts nothing.
#[tracing::instrument(skip_all)]
pub async fn authorize_connection(
    credentials: &dyn CredentialStore,
    key: Option<ApiKey>,
    source_ip: Option<&str>,
    failures: Option<&crate::rate_limit::Throttle<'_>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DeviceCredential, ApiError> {
    use crate::rate_limit::Decision;
    let limit = failures.zip(source_ip.filter(|ip| !ip.is_empty()));
    let bucket = |ip: &str| format!("connect-failures#{ip}");
    if let Some((throttle, ip)) = limit
        && let Decision::Limited { retry_after_secs } = throttle.check(&bucket(ip), now).await?
    {
        return Err(ApiError::limit_exceeded(
            format!(
                "too many failed connection attempts from this address; retry in {retry_after_secs} s"
            ),
            retry_after_secs,
        ));
    }
    let result = authorize(credentials, key).await;
    if let (Err(e), Some((throttle, ip))) = (&result, limit)
        && e.code == ErrorCode::Unauthorized
    {
        // Counted, not checked: the refusal is UNAUTHORIZED either way.
        throttle
            .limiter
            .take(&bucket(ip), throttle.rule, now)
            .await?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_header_then_token() {
        assert_eq!(
            presented_key(Some("Bearer abc"), None).unwrap().expose(),
            "abc"
        );
        assert_eq!(
            presented_key(Some("bearer  abc "), None).unwrap().expose(),
            "abc"
        );
        assert_eq!(presented_key(None, Some("xyz")).unwrap().expose(), "xyz");
        assert_eq!(
            presented_key(Some("Basic abc"), Some("xyz"))
                .unwrap()
                .expose(),
            "xyz"
        );
        assert!(presented_key(Some("Basic abc"), None).is_none());
        assert!(presented_key(None, Some("")).is_none());
        assert!(presented_key(None, Some(&"k".repeat(300))).is_none());
    }
}
