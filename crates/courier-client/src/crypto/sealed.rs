//! The sealed form of a device's crypto state, independent of where it is kept: the CLI's
//! `crypto.state` file (`super::store`, with the `native` feature) and the web client's
//! IndexedDB record hold the same bytes:
//!
//! `"CCS1"` || 12-byte random nonce || AES-256-GCM(JSON snapshot), with
//! `"courier-crypto-state-v1"` as associated data, under a 32-byte key kept apart from it.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

use super::DeviceCrypto;
use super::device::Snapshot;

/// The crypto state's magic.
pub(crate) const STATE_MAGIC: &[u8; 4] = b"CCS1";
/// The crypto state's associated data.
pub(crate) const STATE_AAD: &[u8] = b"courier-crypto-state-v1";
const NONCE_LEN: usize = 12;
/// Length of a state key.
pub const KEY_LEN: usize = 32;

/// Why sealed bytes could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The bytes do not decrypt with this key: the wrong key, or damaged bytes.
    #[error("does not decrypt with this key (wrong key, or damaged state)")]
    WrongKey,
    /// Not sealed state of this kind or version, or a state this version cannot read.
    #[error("not a valid sealed state: {0}")]
    Corrupt(String),
    /// The key is not [`KEY_LEN`] bytes.
    #[error("a state key is 32 bytes")]
    BadKey,
}

/// A new random state key.
pub fn generate_key() -> Zeroizing<[u8; KEY_LEN]> {
    let generated = Key::<Aes256Gcm>::generate();
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(generated.as_slice());
    key
}

fn cipher(key: &[u8]) -> Result<Aes256Gcm, SealError> {
    Aes256Gcm::new_from_slice(key).map_err(|_| SealError::BadKey)
}

/// `magic` || nonce || AES-256-GCM(plaintext) with `aad`: any other local state kept beside the
/// crypto state, under the same key (the CLI's history, the web client's chat list).
pub fn seal(
    key: &[u8],
    magic: &[u8; 4],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce = Nonce::generate();
    let ciphertext = cipher(key)?
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Corrupt("encryption failed".into()))?;
    let mut bytes = Vec::with_capacity(magic.len() + NONCE_LEN + ciphertext.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&ciphertext);
    Ok(bytes)
}

/// The plaintext of [`seal`]ed bytes.
pub fn unseal(
    key: &[u8],
    magic: &[u8; 4],
    aad: &[u8],
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let cipher = cipher(key)?;
    let rest = bytes
        .strip_prefix(magic.as_slice())
        .ok_or_else(|| SealError::Corrupt("unknown file format".into()))?;
    if rest.len() < NONCE_LEN {
        return Err(SealError::Corrupt("truncated".into()));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| SealError::Corrupt("bad nonce".into()))?;
    let plaintext = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| SealError::WrongKey)?;
    Ok(Zeroizing::new(plaintext))
}

/// The device's whole state, sealed under `key`.
pub fn seal_state(key: &[u8], crypto: &DeviceCrypto) -> Result<Vec<u8>, SealError> {
    let plaintext = Zeroizing::new(
        serde_json::to_vec(&crypto.to_snapshot()).map_err(|e| SealError::Corrupt(e.to_string()))?,
    );
    seal(key, STATE_MAGIC, STATE_AAD, &plaintext)
}

/// A device's state from [`seal_state`]'s bytes.
pub fn open_state(key: &[u8], bytes: &[u8]) -> Result<DeviceCrypto, SealError> {
    let plaintext = unseal(key, STATE_MAGIC, STATE_AAD, bytes)?;
    let snapshot: Snapshot =
        serde_json::from_slice(&plaintext).map_err(|e| SealError::Corrupt(e.to_string()))?;
    Ok(DeviceCrypto::from_snapshot(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_state_opens_with_its_key_only() {
        let mut device = DeviceCrypto::new("u1", "d1");
        device.generate_one_time_keys(3);
        let key = generate_key();
        let bytes = seal_state(key.as_slice(), &device).unwrap();
        assert!(bytes.starts_with(b"CCS1"));
        let back = open_state(key.as_slice(), &bytes).unwrap();
        assert_eq!(back.identity_key(), device.identity_key());
        assert_eq!(back.device_id(), "d1");

        let other = generate_key();
        assert_eq!(
            open_state(other.as_slice(), &bytes).unwrap_err(),
            SealError::WrongKey
        );
        assert!(matches!(
            open_state(key.as_slice(), &bytes[..10]).unwrap_err(),
            SealError::Corrupt(_)
        ));
        assert_eq!(
            open_state(&[1, 2, 3], &bytes).unwrap_err(),
            SealError::BadKey
        );
    }
}
