//! Trust on first use: the identity key first seen for each device is pinned, and a different
//! one is an error until the user accepts it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vodozemac::Curve25519PublicKey;

use super::CryptoError;

/// What [`TrustStore::observe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustOutcome {
    /// The device was unknown: its key is now pinned.
    FirstUse,
    /// The key is the pinned one.
    Known,
}

/// The pinned Curve25519 identity key of every (user, device) this device has talked to.
///
/// Keys are compared in canonical (unpadded base64) form, so two spellings of one key match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStore {
    /// user → device → identity key.
    pins: BTreeMap<String, BTreeMap<String, String>>,
    /// user → (primary device, its identity key): the account's identity. A user who
    /// registers the number again (a new phone, or someone else with the number) has a new
    /// primary device with a new id, which per-device pins alone would take as a new device.
    #[serde(default)]
    primaries: BTreeMap<String, (String, String)>,
}

pub(crate) fn canonical_key(key: &str) -> Result<String, CryptoError> {
    Curve25519PublicKey::from_base64(key)
        .map(|k| k.to_base64())
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pinned key of a device, if any.
    pub fn pinned(&self, user: &str, device: &str) -> Option<&str> {
        self.pins.get(user)?.get(device).map(String::as_str)
    }

    /// Checks a key without pinning it: `Ok(true)` if it is the pinned one, `Ok(false)` if
    /// nothing is pinned for the device, [`CryptoError::IdentityChanged`] if another key is.
    pub fn check(&self, user: &str, device: &str, key: &str) -> Result<bool, CryptoError> {
        let key = canonical_key(key)?;
        match self.pinned(user, device) {
            None => Ok(false),
            Some(old) if old == key => Ok(true),
            Some(old) => Err(CryptoError::IdentityChanged {
                user: user.to_owned(),
                device: device.to_owned(),
                old: old.to_owned(),
                new: key,
            }),
        }
    }

    /// Pins the key if the device is new; refuses a key different from the pinned one.
    pub fn observe(
        &mut self,
        user: &str,
        device: &str,
        key: &str,
    ) -> Result<TrustOutcome, CryptoError> {
        if self.check(user, device, key)? {
            return Ok(TrustOutcome::Known);
        }
        self.pin(user, device, canonical_key(key)?);
        Ok(TrustOutcome::FirstUse)
    }

    /// Trusts a new key for a device (after the user compared safety numbers, or chose to),
    /// replacing the pin. Returns the key it replaces.
    pub fn accept_new_identity(
        &mut self,
        user: &str,
        device: &str,
        key: &str,
    ) -> Result<Option<String>, CryptoError> {
        let key = canonical_key(key)?;
        Ok(self.pin(user, device, key))
    }

    /// The pinned primary device of a user and its key, if any.
    pub fn pinned_primary(&self, user: &str) -> Option<(&str, &str)> {
        self.primaries
            .get(user)
            .map(|(d, k)| (d.as_str(), k.as_str()))
    }

    /// Checks a user's primary device without pinning it: `Ok(true)` if it is the pinned one
    /// with the pinned key, `Ok(false)` if none is pinned, [`CryptoError::IdentityChanged`]
    /// (naming the new device) if the account has another primary device or key.
    pub fn check_primary(&self, user: &str, device: &str, key: &str) -> Result<bool, CryptoError> {
        let key = canonical_key(key)?;
        match self.primaries.get(user) {
            None => Ok(false),
            Some((d, k)) if d == device && *k == key => Ok(true),
            Some((_, old)) => Err(CryptoError::IdentityChanged {
                user: user.to_owned(),
                device: device.to_owned(),
                old: old.clone(),
                new: key,
            }),
        }
    }

    /// Pins a user's primary device on first sight; refuses another one after that.
    pub fn observe_primary(
        &mut self,
        user: &str,
        device: &str,
        key: &str,
    ) -> Result<TrustOutcome, CryptoError> {
        if self.check_primary(user, device, key)? {
            return Ok(TrustOutcome::Known);
        }
        self.primaries
            .insert(user.to_owned(), (device.to_owned(), canonical_key(key)?));
        Ok(TrustOutcome::FirstUse)
    }

    /// Trusts a user's new primary device (after the user accepted the change).
    pub fn accept_new_primary(
        &mut self,
        user: &str,
        device: &str,
        key: &str,
    ) -> Result<(), CryptoError> {
        self.primaries
            .insert(user.to_owned(), (device.to_owned(), canonical_key(key)?));
        Ok(())
    }

    /// Forgets a device (removed from its account); a later key for it is pinned anew.
    pub fn forget(&mut self, user: &str, device: &str) -> bool {
        let Some(devices) = self.pins.get_mut(user) else {
            return false;
        };
        let removed = devices.remove(device).is_some();
        if devices.is_empty() {
            self.pins.remove(user);
        }
        removed
    }

    fn pin(&mut self, user: &str, device: &str, key: String) -> Option<String> {
        self.pins
            .entry(user.to_owned())
            .or_default()
            .insert(device.to_owned(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        vodozemac::olm::Account::new().curve25519_key().to_base64()
    }

    #[test]
    fn first_key_is_pinned_and_a_different_one_is_refused_until_accepted() {
        let mut trust = TrustStore::new();
        let (k1, k2) = (key(), key());

        assert_eq!(trust.check("bob", "b1", &k1), Ok(false));
        assert_eq!(trust.observe("bob", "b1", &k1), Ok(TrustOutcome::FirstUse));
        assert_eq!(trust.observe("bob", "b1", &k1), Ok(TrustOutcome::Known));
        // Another device of the same user has its own pin.
        assert_eq!(trust.observe("bob", "b2", &k2), Ok(TrustOutcome::FirstUse));

        let err = trust.observe("bob", "b1", &k2).unwrap_err();
        assert_eq!(
            err,
            CryptoError::IdentityChanged {
                user: "bob".into(),
                device: "b1".into(),
                old: k1.clone(),
                new: k2.clone(),
            }
        );
        // Refusing did not re-pin.
        assert_eq!(trust.pinned("bob", "b1"), Some(k1.as_str()));
        assert!(trust.check("bob", "b1", &k2).is_err());

        assert_eq!(
            trust.accept_new_identity("bob", "b1", &k2),
            Ok(Some(k1.clone()))
        );
        assert_eq!(trust.observe("bob", "b1", &k2), Ok(TrustOutcome::Known));
        assert!(matches!(
            trust.observe("bob", "b1", &k1),
            Err(CryptoError::IdentityChanged { .. })
        ));

        assert!(trust.forget("bob", "b1"));
        assert_eq!(trust.observe("bob", "b1", &k1), Ok(TrustOutcome::FirstUse));
    }

    #[test]
    fn padded_and_unpadded_spellings_of_a_key_match_and_garbage_is_refused() {
        let mut trust = TrustStore::new();
        let k = key();
        trust.observe("bob", "b1", &k).unwrap();
        assert_eq!(
            trust.observe("bob", "b1", &format!("{k}=")),
            Ok(TrustOutcome::Known)
        );
        assert!(matches!(
            trust.observe("bob", "b1", "not a key"),
            Err(CryptoError::InvalidKey(_))
        ));
    }
}
