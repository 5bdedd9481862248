#![no_main]
//! Any bytes as the body of registerAccount / validateAccount: read, or refused with a code.
use courier_core::ErrorCode;
use courier_core::protocol::{
    MAX_HTTP_BODY_BYTES, RegisterAccountRequest, ValidateAccountRequest, parse_json,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for r in [
        parse_json::<RegisterAccountRequest>(data, MAX_HTTP_BODY_BYTES).map(|_| ()),
        parse_json::<ValidateAccountRequest>(data, MAX_HTTP_BODY_BYTES).map(|_| ()),
    ] {
        if let Err(e) = r {
            assert!(matches!(
                e.code,
                ErrorCode::BadRequest | ErrorCode::PayloadTooLarge
            ));
        }
    }
});
