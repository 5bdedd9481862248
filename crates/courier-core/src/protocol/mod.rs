//! What travels on the wire: HTTP request and reply bodies, WebSocket request frames and replies.

use crate::error::{ApiError, ErrorCode};
use crate::ids::{SessionId, UserId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// The kind of client a device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// iPhone / iPad.
    Ios,
    /// Android phone.
    Android,
    /// Courier Web in a browser.
    Web,
    /// A desktop app.
    Desktop,
    /// The `courier` command-line client.
    Cli,
}

impl Platform {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Web => "web",
            Platform::Desktop => "desktop",
            Platform::Cli => "cli",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest device name accepted, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Largest HTTP request body the account endpoints accept.
pub const MAX_HTTP_BODY_BYTES: usize = 4096;

/// Largest WebSocket request frame a handler accepts (API Gateway's own message limit).
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Bytes of items one list reply carries at most (`readNewMessages`, `readDeviceMessages`,
/// `listSessions`, `viewStatus`). A reply frame is at most [`MAX_FRAME_BYTES`]; the other
/// 32 KiB are headroom for the envelope (`type`, a `requestId` of up to 128 characters, `ok`,
/// `hasMore`: under 300 bytes) and for a gateway that counts 128 KB as 128,000 bytes.
pub const REPLY_BUDGET_BYTES: usize = 96 * 1024;

/// The longest prefix of `items` whose JSON (with the commas between them) fits in `budget`
/// bytes, and whether any item was left out. The first item is always kept, whatever its size:
/// every item kind is bounded well under a frame on its own, and a page of none would stall the
/// reader for good.
pub fn fit_budget<T: Serialize>(
    items: impl IntoIterator<Item = T>,
    budget: usize,
) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    let mut bytes = 0;
    for item in items {
        let json = serde_json::to_string(&item).expect("a reply item is JSON");
        let size = json.len() + usize::from(!out.is_empty());
        if !out.is_empty() && bytes + size > budget {
            return (out, true);
        }
        bytes += size;
        out.push(item);
    }
    (out, false)
}

/// A device as the client describes it when it registers or links.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// A name the user recognises, like "Pixel 9".
    pub name: String,
    /// The client kind.
    pub platform: Platform,
}

impl DeviceInfo {
    /// Checks the name is present, printable and not too long.
    pub fn validate(&self) -> Result<(), ApiError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(ApiError::bad_request("device.name must not be empty"));
        }
        if name.chars().count() > MAX_DEVICE_NAME_CHARS {
            return Err(ApiError::bad_request(format!(
                "device.name must be at most {MAX_DEVICE_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "device.name must not contain control characters",
            ));
        }
        Ok(())
    }
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterAccountRequest {
    /// E.164 number; parsed by the use case so the error says what is wrong.
    pub phone: String,
}

/// Reply to `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterAccountResponse {
    /// How long the code sent by SMS stays valid.
    pub expires_in_seconds: u64,
}

/// Reply to `POST /v1/connect-tickets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectTicketResponse {
    /// The ticket, for the WebSocket URL's `ticket` query parameter; it opens one connection.
    pub ticket: String,
    /// How long it may wait before it is used.
    pub expires_in_seconds: u64,
}

/// `POST /v1/accounts/verify`. Its `Debug` leaves out the code and the PIN.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateAccountRequest {
    /// The number the code was sent to.
    pub phone: String,
    /// The six digits from the SMS.
    pub code: String,
    /// The device being registered.
    pub device: DeviceInfo,
    /// The account's registration PIN (two-step verification): required when the number's
    /// account has one (`PIN_REQUIRED` otherwise). Never logged or returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

impl std::fmt::Debug for ValidateAccountRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidateAccountRequest")
            .field("device", &self.device)
            .field("pin", &self.pin.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Reply to `POST /v1/accounts/verify`: the device's credentials, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The account.
    pub user_id: String,
    /// This device.
    pub device_id: String,
    /// The device's API key; present it at `$connect`.
    pub api_key: String,
}

/// The body of every HTTP error and the `error` of a failed WebSocket reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// The protocol error code.
    pub code: ErrorCode,
    /// What went wrong, for a developer.
    pub message: String,
    /// For `LIMIT_EXCEEDED`: seconds to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl From<&ApiError> for ErrorDetail {
    fn from(e: &ApiError) -> Self {
        Self {
            code: e.code,
            message: e.message.clone(),
            retry_after: e.retry_after_secs,
        }
    }
}

/// `{"error": {...}}`, the HTTP API's error body.
pub fn http_error_body(e: &ApiError) -> String {
    json!({ "error": ErrorDetail::from(e) }).to_string()
}

/// Parses a JSON body into `T`, with errors that name the field at fault.
pub fn parse_json<T: DeserializeOwned>(body: &[u8], max_bytes: usize) -> Result<T, ApiError> {
    if body.len() > max_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "body is {} bytes; at most {max_bytes} are accepted",
                body.len()
            ),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// A WebSocket request frame with its envelope read: `action` and `requestId`, plus the whole
/// object for the action's own fields.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    /// The operation.
    pub action: String,
    /// Echoed in the reply so the client can match it.
    pub request_id: Option<String>,
    /// The whole frame.
    pub body: Value,
}

/// Why a frame could not be read. The request id is kept when it could be read.
#[derive(Debug)]
pub struct FrameError {
    /// The id to echo, if the frame had a readable one.
    pub request_id: Option<String>,
    /// The error to send.
    pub error: ApiError,
}

impl RequestFrame {
    /// Reads a frame's envelope.
    pub fn parse(body: &str) -> Result<Self, FrameError> {
        let fail = |request_id, error| FrameError { request_id, error };
        if body.len() > MAX_FRAME_BYTES {
            return Err(fail(
                None,
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("frame is larger than {MAX_FRAME_BYTES} bytes"),
                ),
            ));
        }
        let value: Value = serde_json::from_str(body).map_err(|e| {
            fail(
                None,
                ApiError::bad_request(format!("frame is not valid JSON: {e}")),
            )
        })?;
        let Value::Object(map) = &value else {
            return Err(fail(
                None,
                ApiError::bad_request("frame must be a JSON object"),
            ));
        };
        let request_id = match map.get("requestId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= 128 => Some(s.clone()),
            Some(Value::String(_)) => {
                return Err(fail(
                    None,
                    ApiError::bad_request("requestId must be at most 128 characters"),
                ));
            }
            Some(_) => {
                return Err(fail(
                    None,
                    ApiError::bad_request("requestId must be a string"),
                ));
            }
        };
        let action = match map.get("action") {
            Some(Value::String(s)) if s.is_empty() => {
                return Err(fail(
                    request_id,
                    ApiError::bad_request("action must not be empty"),
                ));
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(fail(
                    request_id,
                    ApiError::bad_request("action must be a string"),
                ));
            }
            None => {
                return Err(fail(
                    request_id,
                    ApiError::bad_request("frame has no action"),
                ));
            }
        };
        Ok(Self {
            action,
            request_id,
            body: value,
        })
    }

    /// The action's own fields as `T`. A field of the wrong type is named in the error (with
    /// its path, like `messages[0].payload`), which serde_json alone does not do.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_path_to_error::deserialize(self.body.clone()).map_err(|e| {
            let path = e.path().to_string();
            let cause = e.into_inner();
            let message = if path == "." {
                format!("invalid {} request: {cause}", self.action)
            } else {
                format!("invalid {} request: {path}: {cause}", self.action)
            };
            ApiError::bad_request(message)
        })
    }
}

/// A successful reply frame.
pub fn reply_ok(request_id: Option<&str>, result: &impl Serialize) -> String {
    json!({ "type": "response", "requestId": request_id, "ok": true, "result": result }).to_string()
}

/// A failed reply frame.
pub fn reply_err(request_id: Option<&str>, error: &ApiError) -> String {
    json!({ "type": "response", "requestId": request_id, "ok": false, "error": ErrorDetail::from(error) })
        .to_string()
}

/// Parameters of `setRegistrationPin`: the new six-digit PIN, and from a companion the current
/// one.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetRegistrationPinParams {
    /// Six digits.
    pub pin: String,
    /// The account's current PIN: needed from a companion (a linked device), not looked at
    /// from the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pin: Option<String>,
}

impl std::fmt::Debug for SetRegistrationPinParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetRegistrationPinParams { pin: …, current_pin: … }")
    }
}

/// Parameters of `removeRegistrationPin`: from a companion, the current PIN.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveRegistrationPinParams {
    /// The account's current PIN: needed from a companion, not looked at from the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pin: Option<String>,
}

impl std::fmt::Debug for RemoveRegistrationPinParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoveRegistrationPinParams { current_pin: … }")
    }
}

/// Parameters of `checkRegistrationPin`: the PIN the user remembers.
#[derive(Clone, Serialize, Deserialize)]
pub struct CheckRegistrationPinParams {
    /// Six digits.
    pub pin: String,
}

impl std::fmt::Debug for CheckRegistrationPinParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckRegistrationPinParams { pin: … }")
    }
}

/// Reply to `checkRegistrationPin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRegistrationPinResponse {
    /// Whether the PIN given is the account's.
    pub correct: bool,
}

/// Reply to `setRegistrationPin` and `removeRegistrationPin`: whether the account now has a PIN.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationPinResponse {
    /// Whether re-registering the number now needs the PIN.
    pub pin_enabled: bool,
}

/// Parameters of `deleteAccount` (none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteAccountParams {}

mod chat;
mod devices;
mod events;
mod media;
mod profile;
mod status;
#[cfg(test)]
mod tests;

pub use chat::*;
pub use devices::*;
pub use events::*;
pub use media::*;
pub use profile::*;
pub use status::*;

/// Reply to `deleteAccount` (sent before the account's connections are closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDeleted {
    /// Always true.
    pub deleted: bool,
}

/// Reply to `removeDevice` (sent before the device's connections are closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRemoved {
    /// Always true.
    pub removed: bool,
}
