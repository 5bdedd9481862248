use super::*;

#[test]
fn payload_carries_the_send_time_and_has_the_asked_size() {
    let p = payload(1_700_000_000_123_456, 7, 100);
    assert_eq!(p.len(), 100);
    assert_eq!(sent_us(&p), Some(1_700_000_000_123_456));
    // Too small to pad: still valid.
    assert_eq!(sent_us(&payload(5, 1, 0)), Some(5));
    assert_eq!(sent_us("not json"), None);
}

#[test]
fn phones_are_valid() {
    for _ in 0..20 {
        assert!(courier_core::PhoneNumber::parse(&fresh_phone()).is_ok());
    }
}
