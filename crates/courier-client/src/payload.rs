//! How text becomes a message `payload` and back: the one place to change when end-to-end
//! encryption wraps payloads. For now the payload is the UTF-8 text as given.

/// The payload to send for `text`.
pub fn encode(text: &str) -> String {
    text.to_owned()
}

/// The text a payload carries, or None if it cannot be read (a later, encrypted payload this
/// client has no key for).
pub fn decode(payload: &str) -> Option<String> {
    Some(payload.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        for t in ["", "hi", "ça va? 👋", &"x".repeat(65_536)] {
            assert_eq!(super::decode(&super::encode(t)).as_deref(), Some(t));
        }
    }
}
