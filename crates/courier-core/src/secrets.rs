//! API keys and verification codes: random from the OS CSPRNG, stored only as SHA-256 hashes.
//!
//! API keys carry 256 bits of entropy, so a plain SHA-256 is enough to make a leaked table useless.
//! Six-digit codes have only 20 bits; their hash is salted per code and they are further
//! protected by a 15-minute life and five tries, which is what bounds guessing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rand_core::TryRngCore;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A device's API key as handed to the client once. Never stored or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// The stored form of an API key: hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(String);

impl ApiKey {
    /// A new key: 32 random bytes from the OS, base64url.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("OS random number generator failed");
        Self(format!("ck_{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A new one-time connect ticket: `ct_` and 32 random bytes from the OS, base64url. It is
    /// kept (hashed) and checked like a key, but opens one connection, once, within seconds.
    pub fn generate_ticket() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("OS random number generator failed");
        Self(format!("ct_{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a key presented by a client.
    pub fn presented(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key as the client keeps it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which the key is stored and looked up.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl ApiKeyHash {
    /// Wraps a hash read from storage.
    pub fn from_stored(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A six-digit verification code, as sent by SMS.
#[derive(Clone)]
pub struct VerificationCode(String);

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode(…)")
    }
}

/// A code's stored form: a random salt and SHA-256(salt || code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHash {
    /// Hex salt.
    pub salt: String,
    /// Hex digest.
    pub digest: String,
}

impl VerificationCode {
    /// A uniformly random code from 000000 to 999999 (the thread RNG is a CSPRNG seeded by the OS).
    pub fn generate() -> Self {
        Self(format!("{:06}", rand::rng().random_range(0..1_000_000u32)))
    }

    /// Parses what the user typed: exactly six ASCII digits.
    pub fn parse(input: &str) -> Option<Self> {
        (input.len() == 6 && input.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(input.to_owned()))
    }

    /// The digits, to put in the SMS.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hashes the code with a fresh salt.
    pub fn hash(&self) -> CodeHash {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = hex::encode(salt);
        let digest = Self::digest(&salt, &self.0);
        CodeHash { salt, digest }
    }

    /// Whether this code is the one that was hashed, in constant time.
    pub fn matches(&self, stored: &CodeHash) -> bool {
        let digest = Self::digest(&stored.salt, &self.0);
        digest.as_bytes().ct_eq(stored.digest.as_bytes()).into()
    }

    fn digest(salt: &str, code: &str) -> String {
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        h.update(code.as_bytes());
        hex::encode(h.finalize())
    }
}

/// A six-digit registration PIN (two-step verification), as typed by the user. Never stored,
/// logged or returned: only its Argon2id hash ([`RegistrationPin::hash`]) is kept.
#[derive(Clone)]
pub struct RegistrationPin(String);

impl std::fmt::Debug for RegistrationPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistrationPin(…)")
    }
}

/// Argon2id memory cost of PIN hashes, in KiB (19 MiB).
///
/// These are OWASP's minimum Argon2id parameters (m = 19 MiB, t = 2, p = 1). The hash runs in
/// a Lambda of 256 MB (the template's default; 128 MB would do) with a 10 s timeout:
/// 19 MiB leaves the function most of its memory, and two passes take tens of milliseconds on
/// a full core, a few hundred at the fraction of a vCPU a 256 MB function gets, far inside the
/// timeout. The online guessing bound is the 10-try lockout, not the hash; the hash only makes
/// a stolen table slower to search (a 6-digit PIN cannot resist an offline search for long
/// whatever the cost, which is why the table is not readable by clients at all). The
/// parameters are stored in each hash (PHC string), so they can be raised later.
pub const PIN_M_COST_KIB: u32 = 19 * 1024;
/// Argon2id passes of PIN hashes.
pub const PIN_T_COST: u32 = 2;
/// Argon2id lanes of PIN hashes (a Lambda of 256 MB has a fraction of one vCPU).
pub const PIN_P_COST: u32 = 1;

fn pin_hasher() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(PIN_M_COST_KIB, PIN_T_COST, PIN_P_COST, None)
        .expect("constant Argon2 parameters are valid");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

impl RegistrationPin {
    /// Parses what the user typed: exactly six ASCII digits.
    pub fn parse(input: &str) -> Option<Self> {
        (input.len() == 6 && input.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(input.to_owned()))
    }

    /// The digits (for a client to send; the server never needs them back).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The Argon2id hash with a fresh 16-byte salt, as a PHC string (`$argon2id$v=19$m=…`).
    pub fn hash(&self) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
        pin_hasher()
            .hash_password(self.0.as_bytes(), &salt)
            .expect("hashing six bytes with valid parameters cannot fail")
            .to_string()
    }

    /// Whether this PIN is the one `stored` was made from (constant time). A stored value that
    /// is not a valid hash matches nothing.
    pub fn matches(&self, stored: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(stored)
            .is_ok_and(|h| pin_hasher().verify_password(self.0.as_bytes(), &h).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_long_random_and_hash_stably() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 3 + 43);
        assert_eq!(a.hash(), ApiKey::presented(a.expose()).hash());
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(&a.expose()[3..]));
    }

    #[test]
    fn codes_are_six_digits_and_match_only_themselves() {
        let code = VerificationCode::generate();
        assert_eq!(code.expose().len(), 6);
        let stored = code.hash();
        assert!(code.matches(&stored));
        let other = if code.expose() == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert!(!VerificationCode::parse(other).unwrap().matches(&stored));
        assert_ne!(stored.digest, code.hash().digest, "salted");
    }

    #[test]
    fn code_parsing_takes_exactly_six_digits() {
        assert!(VerificationCode::parse("123456").is_some());
        for bad in ["12345", "1234567", "12345a", " 12345", ""] {
            assert!(VerificationCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn pins_hash_with_argon2id_and_match_only_themselves() {
        let pin = RegistrationPin::parse("042917").unwrap();
        let stored = pin.hash();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(!stored.contains("042917"));
        assert!(pin.matches(&stored));
        assert!(!RegistrationPin::parse("042918").unwrap().matches(&stored));
        assert!(!pin.matches("not a hash"));
        assert_ne!(stored, pin.hash(), "salted");
        assert!(!format!("{pin:?}").contains("042917"));
        for bad in ["12345", "1234567", "12345a", ""] {
            assert!(RegistrationPin::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn codes_cover_the_whole_range() {
        let mut leading_zero = false;
        for _ in 0..200 {
            let c = VerificationCode::generate();
            assert!(c.expose().parse::<u32>().unwrap() < 1_000_000);
            leading_zero |= c.expose().starts_with('0');
        }
        assert!(leading_zero, "codes below 100000 are zero-padded");
    }
}
