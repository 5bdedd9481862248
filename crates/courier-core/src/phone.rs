//! Phone numbers in E.164, checked against libphonenumber's metadata (the `phonenumber` crate).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A phone number that is valid for its country, always held in E.164 form (`+14155550100`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

/// Why a string is not an acceptable phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Numbers must be sent in E.164: a `+`, the country code and the number, digits only.
    #[error("phone number must be in E.164 form, like +14155550100")]
    NotE164,
    /// The digits do not form a number that exists in its country's numbering plan.
    #[error("{0} is not a valid phone number")]
    Invalid(String),
}

impl PhoneNumber {
    /// Parses an E.164 string. Spaces or dashes are refused: clients send the canonical form.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let digits = input.strip_prefix('+').ok_or(PhoneError::NotE164)?;
        if digits.is_empty()
            || digits.len() > 15
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(PhoneError::NotE164);
        }
        let parsed =
            phonenumber::parse(None, input).map_err(|_| PhoneError::Invalid(input.to_owned()))?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid(input.to_owned()));
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(Self(e164))
    }

    /// The number in E.164.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code (`1` for +1 415…, `44` for +44 20…), what SMS prices and
    /// allow-lists go by.
    pub fn calling_code(&self) -> u16 {
        phonenumber::parse(None, &self.0)
            .map(|p| p.code().value())
            .expect("a PhoneNumber was parsed when it was made")
    }

    /// The number with all but the last two digits hidden, for logs.
    pub fn redacted(&self) -> String {
        let keep = &self.0[self.0.len().saturating_sub(2)..];
        format!("+…{keep}")
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PhoneNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_numbers_from_several_countries() {
        for (n, code) in [
            ("+14155550100", 1),
            ("+442071838750", 44),
            ("+4915123456789", 49),
            ("+919876543210", 91),
        ] {
            assert_eq!(PhoneNumber::parse(n).unwrap().as_str(), n);
            assert_eq!(PhoneNumber::parse(n).unwrap().calling_code(), code);
        }
    }

    #[test]
    fn refuses_what_is_not_e164() {
        for n in [
            "",
            "+",
            "14155550100",
            "+1 415 555 0100",
            "+1-415-555-0100",
            "+0123",
            "+1234567890123456",
            "+1415555010a",
            "abc",
        ] {
            assert_eq!(PhoneNumber::parse(n), Err(PhoneError::NotE164), "{n}");
        }
    }

    #[test]
    fn refuses_numbers_outside_the_numbering_plan() {
        for n in ["+1", "+11234567890", "+999123456", "+4412"] {
            assert!(
                matches!(PhoneNumber::parse(n), Err(PhoneError::Invalid(_))),
                "{n}"
            );
        }
    }

    #[test]
    fn redacts_all_but_last_two_digits() {
        assert_eq!(
            PhoneNumber::parse("+14155550100").unwrap().redacted(),
            "+…00"
        );
    }
}
