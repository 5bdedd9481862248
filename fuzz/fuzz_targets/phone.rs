#![no_main]
//! Any text as a phone number: what is accepted is E.164, a fixed point of parsing, and its
//! redacted form shows two digits.
use courier_core::PhoneNumber;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = PhoneNumber::parse(text) {
        assert!(p.as_str().starts_with('+'));
        assert!(p.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(PhoneNumber::parse(p.as_str()).unwrap(), p);
        let shown = p.redacted().chars().filter(char::is_ascii_digit).count();
        assert_eq!(shown, 2);
    }
});
