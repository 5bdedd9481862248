//! Checks every chat use case makes of a request before it touches anything: the caller's
//! rate-limit bucket, the payload's size, the session id, and membership (which answers a
//! non-member the same whether the session exists or not).

use crate::chat::{MAX_PAYLOAD_CHARS, Membership};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{SessionId, UserId};
use crate::ports::{DeviceCredential, SessionStore};

/// The bucket of one device for one send operation: each device has its own, so one device over
/// its limit slows no one else (not even the same user's other devices).
pub fn send_key(operation: &str, who: &DeviceCredential) -> String {
    crate::rate_limit::device_key(operation, who)
}

/// `PAYLOAD_TOO_LARGE` above [`MAX_PAYLOAD_CHARS`].
pub fn check_payload(payload: &str) -> Result<(), ApiError> {
    // Bytes bound characters from above: count only when the byte length is over the limit.
    if payload.len() > MAX_PAYLOAD_CHARS && payload.chars().count() > MAX_PAYLOAD_CHARS {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("payload is longer than {MAX_PAYLOAD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Parses a session id from a request.
pub fn parse_session(s: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(s).ok_or_else(|| ApiError::bad_request("sessionId is not a session id"))
}

/// The caller's membership; `NOT_FOUND` for a session the caller is not in, whether or not it
/// exists. Direct session ids are computed from two user ids, so telling "exists" from "does
/// not" would let anyone learn who talks to whom (docs/security.md, item 6).
pub async fn require_member(
    sessions: &dyn SessionStore,
    session: &SessionId,
    user: &UserId,
) -> Result<Membership, ApiError> {
    sessions
        .membership(session, user)
        .await?
        .ok_or_else(not_a_member)
}

/// What a non-member is told about a session, existing or not.
pub fn not_a_member() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such session")
}
