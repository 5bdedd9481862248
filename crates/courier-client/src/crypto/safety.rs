//! Identity verification: safety numbers that two users compare out of band, and per-device
//! fingerprints.
//!
//! The safety number is Signal's numeric fingerprint (version 0) with one change: a user's
//! "public key" is the concatenation of the 32-byte Curve25519 identity keys of all of the
//! user's devices, sorted, so that it covers every device (adding or replacing a device
//! changes the number). For each user:
//!
//! ```text
//! keys   = sorted(device identity keys, raw bytes) concatenated
//! h      = SHA-512(0x00 0x00 || keys || user id)
//! repeat 5200 times: h = SHA-512(h || keys)
//! digits = for each of the first six 5-byte chunks of h: (chunk as big-endian u40) mod 100000,
//!          zero-padded to 5 digits → 30 digits
//! ```
//!
//! The two users' 30-digit strings are sorted and concatenated (so both sides get the same 60
//! digits), then shown as 12 groups of 5.

use sha2::{Digest, Sha512};
use vodozemac::Curve25519PublicKey;

use super::CryptoError;

const ITERATIONS: usize = 5200;
const VERSION: [u8; 2] = [0, 0];

/// The 60-digit safety number of two users, in 12 groups of 5 digits separated by spaces.
///
/// Order-independent: Alice's `safety_number(alice, A, bob, B)` equals Bob's
/// `safety_number(bob, B, alice, A)`. Each side passes every device identity key of both users
/// (from `listDevices` / `claimKeys`, and its own), in any order.
pub fn safety_number(
    my_user: &str,
    my_identity_keys: &[impl AsRef<str>],
    their_user: &str,
    their_identity_keys: &[impl AsRef<str>],
) -> Result<String, CryptoError> {
    let mine = user_digits(my_user, my_identity_keys)?;
    let theirs = user_digits(their_user, their_identity_keys)?;
    let digits = if mine <= theirs {
        mine + &theirs
    } else {
        theirs + &mine
    };
    Ok(group(&digits, 5))
}

/// A device's fingerprint as a person reads it: its Curve25519 identity key (unpadded
/// base64) in groups of 4 characters, e.g. `"mNf5 Qp2X ..."`.
pub fn fingerprint(identity_key: &str) -> Result<String, CryptoError> {
    let key = parse(identity_key)?;
    Ok(group(&key.to_base64(), 4))
}

fn parse(key: &str) -> Result<Curve25519PublicKey, CryptoError> {
    Curve25519PublicKey::from_base64(key).map_err(|e| CryptoError::InvalidKey(e.to_string()))
}

fn user_digits(user: &str, keys: &[impl AsRef<str>]) -> Result<String, CryptoError> {
    if keys.is_empty() {
        return Err(CryptoError::InvalidKey(format!(
            "no identity keys given for {user}"
        )));
    }
    let mut raw = keys
        .iter()
        .map(|k| parse(k.as_ref()).map(|k| k.to_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    raw.sort_unstable();
    raw.dedup();
    let keys = raw.concat();

    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(&keys)
        .chain_update(user.as_bytes())
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(&keys)
            .finalize();
    }

    Ok(hash[..30]
        .chunks(5)
        .map(|chunk| {
            let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect())
}

fn group(s: &str, size: usize) -> String {
    s.as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        vodozemac::olm::Account::new().curve25519_key().to_base64()
    }

    #[test]
    fn safety_number_is_60_digits_in_12_groups_and_the_same_on_both_sides() {
        let (a1, a2, b1) = (key(), key(), key());
        // Alice's first device computes it with her devices in one order...
        let alice_view = safety_number("alice", &[&a1, &a2], "bob", &[&b1]).unwrap();
        // ...Bob with Alice's devices in the other order.
        let bob_view = safety_number("bob", &[&b1], "alice", &[&a2, &a1]).unwrap();
        assert_eq!(alice_view, bob_view);

        let groups: Vec<&str> = alice_view.split(' ').collect();
        assert_eq!(groups.len(), 12);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
    }

    #[test]
    fn safety_number_differs_when_a_key_or_a_user_differs() {
        let (a1, b1, mallory) = (key(), key(), key());
        let real = safety_number("alice", &[&a1], "bob", &[&b1]).unwrap();
        // A man in the middle substituted Bob's key.
        let mitm = safety_number("alice", &[&a1], "bob", &[&mallory]).unwrap();
        assert_ne!(real, mitm);
        // Bob linked a device: the number changes, so the pair re-verifies.
        let more = safety_number("alice", &[&a1], "bob", &[&b1, &mallory]).unwrap();
        assert_ne!(real, more);
        // Same keys, another user id.
        let other = safety_number("alice", &[&a1], "carol", &[&b1]).unwrap();
        assert_ne!(real, other);
        // Deterministic.
        assert_eq!(real, safety_number("alice", &[&a1], "bob", &[&b1]).unwrap());
    }

    #[test]
    fn safety_number_refuses_bad_or_missing_keys() {
        let none: [&str; 0] = [];
        assert!(matches!(
            safety_number("alice", &[key()], "bob", &none),
            Err(CryptoError::InvalidKey(_))
        ));
        assert!(matches!(
            safety_number("alice", &["nope"], "bob", &[key()]),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn fingerprint_is_the_key_in_groups_of_four() {
        let k = key();
        let fp = fingerprint(&k).unwrap();
        assert_eq!(fp.replace(' ', ""), k);
        assert!(fp.split(' ').all(|g| g.len() <= 4));
        assert_eq!(fp.split(' ').count(), k.len().div_ceil(4));
        assert_ne!(fingerprint(&key()).unwrap(), fp);
        assert!(fingerprint("garbage!").is_err());
    }
}
