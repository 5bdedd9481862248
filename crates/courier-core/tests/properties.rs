//! Property-based fuzzing (proptest) of what reads untrusted input in courier-core: WebSocket
//! request frames, HTTP bodies and phone numbers. Whatever the bytes, the parsers answer (a value or a clear
//! error with a protocol code) and never panic; what they accept reads back the same.
//! `PROPTEST_CASES` raises the number of cases (default 256 per property); failures found are
//! kept as regression cases in `tests/properties.proptest-regressions`.

use courier_core::protocol::{
    MAX_FRAME_BYTES, MAX_HTTP_BODY_BYTES, RegisterAccountRequest, RequestFrame,
    ValidateAccountRequest, parse_json,
};
use courier_core::{ErrorCode, PhoneNumber};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        // Decimals with few digits: serde_json reads extreme floats back to the nearest
        // neighbour, which is serde_json's precision, not the frame reader's.
        (-1_000_000i64..1_000_000).prop_map(|n| json!(n as f64 / 100.0)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mutates a string: deletes, inserts or replaces a few characters.
fn mutate(s: &str, edits: &[(usize, u8, char)]) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for &(at, op, c) in edits {
        if chars.is_empty() {
            chars.push(c);
            continue;
        }
        let i = at % chars.len();
        match op % 3 {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(i, c),
            _ => chars[i] = c,
        }
    }
    chars.into_iter().collect()
}

fn frame_error_code(text: &str) -> Option<ErrorCode> {
    RequestFrame::parse(text).err().map(|e| e.error.code)
}

proptest! {
    #[test]
    fn any_text_is_a_frame_or_a_clear_error(text in ".{0,300}") {
        if let Some(code) = frame_error_code(&text) {
            prop_assert!(matches!(code, ErrorCode::BadRequest | ErrorCode::PayloadTooLarge), "{code:?}");
        }
    }

    #[test]
    fn well_formed_frames_read_back(
        action in "[A-Za-z$][A-Za-z0-9]{0,39}",
        request_id in proptest::option::of("[ -~]{0,64}"),
        data in json_value(),
    ) {
        let mut frame = json!({ "action": action, "data": data });
        if let Some(id) = &request_id {
            frame["requestId"] = json!(id);
        }
        let parsed = RequestFrame::parse(&frame.to_string());
        let parsed = parsed.map_err(|e| e.error).unwrap();
        prop_assert_eq!(&parsed.action, &action);
        prop_assert_eq!(&parsed.request_id, &request_id);
        prop_assert_eq!(&parsed.body, &frame);
    }

    #[test]
    fn mutated_frames_never_panic(
        action in "[A-Za-z]{1,20}",
        data in json_value(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<char>()), 1..8),
    ) {
        let frame = json!({ "action": action, "requestId": "r-1", "data": data }).to_string();
        let text = mutate(&frame, &edits);
        match RequestFrame::parse(&text) {
            Ok(f) => prop_assert!(!f.action.is_empty()),
            Err(e) => prop_assert!(matches!(e.error.code, ErrorCode::BadRequest | ErrorCode::PayloadTooLarge)),
        }
    }

    #[test]
    fn oversize_frames_are_refused_as_too_large(extra in 1usize..4096) {
        let body = format!("{{\"action\":\"sendMessage\",\"data\":\"{}\"}}", "a".repeat(MAX_FRAME_BYTES + extra));
        prop_assert_eq!(frame_error_code(&body), Some(ErrorCode::PayloadTooLarge));
    }

    #[test]
    fn any_text_is_a_phone_number_or_an_error(text in ".{0,40}") {
        if let Ok(p) = PhoneNumber::parse(&text) {
            // What is accepted is E.164 and reads back the same.
            prop_assert!(p.as_str().starts_with('+'));
            prop_assert!(p.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(PhoneNumber::parse(p.as_str()).unwrap(), p);
        }
    }

    #[test]
    fn numbers_read_back_and_redaction_hides_all_but_two_digits(digits in "[1-9][0-9]{6,14}") {
        let text = format!("+{digits}");
        if let Ok(p) = PhoneNumber::parse(&text) {
            // Parsing normalises (e.g. a national trunk 0 after the country code goes), and
            // the normal form is a fixed point.
            prop_assert_eq!(PhoneNumber::parse(p.as_str()).unwrap(), p.clone());
            let shown: String = p.redacted().chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(shown.len(), 2);
            prop_assert!(p.as_str().ends_with(&shown));
        }
    }

    #[test]
    fn any_bytes_are_an_http_body_or_a_clear_error(body in prop::collection::vec(any::<u8>(), 0..600)) {
        for r in [
            parse_json::<RegisterAccountRequest>(&body, MAX_HTTP_BODY_BYTES).map(|_| ()),
            parse_json::<ValidateAccountRequest>(&body, MAX_HTTP_BODY_BYTES).map(|_| ()),
        ] {
            if let Err(e) = r {
                prop_assert_eq!(e.code, ErrorCode::BadRequest);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn http_bodies_of_any_shape_are_read_or_refused(value in json_value(), phone in ".{0,20}") {
        // A JSON value of any shape, and a register body with any phone text.
        let body = value.to_string();
        let _ = parse_json::<RegisterAccountRequest>(body.as_bytes(), MAX_HTTP_BODY_BYTES);
        let body = json!({ "phone": phone }).to_string();
        let read = parse_json::<RegisterAccountRequest>(body.as_bytes(), MAX_HTTP_BODY_BYTES);
        if body.len() <= MAX_HTTP_BODY_BYTES {
            prop_assert_eq!(read.unwrap().phone, phone);
        }
    }

    #[test]
    fn oversize_http_bodies_are_refused_as_too_large(extra in 1usize..2048) {
        let body = format!("{{\"phone\":\"{}\"}}", "1".repeat(MAX_HTTP_BODY_BYTES + extra));
        let e = parse_json::<RegisterAccountRequest>(body.as_bytes(), MAX_HTTP_BODY_BYTES).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    }
}
