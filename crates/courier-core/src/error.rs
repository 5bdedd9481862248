//! The protocol's error codes, and the error every use case returns.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Error codes of the client protocol (`docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request is malformed or a field has the wrong type or value.
    BadRequest,
    /// Missing or wrong credentials, or a wrong verification code.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// The thing named does not exist (or no longer does).
    NotFound,
    /// The request conflicts with the current state; retrying may succeed.
    Conflict,
    /// A one-time code or link has expired; start again.
    Expired,
    /// A rate limit or size limit was reached; `retryAfter` says when to try again.
    LimitExceeded,
    /// The body or payload is larger than allowed.
    PayloadTooLarge,
    /// The WebSocket `action` names no operation.
    UnknownAction,
    /// Something failed on the server; the request may be retried.
    Internal,
    /// `registerAccount`: the deployment sends no verification codes to this country calling
    /// code (its allow-list); retrying will not help.
    CountryNotSupported,
    /// `registerAccount`: the hourly SMS budget (the whole service's, or this country calling
    /// code's) is spent, so no code is sent until `retryAfter` (the next hour).
    SmsBudgetExhausted,
    /// `POST /v1/accounts/verify`: the account has two-step verification; send its registration
    /// PIN (`pin`) with the code. Also a companion's `setRegistrationPin` or
    /// `removeRegistrationPin` without `currentPin` on an account that has a PIN.
    PinRequired,
    /// A companion's `currentPin` (`setRegistrationPin`, `removeRegistrationPin`) is not the
    /// account's registration PIN; it counts against the account's daily budget of wrong PINs.
    WrongPin,
}

impl ErrorCode {
    /// The HTTP status the HTTP API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownAction => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Expired => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::LimitExceeded => 429,
            ErrorCode::Internal => 500,
            ErrorCode::CountryNotSupported => 403,
            ErrorCode::SmsBudgetExhausted => 503,
            ErrorCode::PinRequired => 401,
            ErrorCode::WrongPin => 401,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Expired => "EXPIRED",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnknownAction => "UNKNOWN_ACTION",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::CountryNotSupported => "COUNTRY_NOT_SUPPORTED",
            ErrorCode::SmsBudgetExhausted => "SMS_BUDGET_EXHAUSTED",
            ErrorCode::PinRequired => "PIN_REQUIRED",
            ErrorCode::WrongPin => "WRONG_PIN",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client is told when a request fails. Internal failures keep their cause for the logs;
/// the client sees only the code and a generic message.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// A message that says what to fix.
    pub message: String,
    /// Seconds after which a rate-limited request may succeed.
    pub retry_after_secs: Option<u64>,
    /// The underlying failure, logged but never sent.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
            source: None,
        }
    }

    /// `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `LIMIT_EXCEEDED` with a retry-after hint.
    pub fn limit_exceeded(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(ErrorCode::LimitExceeded, message)
        }
    }

    /// `INTERNAL`, keeping the cause for the logs.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(ErrorCode::Internal, "internal error; please retry")
        }
    }
}

/// Failures of a storage or messaging port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A conditional write lost a race: the state changed since it was read.
    #[error("conditional write failed: the item changed concurrently")]
    Conflict,
    /// The backing service failed.
    #[error("backend failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PortError {
    /// Wraps a backend failure.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        PortError::Backend(e.into())
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Conflict => ApiError::new(
                ErrorCode::Conflict,
                "the request raced with another; retry it",
            ),
            other => ApiError::internal(other),
        }
    }
}
