//! History on a new linked device. A companion cannot read what was sent before it was linked
//! (Megolm keys are shared from their current index on), so when the primary device approves a
//! companion it sends it a **history bundle**: its own recorded history ([`HistoryEntry`]), per
//! chat the newest messages of the last [`MAX_AGE_DAYS`] days, at most [`MAX_PER_CHAT`], as
//! JSON encrypted and uploaded exactly like a media file ([`crate::media`]: AES-256-GCM under a
//! fresh key per part, SHA-256 of the ciphertext), and one Olm device message
//! ([`HistoryOffer`], `{"t":"historyBundle"}`) to that device only, with the parts' keys.
//!
//! The receiver accepts an offer only from a device of its own account that the server lists
//! as the primary (the Olm envelope binds sender and recipient, so the server cannot relabel
//! it); it downloads each part (the uploader's account may download its own uploads), checks
//! the digest, decrypts, checks the bundle names its account, and merges the entries into its
//! history marked [`HistoryEntry::synced`]. Anything wrong refuses the whole bundle and leaves
//! the existing history as it was. The server sees only ciphertext: an upload and a device
//! message.

use crate::ClientError;
use crate::history::HistoryEntry;
use crate::media::{self, MAX_FILE_BYTES, MediaPayload};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The device message's and the bundle's `t`.
pub const KIND: &str = "historyBundle";
/// The format version of both.
pub const VERSION: u32 = 1;
/// Messages older than this many days are not sent.
pub const MAX_AGE_DAYS: i64 = 90;
/// At most this many messages per chat (the newest).
pub const MAX_PER_CHAT: usize = 1000;
/// At most this many uploads per bundle (each at most [`MAX_FILE_BYTES`]): bounds what a
/// receiver downloads (128 MiB) and keeps the offer far under the 16,384-character device
/// message limit.
pub const MAX_PARTS: usize = 8;

/// What goes into a bundle and how it is cut (tests make them small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Oldest message age.
    pub max_age: chrono::Duration,
    /// Newest messages kept per chat.
    pub per_chat: usize,
    /// Plaintext bytes per uploaded part.
    pub part_bytes: usize,
    /// Most parts.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_age: chrono::Duration::days(MAX_AGE_DAYS),
            per_chat: MAX_PER_CHAT,
            part_bytes: MAX_FILE_BYTES as usize,
            max_parts: MAX_PARTS,
        }
    }
}

/// One uploaded part of a bundle: what [`crate::media::MediaPayload`] says of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundlePart {
    /// The media id to download.
    pub media_id: String,
    /// The AES-256 key, base64.
    pub key: String,
    /// The AES-GCM nonce, base64.
    pub nonce: String,
    /// SHA-256 of the ciphertext, hex.
    pub sha256: String,
    /// Plaintext bytes.
    pub size: u64,
}

/// The device message (the plaintext inside its Olm envelope) that offers a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryOffer {
    /// [`KIND`].
    pub t: String,
    /// [`VERSION`].
    pub v: u32,
    /// The parts, in order: their plaintexts joined are the bundle's JSON.
    pub parts: Vec<BundlePart>,
    /// How many messages the bundle holds.
    pub messages: u64,
    /// In how many chats.
    pub chats: u64,
}

impl HistoryOffer {
    /// Reads an offer from a device message's decrypted plaintext; `None` if it is not one.
    pub fn parse(plaintext: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(plaintext)
            .ok()
            .filter(|o| o.t == KIND && o.v == VERSION)
    }

    /// Refuses an offer no sender of this client would make: no parts, too many, or a part
    /// larger than an upload can be.
    pub fn check(&self) -> Result<(), ClientError> {
        if self.parts.is_empty() || self.parts.len() > MAX_PARTS {
            return Err(bundle_err(format!(
                "a history bundle has 1 to {MAX_PARTS} parts, not {}",
                self.parts.len()
            )));
        }
        if self
            .parts
            .iter()
            .any(|p| p.size == 0 || p.size > MAX_FILE_BYTES)
        {
            return Err(bundle_err("a history bundle part has an impossible size"));
        }
        Ok(())
    }
}

/// An offer that came from this account's primary device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedOffer {
    /// The sending device (the primary).
    pub sender_device: String,
    /// What it offered.
    pub offer: HistoryOffer,
}

/// The bundle itself (the JSON that is encrypted and uploaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// [`KIND`].
    pub t: String,
    /// [`VERSION`].
    pub v: u32,
    /// The account whose history it is: a receiver refuses another's.
    pub user_id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The messages, in (session, seq) order.
    pub entries: Vec<HistoryEntry>,
}

/// A bundle encrypted for upload: one ciphertext per part, and the offer without media ids
/// (the uploads give them).
pub struct Sealed {
    /// `(ciphertext, part)`: the part's `media_id` is empty until it is uploaded.
    pub parts: Vec<(Vec<u8>, BundlePart)>,
    /// Messages in the bundle.
    pub messages: u64,
    /// Chats in the bundle.
    pub chats: u64,
}

impl Sealed {
    /// The offer, once every part's media id is set.
    pub fn offer(&self) -> HistoryOffer {
        HistoryOffer {
            t: KIND.into(),
            v: VERSION,
            parts: self.parts.iter().map(|(_, p)| p.clone()).collect(),
            messages: self.messages,
            chats: self.chats,
        }
    }
}

fn bundle_err(msg: impl Into<String>) -> ClientError {
    ClientError::Media(format!("history bundle: {}", msg.into()))
}

/// What of `entries` goes into a bundle made at `now`: per chat, the newest `per_chat` of the
/// messages sent within `max_age` (an entry whose time cannot be read is left out), in
/// (session, seq) order.
pub fn select(entries: &[HistoryEntry], now: DateTime<Utc>, limits: &Limits) -> Vec<HistoryEntry> {
    let oldest = now - limits.max_age;
    let mut by_chat: BTreeMap<&str, Vec<&HistoryEntry>> = BTreeMap::new();
    for e in entries {
        let recent =
            DateTime::parse_from_rfc3339(&e.sent_at).is_ok_and(|t| t.with_timezone(&Utc) >= oldest);
        if recent {
            by_chat.entry(e.session_id.as_str()).or_default().push(e);
        }
    }
    let mut out = Vec::new();
    for (_, mut list) in by_chat {
        list.sort_by(|a, b| (a.seq, &a.msg_id).cmp(&(b.seq, &b.msg_id)));
        let skip = list.len().saturating_sub(limits.per_chat);
        out.extend(list.into_iter().skip(skip).cloned());
    }
    out
}

fn chats(entries: &[HistoryEntry]) -> u64 {
    entries
        .iter()
        .map(|e| e.session_id.as_str())
        .collect::<BTreeSet<_>>()
        .len() as u64
}

/// Selects ([`select`]) and encrypts `entries` as `user_id`'s bundle. If it would need more
/// than `max_parts` parts the oldest messages (of all chats) are dropped until it fits.
pub fn seal(
    user_id: &str,
    entries: &[HistoryEntry],
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Sealed, ClientError> {
    let mut chosen = select(entries, now, limits);
    let capacity = limits.part_bytes.saturating_mul(limits.max_parts);
    let json = loop {
        let bundle = Bundle {
            t: KIND.into(),
            v: VERSION,
            user_id: user_id.to_owned(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            entries: chosen,
        };
        let json =
            zeroize::Zeroizing::new(serde_json::to_vec(&bundle).expect("a bundle serialises"));
        chosen = bundle.entries;
        if json.len() <= capacity {
            break json;
        }
        if chosen.is_empty() {
            return Err(bundle_err("the parts are too small for an empty bundle"));
        }
        // Drop the oldest tenth (at least one) and try again.
        let mut by_age: Vec<usize> = (0..chosen.len()).collect();
        by_age.sort_by(|&a, &b| chosen[a].sent_at.cmp(&chosen[b].sent_at));
        let drop: BTreeSet<usize> = by_age
            .into_iter()
            .take((chosen.len() / 10).max(1))
            .collect();
        chosen = chosen
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, e)| e)
            .collect();
    };
    let mut parts = Vec::new();
    for chunk in json.chunks(limits.part_bytes.max(1)) {
        let enc = media::encrypt(chunk)?;
        parts.push((
            enc.ciphertext,
            BundlePart {
                media_id: String::new(),
                key: enc.key,
                nonce: enc.nonce,
                sha256: enc.sha256,
                size: chunk.len() as u64,
            },
        ));
    }
    Ok(Sealed {
        parts,
        messages: chosen.len() as u64,
        chats: chats(&chosen),
    })
}

/// Opens a bundle from its downloaded parts (in the offer's order): checks each part's digest
/// and size and decrypts it ([`crate::media::decrypt`]), then checks that the bundle is
/// `user_id`'s. The entries come back marked [`HistoryEntry::synced`].
pub fn open(
    offer: &HistoryOffer,
    user_id: &str,
    ciphertexts: &[Vec<u8>],
) -> Result<Vec<HistoryEntry>, ClientError> {
    offer.check()?;
    if ciphertexts.len() != offer.parts.len() {
        return Err(bundle_err("not every part was downloaded"));
    }
    let mut json = zeroize::Zeroizing::new(Vec::new());
    for (part, ciphertext) in offer.parts.iter().zip(ciphertexts) {
        let plain = zeroize::Zeroizing::new(media::decrypt(&as_media(part), ciphertext)?);
        json.extend_from_slice(&plain);
    }
    let bundle: Bundle = serde_json::from_slice(&json)
        .map_err(|e| bundle_err(format!("not a history bundle: {e}")))?;
    if bundle.t != KIND || bundle.v != VERSION {
        return Err(bundle_err("not a version 1 history bundle"));
    }
    if bundle.user_id != user_id {
        return Err(bundle_err("the bundle is another account's history"));
    }
    Ok(bundle
        .entries
        .into_iter()
        .map(|mut e| {
            e.synced = true;
            e
        })
        .collect())
}

/// A part as the media code reads a file's descriptor.
pub fn as_media(part: &BundlePart) -> MediaPayload {
    MediaPayload {
        v: media::PAYLOAD_VERSION,
        t: "media".into(),
        media_id: part.media_id.clone(),
        key: part.key.clone(),
        nonce: part.nonce.clone(),
        sha256: part.sha256.clone(),
        size: part.size,
        content_type: media::UPLOAD_CONTENT_TYPE.into(),
        file_name: None,
        caption: None,
    }
}

/// How a bundle went: messages and chats in it, and how many were new to this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Messages in the bundle.
    pub messages: usize,
    /// Chats in the bundle.
    pub chats: usize,
    /// Messages this device did not have.
    pub added: usize,
}

#[cfg(feature = "native")]
mod native;

#[cfg(feature = "native")]
pub use native::{Sent, import};

#[cfg(test)]
mod tests;
