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
