//! The device's message history: every message it sent or showed, kept on the device (the
//! server keeps messages only for a while, and only as ciphertext). One file, `history.state`,
//! in the crypto store's directory, encrypted at rest exactly as the crypto state is (the same
//! key file, AES-256-GCM, its own magic `CHS1` and associated data), rewritten atomically.
//! Entries are de-duplicated by message id and kept in (session, seq) order.
//!
//! Without the `native` feature only [`HistoryEntry`] is built (the web client reads history
//! bundles, [`crate::history_bundle`], into its own store).

#[cfg(feature = "native")]
use crate::crypto::store::{CryptoStore, StoreError};
use crate::protocol::{Message, MessageKind, SentMessage};
use serde::{Deserialize, Serialize};
#[cfg(feature = "native")]
use std::collections::BTreeMap;
#[cfg(feature = "native")]
use std::path::Path;

#[cfg(feature = "native")]
const FILE: &str = "history.state";
#[cfg(feature = "native")]
const MAGIC: &[u8; 4] = b"CHS1";
#[cfg(feature = "native")]
const AAD: &[u8] = b"courier-history-v1";

/// One message as this device recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The session.
    pub session_id: String,
    /// The message id (unique).
    pub msg_id: String,
    /// Its position in the session.
    pub seq: u64,
    /// The sending user.
    pub sender: String,
    /// The sending device.
    pub sender_device: String,
    /// When the server stored it.
    pub sent_at: String,
    /// `text`, `media`, `system`...
    #[serde(rename = "type")]
    pub kind: String,
    /// The decrypted text of a text message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The payload of other messages (media descriptions, group changes) as JSON, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// When it disappears (the chat's disappearing timer was on): from then on the history no
    /// longer holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Came in a history bundle from the account's primary device when this device was linked
    /// ([`crate::history_bundle`]), not seen by this device itself: shown as synced from the
    /// phone. Absent (false) in files written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synced: bool,
}

impl HistoryEntry {
    /// A message this device showed (received, or read back).
    pub fn shown(m: &Message) -> Self {
        let kind = m.kind.to_string();
        let (text, payload) = match m.kind {
            MessageKind::Text => (m.text.clone(), None),
            _ => (None, serde_json::from_str(&m.payload).ok()),
        };
        Self {
            session_id: m.session_id.clone(),
            msg_id: m.msg_id.clone(),
            seq: m.seq,
            sender: m.sender.clone(),
            sender_device: m.sender_device.clone(),
            sent_at: m.sent_at.clone(),
            kind,
            text,
            payload,
            expires_at: m.expires_at.clone(),
            synced: false,
        }
    }

    /// A text message this device sent.
    pub fn sent(
        session_id: &str,
        sent: &SentMessage,
        user: &str,
        device: &str,
        text: &str,
    ) -> Self {
        Self {
            session_id: session_id.to_owned(),
            msg_id: sent.msg_id.clone(),
            seq: sent.seq,
            sender: user.to_owned(),
            sender_device: device.to_owned(),
            sent_at: sent.sent_at.clone(),
            kind: MessageKind::Text.to_string(),
            text: Some(text.to_owned()),
            payload: None,
            expires_at: sent.expires_at.clone(),
            synced: false,
        }
    }

    /// Whether it has disappeared by `now` (an expiry that does not parse counts as passed).
    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.expires_at
            .as_deref()
            .is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).map_or(true, |at| at <= now))
    }
}

/// The encrypted history file of one device. See the [module docs](self).
#[cfg(feature = "native")]
#[derive(Debug)]
pub struct HistoryStore {
    store: CryptoStore,
}

#[cfg(feature = "native")]
impl HistoryStore {
    /// Opens the history in a crypto store directory (the key file is created if missing).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Ok(Self {
            store: CryptoStore::open(dir)?,
        })
    }

    /// Every entry that has not disappeared, in (session, seq) order. Disappeared ones are
    /// left out here, and so dropped from the file by the next write.
    pub fn load(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        let Some(bytes) = self.store.load_sealed(FILE, MAGIC, AAD)? else {
            return Ok(Vec::new());
        };
        let all: Vec<HistoryEntry> =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: self.store.state_path().with_file_name(FILE),
                reason: e.to_string(),
            })?;
        let now = chrono::Utc::now();
        Ok(all.into_iter().filter(|e| !e.expired(now)).collect())
    }

    /// Adds entries (one already recorded, by msgId, is kept as it was, unless the new one is
    /// its tombstone); returns how many were new.
    pub fn record(
        &self,
        entries: impl IntoIterator<Item = HistoryEntry>,
    ) -> Result<usize, StoreError> {
        let mut all: BTreeMap<String, HistoryEntry> = self
            .load()?
            .into_iter()
            .map(|e| (e.msg_id.clone(), e))
            .collect();
        let before = all.len();
        let mut erased = false;
        for e in entries {
            // A tombstone (a message since deleted for everyone) replaces what was recorded.
            if e.kind == MessageKind::Deleted.as_str()
                && let Some(old) = all.get_mut(&e.msg_id)
            {
                erased |= old.kind != e.kind;
                *old = e;
                continue;
            }
            all.entry(e.msg_id.clone()).or_insert(e);
        }
        let added = all.len() - before;
        if added == 0 && !erased {
            return Ok(0);
        }
        self.save(all)?;
        Ok(added)
    }

    /// Forgets what a message deleted for everyone said (its text and payload): the entry stays,
    /// as `deleted`, where it was. Returns whether the message was recorded.
    pub fn erase(&self, msg_id: &str) -> Result<bool, StoreError> {
        let mut all: BTreeMap<String, HistoryEntry> = self
            .load()?
            .into_iter()
            .map(|e| (e.msg_id.clone(), e))
            .collect();
        let Some(e) = all.get_mut(msg_id) else {
            return Ok(false);
        };
        e.kind = MessageKind::Deleted.as_str().to_owned();
        e.text = None;
        e.payload = None;
        self.save(all)?;
        Ok(true)
    }

    fn save(&self, all: BTreeMap<String, HistoryEntry>) -> Result<(), StoreError> {
        let mut list: Vec<HistoryEntry> = all.into_values().collect();
        list.sort_by(|a, b| {
            (a.session_id.as_str(), a.seq, a.msg_id.as_str()).cmp(&(
                b.session_id.as_str(),
                b.seq,
                b.msg_id.as_str(),
            ))
        });
        let bytes = zeroize::Zeroizing::new(serde_json::to_vec(&list).expect("entries serialize"));
        self.store.save_sealed(FILE, MAGIC, AAD, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(session: &str, seq: u64, text: &str) -> HistoryEntry {
        HistoryEntry {
            session_id: session.into(),
            msg_id: format!("{session}.{seq}"),
            seq,
            sender: "u_alice".into(),
            sender_device: "d_a".into(),
            sent_at: "2026-11-29T12:00:00.000Z".into(),
            kind: "text".into(),
            text: Some(text.into()),
            payload: None,
            expires_at: None,
            synced: false,
        }
    }

    #[test]
    fn a_message_that_has_disappeared_is_no_longer_in_the_history() {
        let dir = std::env::temp_dir().join(format!("courier-history-{}", uuid::Uuid::new_v4()));
        let h = HistoryStore::open(&dir).unwrap();
        let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
        let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let gone = HistoryEntry {
            expires_at: Some(past),
            ..entry("s1", 1, "gone")
        };
        let later = HistoryEntry {
            expires_at: Some(future),
            ..entry("s1", 2, "later")
        };
        h.record([gone, later, entry("s1", 3, "kept")]).unwrap();
        let texts: Vec<_> = h.load().unwrap().into_iter().map(|e| e.text).collect();
        assert_eq!(texts, [Some("later".into()), Some("kept".into())]);
        // The next write leaves it out of the file too.
        h.record([entry("s1", 4, "next")]).unwrap();
        let raw = h.store.load_sealed(FILE, MAGIC, AAD).unwrap().unwrap();
        let stored: Vec<HistoryEntry> = serde_json::from_slice(&raw).unwrap();
        assert_eq!(stored.len(), 3, "{stored:?}");
        assert!(stored.iter().all(|e| e.text.as_deref() != Some("gone")));
    }

    #[test]
    fn entries_are_deduplicated_ordered_and_encrypted_at_rest() {
        let dir = std::env::temp_dir().join(format!("courier-history-{}", uuid::Uuid::new_v4()));
        let h = HistoryStore::open(&dir).unwrap();
        assert!(h.load().unwrap().is_empty());
        assert_eq!(
            h.record([entry("s2", 1, "b"), entry("s1", 2, "the hidden words")])
                .unwrap(),
            2
        );
        let mut changed = entry("s1", 2, "something else");
        changed.sender = "u_mallory".into();
        assert_eq!(h.record([entry("s1", 1, "a"), changed]).unwrap(), 1);
        let all = h.load().unwrap();
        let order: Vec<_> = all.iter().map(|e| e.msg_id.as_str()).collect();
        assert_eq!(order, ["s1.1", "s1.2", "s2.1"]);
        assert_eq!(
            all[1].text.as_deref(),
            Some("the hidden words"),
            "first record kept"
        );
        assert!(all.iter().all(|e| !e.synced));
        let raw = std::fs::read(dir.join(FILE)).unwrap();
        assert_eq!(&raw[..4], MAGIC);
        assert!(!raw.windows(6).any(|w| w == b"hidden"));
        // Another store's key cannot read it.
        std::fs::remove_file(dir.join("crypto.key")).unwrap();
        std::fs::write(dir.join("crypto.key"), [7u8; 32]).unwrap();
        assert!(HistoryStore::open(&dir).unwrap().load().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entries_written_before_synced_existed_still_load_and_synced_round_trips() {
        let old = r#"{"sessionId":"s1","msgId":"s1.1","seq":1,"sender":"u_a","senderDevice":"d_a","sentAt":"2026-01-01T00:00:00.000Z","type":"text","text":"hi"}"#;
        let e: HistoryEntry = serde_json::from_str(old).unwrap();
        assert!(!e.synced);
        assert!(!serde_json::to_string(&e).unwrap().contains("synced"));
        let mut s = e.clone();
        s.synced = true;
        let back: HistoryEntry = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(back.synced);
    }

    #[test]
    fn a_message_deleted_for_everyone_loses_its_words_but_keeps_its_place() {
        let dir = std::env::temp_dir().join(format!("courier-history-{}", uuid::Uuid::new_v4()));
        let h = HistoryStore::open(&dir).unwrap();
        h.record([entry("s1", 1, "keep me"), entry("s1", 2, "regret this")])
            .unwrap();
        assert!(h.erase("s1.2").unwrap());
        assert!(!h.erase("s1.9").unwrap(), "never recorded");
        let all = h.load().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].text.as_deref(), Some("keep me"));
        assert_eq!(
            (all[1].kind.as_str(), all[1].text.as_deref()),
            ("deleted", None)
        );
        let raw = std::fs::read(dir.join(FILE)).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"regret"));

        // A tombstone read on sync replaces a text recorded before.
        h.record([entry("s1", 3, "also gone")]).unwrap();
        let mut tomb = entry("s1", 3, "");
        tomb.kind = "deleted".into();
        tomb.text = None;
        assert_eq!(h.record([tomb]).unwrap(), 0, "nothing new");
        let all = h.load().unwrap();
        assert_eq!(
            (all[2].kind.as_str(), all[2].text.as_deref()),
            ("deleted", None)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
