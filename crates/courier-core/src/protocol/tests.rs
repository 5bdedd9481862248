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
    let e = parse_json::<RegisterAccountRequest>(&[b' '; 5000], MAX_HTTP_BODY_BYTES).unwrap_err();
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    let e = parse_json::<RegisterAccountRequest>(b"", MAX_HTTP_BODY_BYTES).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = parse_json::<RegisterAccountRequest>(br#"{"phone": 14155550100}"#, MAX_HTTP_BODY_BYTES)
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
