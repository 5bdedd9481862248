#![no_main]
//! Any bytes as a WebSocket frame: read, or refused with BAD_REQUEST / PAYLOAD_TOO_LARGE.
use courier_core::ErrorCode;
use courier_core::protocol::RequestFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match RequestFrame::parse(&text) {
        Ok(frame) => assert!(!frame.action.is_empty()),
        Err(e) => assert!(matches!(
            e.error.code,
            ErrorCode::BadRequest | ErrorCode::PayloadTooLarge
        )),
    }
});
