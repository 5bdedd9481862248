//! The `$connect` authorizer: an API key (from `Authorization: Bearer`) or a one-time connect
//! ticket (the `ticket` query parameter, for browsers, which cannot set headers on a WebSocket
//! handshake) names a live device, or the connection is refused. A key in the URL (the old
//! `token` parameter) is not accepted: URLs end up in access logs.

use crate::error::{ApiError, ErrorCode};
use crate::ports::{ConnectTicketStore, CredentialStore, DeviceCredential};
use crate::secrets::ApiKey;

/// Longest key or ticket accepted before hashing (real ones are 46 characters).
const MAX_KEY_LEN: usize = 256;

fn acceptable(k: &str) -> bool {
    !k.is_empty() && k.len() <= MAX_KEY_LEN
}

/// Reads the key from an `Authorization` header value (`Bearer <key>`).
pub fn presented_key(authorization: Option<&str>) -> Option<ApiKey> {
    authorization
        .and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| acceptable(k))
        .map(ApiKey::presented)
}

/// Reads a connect ticket from the `ticket` query value.
pub fn presented_ticket(ticket: Option<&str>) -> Option<ApiKey> {
    ticket.filter(|t| acceptable(t)).map(ApiKey::presented)
}

/// What a `$connect` presents.
#[derive(Debug)]
pub enum Presented {
    /// An API key, from the `Authorization` header.
    Key(ApiKey),
    /// A one-time connect ticket, from the URL.
    Ticket(ApiKey),
}

impl Presented {
    /// The header's key, else the URL's ticket.
    pub fn from_request(authorization: Option<&str>, ticket: Option<&str>) -> Option<Self> {
        presented_key(authorization)
            .map(Presented::Key)
            .or_else(|| presented_ticket(ticket).map(Presented::Ticket))
    }

    fn secret(&self) -> &ApiKey {
        match self {
            Presented::Key(k) | Presented::Ticket(k) => k,
        }
    }
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

/// The device a connect ticket stands for. The ticket is taken first, so it never opens a
/// second connection whatever happens next; then it must not have expired and its key must
/// still be live (a device removed since the ticket was made does not connect).
#[tracing::instrument(skip_all)]
pub async fn redeem_ticket(
    credentials: &dyn CredentialStore,
    tickets: &dyn ConnectTicketStore,
    ticket: &ApiKey,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DeviceCredential, ApiError> {
    let refused = |why: &str| ApiError::new(ErrorCode::Unauthorized, why);
    match tickets.take_ticket(&ticket.hash()).await? {
        None => Err(refused("unknown or already used connect ticket")),
        Some((_, expires_at)) if expires_at <= now => Err(refused("expired connect ticket")),
        Some((key, _)) => credentials
            .device_for_key(&key)
            .await?
            .ok_or_else(|| refused("the ticket's API key was revoked")),
    }
}

/// Characters of a presented key or ticket that, with the source address, name its
/// failed-connection bucket: `ck_` (or `ct_`) and 8 characters (48 of its 256 random bits).
pub const FAILURE_KEY_PREFIX_LEN: usize = 11;

/// The failed-connection bucket of a key presented from `ip`: the address *and* the key's
/// prefix. Keyed on the address alone, one attacker behind a shared NAT (a carrier's, an
/// office's) would lock every neighbour behind it out; with the prefix, the attacker's guesses
/// lock out the prefixes it guesses with, while a neighbour's own key (another prefix) still
/// connects. The prefix of a failed key is stored in the bucket's name; of a valid key never
/// (only failures are counted).
pub fn failure_bucket(ip: &str, key: Option<&ApiKey>) -> String {
    let prefix: String = key
        .map(|k| k.expose().chars().take(FAILURE_KEY_PREFIX_LEN).collect())
        .unwrap_or_default();
    format!("connect-failures#{ip}#{prefix}")
}

/// [`authorize`] (or, for a ticket, [`redeem_ticket`]; `tickets` `None` refuses tickets) behind
/// the failed-connection limit of `source_ip` and the key's prefix ([`failure_bucket`]): while
/// that bucket is over its limit every attempt with a key of that prefix from that address is
/// refused with `LIMIT_EXCEEDED` before the key is looked at (so the answer says nothing about
/// the key), and each refused key counts as one failure. A right key from a bucket under the
/// limit connects as usual and counts nothing.
#[tracing::instrument(skip_all)]
pub async fn authorize_connection(
    credentials: &dyn CredentialStore,
    tickets: Option<&dyn ConnectTicketStore>,
    presented: Option<Presented>,
    source_ip: Option<&str>,
    failures: Option<&crate::rate_limit::Throttle<'_>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DeviceCredential, ApiError> {
    use crate::rate_limit::Decision;
    let limit = failures.zip(source_ip.filter(|ip| !ip.is_empty()));
    let bucket = limit.map(|(_, ip)| failure_bucket(ip, presented.as_ref().map(Presented::secret)));
    if let (Some((throttle, _)), Some(bucket)) = (limit, &bucket)
        && let Decision::Limited { retry_after_secs } = throttle.check(bucket, now).await?
    {
        return Err(ApiError::limit_exceeded(
            format!(
                "too many failed connection attempts from this address with this key; retry in {retry_after_secs} s"
            ),
            retry_after_secs,
        ));
    }
    let result = match (presented, tickets) {
        (Some(Presented::Ticket(t)), Some(tickets)) => {
            redeem_ticket(credentials, tickets, &t, now).await
        }
        (Some(Presented::Ticket(_)), None) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a connect ticket is not accepted here",
        )),
        (Some(Presented::Key(k)), _) => authorize(credentials, Some(k)).await,
        (None, _) => authorize(credentials, None).await,
    };
    if let (Err(e), Some((throttle, _)), Some(bucket)) = (&result, limit, &bucket)
        && e.code == ErrorCode::Unauthorized
    {
        // Counted, not checked: the refusal is UNAUTHORIZED either way.
        throttle.limiter.take(bucket, throttle.rule, now).await?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bearer_header_or_else_a_ticket_never_a_key_in_the_url() {
        assert_eq!(presented_key(Some("Bearer abc")).unwrap().expose(), "abc");
        assert_eq!(presented_key(Some("bearer  abc ")).unwrap().expose(), "abc");
        assert!(presented_key(Some("Basic abc")).is_none());
        assert!(presented_key(None).is_none());
        assert!(presented_key(Some(&format!("Bearer {}", "k".repeat(300)))).is_none());
        assert!(matches!(
            Presented::from_request(Some("Bearer abc"), Some("ct_x")),
            Some(Presented::Key(k)) if k.expose() == "abc"
        ));
        assert!(matches!(
            Presented::from_request(Some("Basic abc"), Some("ct_x")),
            Some(Presented::Ticket(t)) if t.expose() == "ct_x"
        ));
        assert!(Presented::from_request(None, Some("")).is_none());
        assert!(Presented::from_request(None, None).is_none());
    }

    #[test]
    fn failure_buckets_are_per_address_and_key_prefix() {
        let key = |k: &str| ApiKey::presented(k);
        assert_eq!(
            failure_bucket("10.0.0.1", Some(&key("ck_abcdefghXYZ"))),
            "connect-failures#10.0.0.1#ck_abcdefgh"
        );
        // Same prefix, same bucket; another prefix or address, another bucket.
        assert_eq!(
            failure_bucket("10.0.0.1", Some(&key("ck_abcdefgh123"))),
            failure_bucket("10.0.0.1", Some(&key("ck_abcdefghXYZ")))
        );
        assert_ne!(
            failure_bucket("10.0.0.1", Some(&key("ck_zbcdefghXYZ"))),
            failure_bucket("10.0.0.1", Some(&key("ck_abcdefghXYZ")))
        );
        assert_ne!(
            failure_bucket("10.0.0.2", Some(&key("ck_abcdefghXYZ"))),
            failure_bucket("10.0.0.1", Some(&key("ck_abcdefghXYZ")))
        );
        assert_eq!(
            failure_bucket("10.0.0.1", None),
            "connect-failures#10.0.0.1#"
        );
    }
}
