//! Identifiers. Users and devices get random ids (never the phone number), so a number can move
//! to a new phone, or be deleted, without rewriting what refers to the user.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::new_v4().simple()))
            }

            /// Wraps an id read from storage or from a trusted request context.
            pub fn from_trusted(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// What logs carry instead of the id: see [`Pseudonym`].
            pub fn pseudonym(&self) -> Pseudonym {
                Pseudonym::of(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A user's or device's id as logs carry it: the first 16 hex digits of HMAC-SHA256 of the id
/// under the process's pseudonym key ([`PSEUDONYM_KEY_ENV`]). The same id always gives the same
/// pseudonym under one key, so one user's requests can be followed through the logs of every
/// function that shares the key, but the logs never hold the id itself (which other stores and
/// the API key directory are keyed by), and without the key a list of user ids cannot be
/// matched to them (an unkeyed hash could be: docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pseudonym(String);

/// The environment variable holding the log pseudonym key (template.yaml's `LogPseudonymKey`).
/// Unset or empty: each process draws a random key at its first pseudonym, so pseudonyms are
/// still unlinkable to ids but no longer match across functions or cold starts.
pub const PSEUDONYM_KEY_ENV: &str = "LOG_PSEUDONYM_KEY";

fn process_key() -> &'static [u8] {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| match std::env::var(PSEUDONYM_KEY_ENV) {
        Ok(k) if !k.is_empty() => k.into_bytes(),
        _ => {
            use rand::RngCore;
            let mut k = vec![0u8; 32];
            rand::rng().fill_bytes(&mut k);
            k
        }
    })
}

impl Pseudonym {
    /// The pseudonym of `id` under the process's key.
    pub fn of(id: &str) -> Self {
        Self::keyed(process_key(), id)
    }

    /// The pseudonym of `id` under `key`.
    pub fn keyed(key: &[u8], id: &str) -> Self {
        use hmac::{Hmac, Mac};
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(b"courier-log-pseudonym\0");
        mac.update(id.as_bytes());
        Self(hex::encode(&mac.finalize().into_bytes()[..8]))
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

id_type!(
    /// A user account; stable across re-registrations of the same phone number.
    UserId,
    "u_"
);
id_type!(
    /// One device of a user (the primary phone or a linked companion), with its own API key.
    DeviceId,
    "d_"
);

/// An API Gateway WebSocket connection id, assigned by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// Wraps the id the gateway gave.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_the_same_id_matches_only_under_the_same_key() {
        let id = "u_0123456789abcdef0123456789abcdef";
        let a = Pseudonym::keyed(b"first secret", id);
        assert_eq!(a, Pseudonym::keyed(b"first secret", id));
        assert_ne!(a, Pseudonym::keyed(b"second secret", id));
        assert_ne!(a, Pseudonym::keyed(b"first secret", "u_other"));
        assert_eq!(a.to_string().len(), 16);
        // Not the unkeyed SHA-256 anyone could compute from a list of user ids.
        use sha2::{Digest, Sha256};
        let unkeyed = Sha256::new()
            .chain_update(b"courier-log-pseudonym\0")
            .chain_update(id.as_bytes())
            .finalize();
        assert_ne!(a.to_string(), hex::encode(&unkeyed[..8]));
    }

    #[test]
    fn generated_ids_are_prefixed_and_unique() {
        let a = UserId::generate();
        let b = UserId::generate();
        assert!(a.as_str().starts_with("u_"));
        assert!(DeviceId::generate().as_str().starts_with("d_"));
        assert_ne!(a, b);
    }
}

/// A chat session: a direct chat (`s_...`, derived from the pair) or a group's session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// The direct session of two users: the same pair, in either order, always gives the same id.
    pub fn direct(a: &UserId, b: &UserId) -> Self {
        use sha2::{Digest, Sha256};
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let digest = Sha256::digest(format!("direct:{lo}:{hi}").as_bytes());
        Self(format!("s_{}", &hex::encode(digest)[..32]))
    }

    /// Parses an id sent by a client: `s_` or `g_` followed by 1 to 64 hex or alphanumerics.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("s_").or_else(|| s.strip_prefix("g_"))?;
        (!rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(s.to_owned()))
    }

    /// Wraps an id read from storage.
    pub fn from_trusted(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Whether this is a one-to-one session (`s_`), whose two members never change; groups are `g_`.
    pub fn is_direct(&self) -> bool {
        self.0.starts_with("s_")
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message: its session and its place in the session's sequence, written `<sessionId>.<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsgId {
    /// The session.
    pub session: SessionId,
    /// Position in the session, from 1.
    pub seq: u64,
}

impl MsgId {
    /// Parses `<sessionId>.<seq>`.
    pub fn parse(s: &str) -> Option<Self> {
        let (session, seq) = s.rsplit_once('.')?;
        let seq: u64 = seq.parse().ok().filter(|n| *n > 0)?;
        Some(Self {
            session: SessionId::parse(session)?,
            seq,
        })
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.session, self.seq)
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[test]
    fn direct_sessions_do_not_depend_on_order_and_differ_per_pair() {
        let (a, b, c) = (UserId::generate(), UserId::generate(), UserId::generate());
        assert_eq!(SessionId::direct(&a, &b), SessionId::direct(&b, &a));
        assert_ne!(SessionId::direct(&a, &b), SessionId::direct(&a, &c));
        assert!(SessionId::parse(SessionId::direct(&a, &b).as_str()).is_some());
    }

    #[test]
    fn message_ids_round_trip_and_reject_garbage() {
        let id = MsgId {
            session: SessionId::from_trusted("s_abc123"),
            seq: 17,
        };
        assert_eq!(id.to_string(), "s_abc123.17");
        assert_eq!(MsgId::parse("s_abc123.17"), Some(id));
        for bad in [
            "", "s_abc", "s_abc.0", "s_abc.-1", "x_abc.1", "s_.1", "s_a b.1", "s_abc.1x",
        ] {
            assert!(MsgId::parse(bad).is_none(), "{bad}");
        }
    }
}
