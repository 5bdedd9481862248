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
pub fn fit_budget(items: impl IntoIterator<Item = Value>, budget: usize) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = item.to_string().len() + usize::from(!out.is_empty());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope() {
        let f = RequestFrame::parse(r#"{"action":"deleteAccount","requestId":"r1"}"#).unwrap();
        assert_eq!(f.action, "deleteAccount");
        assert_eq!(f.request_id.as_deref(), Some("r1"));
    }

    #[test]
    fn bad_frames_say_what_is_wrong_and_keep_the_request_id_when_readable() {
        let e = RequestFrame::parse("not json").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        assert!(e.error.message.contains("not valid JSON"));
        assert!(e.request_id.is_none());

        let e = RequestFrame::parse("[1,2]").unwrap_err();
        assert!(e.error.message.contains("JSON object"));

        let e = RequestFrame::parse(r#"{"requestId":"r9"}"#).unwrap_err();
        assert_eq!(e.request_id.as_deref(), Some("r9"));
        assert!(e.error.message.contains("no action"));

        let e = RequestFrame::parse(r#"{"action":5,"requestId":"r8"}"#).unwrap_err();
        assert_eq!(e.request_id.as_deref(), Some("r8"));
        assert!(e.error.message.contains("action must be a string"));

        // An empty action names nothing: refused like a missing one, not "unknown action ''".
        let e = RequestFrame::parse(r#"{"action":"","requestId":"r7"}"#).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        assert_eq!(e.request_id.as_deref(), Some("r7"));
        assert!(e.error.message.contains("action must not be empty"));

        let e = RequestFrame::parse(r#"{"action":"x","requestId":7}"#).unwrap_err();
        assert!(e.error.message.contains("requestId must be a string"));

        let big = format!(
            r#"{{"action":"x","pad":"{}"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(
            RequestFrame::parse(&big).unwrap_err().error.code,
            ErrorCode::PayloadTooLarge
        );
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let f = RequestFrame::parse(r#"{"action":"claimKeys","userId":7}"#).unwrap();
        let e = f.params::<ClaimKeysParams>().unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("userId: invalid type"), "{}", e.message);
        let f = RequestFrame::parse(
            r#"{"action":"sendToDevice","messages":[{"userId":"u_1","deviceId":"d_1","payload":5}]}"#,
        )
        .unwrap();
        let e = f.params::<SendToDeviceParams>().unwrap_err();
        assert!(e.message.contains("messages[0].payload"), "{}", e.message);
    }

    #[test]
    fn replies_carry_the_request_id_and_the_error_code() {
        let v: Value =
            serde_json::from_str(&reply_err(Some("r1"), &ApiError::bad_request("nope"))).unwrap();
        assert_eq!(v["type"], "response");
        assert_eq!(v["requestId"], "r1");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "BAD_REQUEST");
        assert_eq!(v["error"]["message"], "nope");
        let v: Value = serde_json::from_str(&reply_ok(None, &json!({"a": 1}))).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["result"]["a"], 1);
        assert!(v["requestId"].is_null());
    }

    #[test]
    fn json_bodies_are_size_checked_and_typed() {
        let e =
            parse_json::<RegisterAccountRequest>(&[b' '; 5000], MAX_HTTP_BODY_BYTES).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        let e = parse_json::<RegisterAccountRequest>(b"", MAX_HTTP_BODY_BYTES).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e =
            parse_json::<RegisterAccountRequest>(br#"{"phone": 14155550100}"#, MAX_HTTP_BODY_BYTES)
                .unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse_json::<ValidateAccountRequest>(
            br#"{"phone":"+14155550100","code":"123456","device":{"name":"x","platform":"toaster"}}"#,
            MAX_HTTP_BODY_BYTES,
        )
        .unwrap_err();
        assert!(e.message.contains("unknown variant"), "{}", e.message);
    }

    #[test]
    fn device_names_are_checked() {
        let d = |name: &str| DeviceInfo {
            name: name.into(),
            platform: Platform::Cli,
        };
        assert!(d("Pixel 9").validate().is_ok());
        assert!(d("  ").validate().is_err());
        assert!(d(&"x".repeat(65)).validate().is_err());
        assert!(d("a\u{0007}b").validate().is_err());
    }
}

// ---- Chat -------------------------------------------------------------------------------------

use crate::chat::{Message, Receipt};

/// `lookupUser`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupUserParams {
    /// E.164 number.
    pub phone: String,
}

/// `discoverContacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverContactsParams {
    /// Numbers from the caller's address book, E.164 (others are skipped).
    pub phones: Vec<String>,
}

/// `initiateDirectChatSession`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateDirectChatParams {
    /// The other user.
    pub peer_user_id: String,
    /// Opaque E2EE set-up for the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<String>,
}

/// `sendMessage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageParams {
    /// Target session.
    pub session_id: String,
    /// Idempotency key.
    pub client_msg_id: String,
    /// Message kind: one a client may send ([`crate::chat::MessageKind::is_sendable`]).
    #[serde(rename = "type")]
    pub kind: crate::chat::MessageKind,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// Media ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// `listSessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsParams {
    /// Continue after this session id (the last one of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `readNewMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadNewMessagesParams {
    /// The session.
    pub session_id: String,
    /// Read after this message (from the start if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_msg_id: Option<String>,
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `ackMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckMessagesParams {
    /// The session.
    pub session_id: String,
    /// Everything up to this message.
    pub msg_id: String,
    /// `delivered` or `read`.
    pub status: Receipt,
}

/// `getMessageStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMessageStatusParams {
    /// The message.
    pub msg_id: String,
}

/// `registerPushToken`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterPushTokenParams {
    /// `apns` or `fcm`.
    pub platform: crate::ports::PushPlatform,
    /// The device token from APNs / FCM.
    pub token: String,
}

/// The `message` event.
pub fn message_event(m: &Message) -> String {
    json!({ "type": "event", "event": "message", "message": m }).to_string()
}

/// The `sessionStarted` event, for a handshake message.
///
/// The handshake travels once, as the message's `payload`: carried twice, a 65,536-character
/// handshake made a frame over the gateway's 128 KB limit.
pub fn session_started_event(m: &Message) -> String {
    json!({
        "type": "event", "event": "sessionStarted", "sessionId": m.session_id,
        "from": m.sender, "message": m
    })
    .to_string()
}

/// The event a stored message becomes: `sessionStarted` for a handshake, `groupUpdate` for a
/// group change the server wrote into the session, else `message`.
pub fn event_for(m: &Message) -> String {
    match m.kind {
        crate::chat::MessageKind::Handshake => session_started_event(m),
        crate::chat::MessageKind::System => group_update_event(m),
        _ => message_event(m),
    }
}

/// A change to a group, as the server writes it into the group's session (a `system` message
/// whose payload is this, as JSON: membership is not secret from the server, content is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupChange {
    /// `created`, `memberAdded`, `memberRemoved`, `promoted` or `deleted`.
    pub update: String,
    /// Whom it is about (`created`: the creator).
    pub user_id: UserId,
    /// Who did it.
    pub by: UserId,
}

/// The `groupUpdate` event for a `system` message (or, with no message, for a group that is
/// gone: `deleted`, and a removed member's own removal).
pub fn group_update_event(m: &Message) -> String {
    let change: Option<GroupChange> = serde_json::from_str(&m.payload).ok();
    json!({
        "type": "event", "event": "groupUpdate", "groupId": m.session_id, "sessionId": m.session_id,
        "update": change.as_ref().map(|c| c.update.as_str()),
        "userId": change.as_ref().map(|c| &c.user_id),
        "by": change.as_ref().map(|c| &c.by),
        "message": m
    })
    .to_string()
}

/// A `groupUpdate` event not carried by a message of the session.
pub fn group_notice(session: &SessionId, change: &GroupChange, at: &str) -> String {
    json!({
        "type": "event", "event": "groupUpdate", "groupId": session, "sessionId": session,
        "update": change.update, "userId": change.user_id, "by": change.by, "at": at
    })
    .to_string()
}

/// `initiateGroupChatSession`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateGroupParams {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The other members (the creator is added as admin).
    pub members: Vec<String>,
}

/// `getGroup`, `deleteGroup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupParams {
    /// The group.
    pub group_id: String,
}

/// `addUserToGroup`, `removeUserFromGroup`, `promoteUserToAdmin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMemberParams {
    /// The group.
    pub group_id: String,
    /// The user.
    pub user_id: String,
}

/// The `status` event: a member's watermark moved.
pub fn status_event(
    session: &str,
    user: &str,
    status: Receipt,
    up_to_msg_id: &str,
    up_to_seq: u64,
    at: &str,
) -> String {
    json!({
        "type": "event", "event": "status", "sessionId": session, "userId": user, "status": status,
        "upToMsgId": up_to_msg_id, "upToSeq": up_to_seq, "at": at
    })
    .to_string()
}

/// `approveDeviceLink`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApproveDeviceLinkParams {
    /// The code the new device shows.
    pub code: String,
}

// ---- Devices and keys -------------------------------------------------------------------------

use crate::ports::{DeviceMessage, SignedKey};

/// `uploadKeys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadKeysParams {
    /// Curve25519 identity key.
    pub identity_key: String,
    /// Ed25519 signing key.
    pub signing_key: String,
    /// New one-time keys (0 to 100).
    pub one_time_keys: Vec<SignedKey>,
    /// Replaces the fallback key when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_key: Option<SignedKey>,
}

/// `claimKeys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimKeysParams {
    /// Whose keys.
    pub user_id: String,
    /// Only these devices (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
}

/// `listDevices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDevicesParams {
    /// 1 to 50 users (`MAX_LIST_USERS` of the keys use case).
    pub user_ids: Vec<String>,
}

/// `removeDevice`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveDeviceParams {
    /// The device to remove.
    pub device_id: String,
}

/// One message of `sendToDevice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingDeviceMessage {
    /// Target user.
    pub user_id: String,
    /// Target device.
    pub device_id: String,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
}

/// `sendToDevice`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendToDeviceParams {
    /// 1 to 100 messages.
    pub messages: Vec<OutgoingDeviceMessage>,
}

/// `readDeviceMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadDeviceMessagesParams {
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `ackDeviceMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckDeviceMessagesParams {
    /// 1 to 100 message ids.
    pub ids: Vec<String>,
}

/// A device message as the protocol shows it.
pub fn device_message_json(m: &DeviceMessage) -> Value {
    json!({
        "id": m.id, "sender": m.sender, "senderDevice": m.sender_device,
        "payload": m.payload, "sentAt": crate::chat::timestamp(m.sent_at)
    })
}

/// The `deviceMessage` event.
pub fn device_message_event(m: &DeviceMessage) -> String {
    json!({ "type": "event", "event": "deviceMessage", "message": device_message_json(m) })
        .to_string()
}

/// `getSettings`: no fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetSettingsParams {}

/// The display part of `updateSettings`: only the fields given change; `null` clears one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisplayUpdate {
    /// New display name.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<Option<String>>,
    /// New about line.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub about: Option<Option<String>>,
    /// New avatar media id.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub avatar: Option<Option<String>>,
}

/// The privacy part of `updateSettings`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivacyUpdate {
    /// Who sees last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<crate::settings::Audience>,
    /// Who sees the avatar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_photo: Option<crate::settings::Audience>,
    /// Who sees the about line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<crate::settings::Audience>,
    /// Who sees status posts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::settings::Audience>,
    /// Read receipts on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_receipts: Option<bool>,
    /// Who may add the user to groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_add: Option<crate::settings::GroupsAdd>,
}

/// `updateSettings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSettingsParams {
    /// Profile fields to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<DisplayUpdate>,
    /// Privacy choices to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyUpdate>,
}

/// `updateContacts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateContactsParams {
    /// User ids to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// User ids to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// `getProfile`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetProfileParams {
    /// Whose profile.
    pub user_id: String,
}

/// A present field is `Some`, even when it is `null` (`Some(None)`: clear it).
fn some<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// ---- Status posts ------------------------------------------------------------------------------

/// `postStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostStatusParams {
    /// Ciphertext (a Megolm message of the poster's status room).
    pub payload: String,
    /// Media ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// `removeStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveStatusParams {
    /// One of the caller's statuses.
    pub status_id: String,
}

/// `viewStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewStatusParams {
    /// Whose statuses.
    pub user_id: String,
    /// Continue after this status id (the last one of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `getStatusViewers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetStatusViewersParams {
    /// One of the caller's statuses.
    pub status_id: String,
    /// Continue after this viewer's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `getStatusAudience`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetStatusAudienceParams {
    /// Continue after this user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A status as the protocol shows it.
pub fn status_json(s: &crate::ports::Status) -> Value {
    json!({
        "userId": s.user_id, "statusId": s.status_id, "deviceId": s.device_id,
        "payload": s.payload, "attachments": s.attachments,
        "postedAt": crate::chat::timestamp(s.posted_at),
        "expiresAt": crate::chat::timestamp(s.expires_at)
    })
}

/// The `statusPosted` event (the payload itself is fetched with `viewStatus`).
pub fn status_posted_event(s: &crate::ports::Status) -> String {
    json!({
        "type": "event", "event": "statusPosted", "userId": s.user_id, "statusId": s.status_id,
        "expiresAt": crate::chat::timestamp(s.expires_at)
    })
    .to_string()
}

/// `createMediaUpload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMediaUploadParams {
    /// The media type the upload is bound to (the ciphertext is stored with it).
    pub content_type: String,
    /// Exact size in bytes of what will be uploaded (the ciphertext).
    pub size: u64,
}

/// `getMediaDownload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMediaDownloadParams {
    /// The media.
    pub media_id: String,
}
/// `createBackup`: the size of the encrypted backup file the client will upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBackupParams {
    /// Bytes; the upload is bound to exactly this many.
    pub size: u64,
}

/// `listBackups`: no fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListBackupsParams {}

/// `getBackupDownload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetBackupDownloadParams {
    /// Which backup (from `listBackups`).
    pub backup_id: String,
}
