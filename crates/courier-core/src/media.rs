//! Media: what the server knows of an uploaded file (who uploaded it, its declared size and
//! content type) and where it was sent, which decides who may download it.
//!
//! The bytes never pass through a function: clients encrypt a file (AES-256-GCM, key inside the
//! end-to-end encrypted message), upload the ciphertext to S3 with a presigned `PUT` bound to the
//! declared size and content type, and download it with a presigned `GET`. Objects live under
//! `media/<mediaId>`, tagged `courier-media=unattached` until a message attaches them; a bucket
//! lifecycle rule removes unattached ones after a day. Media only status posts refer to is tagged
//! `status` and removed once the statuses have expired; a message's reference keeps it for good.

use crate::error::PortError;
use crate::ids::{SessionId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

/// Largest media file, in bytes (16 MiB, WhatsApp's limit for photos and videos).
pub const MAX_MEDIA_BYTES: u64 = 16 * 1024 * 1024;
/// Longest content type, in characters.
pub const MAX_CONTENT_TYPE_CHARS: usize = 100;
/// How long a presigned upload stays valid.
pub const UPLOAD_TTL_SECS: u64 = 15 * 60;
/// How long a presigned download stays valid.
pub const DOWNLOAD_TTL_SECS: u64 = 15 * 60;
/// The object tag the lifecycle rule `ExpireUnattachedMedia` acts on.
pub const TAG_KEY: &str = "courier-media";
/// Tag value of an upload no message refers to yet (expired after a day).
pub const TAG_UNATTACHED: &str = "unattached";
/// Tag value once a message refers to it (kept).
pub const TAG_ATTACHED: &str = "attached";
/// Tag value while only status posts refer to it: the lifecycle rule `ExpireStatusMedia` removes
/// it [`STATUS_MEDIA_OBJECT_DAYS`] after it was uploaded, when the statuses are long gone.
pub const TAG_STATUS: &str = "status";
/// Days after upload at which `ExpireStatusMedia` removes media only statuses refer to (S3
/// counts lifecycle days from the object's creation and never expires it earlier). A status may
/// therefore attach such media only if its upload is recent enough for the object to outlive
/// the status (see `usecases::media::check_status_attachments`).
pub const STATUS_MEDIA_OBJECT_DAYS: i64 = 3;
/// How long an upload record stays after the last status referring to it has expired (a day:
/// a late `getMediaDownload` of a just-expired status is refused by the status check, not by a
/// missing record).
pub const STATUS_RECORD_GRACE_SECS: i64 = 86_400;
/// How long the record of an upload nothing refers to is kept (2 days): its object is removed
/// by the lifecycle rule after a day, and an upload without its object can never be attached,
/// so the record is of no use after that. Attaching keeps it for as long as the references.
pub const UNATTACHED_RECORD_SECS: i64 = 2 * 86_400;

/// A media file: `m_` and 32 lowercase hex digits, random.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MediaId(String);

impl MediaId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(format!("m_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Parses an id sent by a client.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("m_")?;
        (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    /// Wraps an id read from storage.
    pub fn from_trusted(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The S3 key of its object.
    pub fn object_key(&self) -> String {
        format!("media/{}", self.0)
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a media file was sent; each place lets its readers download it. An enum so that other
/// places (a status post, say) can be added without changing the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaRef {
    /// Attached to a message of a session: the members who were there for that message may
    /// download it. Members read only from their join point, so a member who joined after
    /// `seq` may not fetch what was sent before (nor could they read the message that carries
    /// the media's key).
    Session {
        /// The session.
        session: SessionId,
        /// The message's sequence number; `None` for a reference stored before references named
        /// their message (`SESSION#<sessionId>`), which lets any member download, as it did then.
        seq: Option<u64>,
    },
    /// Attached to a status post: while it is live, those the poster's privacy setting lets see
    /// it may download it.
    Status {
        /// The poster.
        poster: UserId,
        /// The status.
        status_id: String,
    },
}

impl MediaRef {
    /// A stable string form, for storage keys (`SESSION#<sessionId>#<seq>`: one per message, so
    /// a retried send stores the same key again).
    pub fn key(&self) -> String {
        match self {
            MediaRef::Session {
                session,
                seq: Some(seq),
            } => format!("SESSION#{session}#{seq}"),
            MediaRef::Session { session, seq: None } => format!("SESSION#{session}"),
            MediaRef::Status { poster, status_id } => format!("STATUS#{poster}#{status_id}"),
        }
    }

    /// Reads [`MediaRef::key`] back.
    pub fn from_key(s: &str) -> Option<Self> {
        if let Some(rest) = s.strip_prefix("STATUS#") {
            let (poster, status_id) = rest.split_once('#')?;
            if poster.is_empty() || status_id.is_empty() {
                return None;
            }
            // Written by `key` from ids the server checked.
            return Some(MediaRef::Status {
                poster: UserId::from_trusted(poster),
                status_id: status_id.to_owned(),
            });
        }
        let rest = s.strip_prefix("SESSION#")?;
        // Session ids have no '#'.
        let (session, seq) = match rest.split_once('#') {
            Some((session, seq)) => (session, Some(seq.parse().ok()?)),
            None => (rest, None),
        };
        Some(MediaRef::Session {
            session: SessionId::parse(session)?,
            seq,
        })
    }
}

/// An upload the server handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaUpload {
    /// The file.
    pub media_id: MediaId,
    /// Who asked for the upload (the only user who may attach it).
    pub uploader: UserId,
    /// Declared size in bytes (of the ciphertext); the presigned `PUT` accepts only this size.
    pub size: u64,
    /// Declared content type.
    pub content_type: String,
    /// When the upload was handed out.
    pub created_at: DateTime<Utc>,
}

/// Upload records and references.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records a new upload.
    async fn create(&self, upload: &MediaUpload) -> Result<(), PortError>;
    /// The upload record, if any.
    async fn get(&self, id: &MediaId) -> Result<Option<MediaUpload>, PortError>;
    /// Records that the media was sent to `place` (recording it again changes nothing), and
    /// keeps the upload's record: for good when `until` is `None` (a message), else at least
    /// until `until` (a status that expires then), unless something keeps it for good already.
    async fn add_ref(
        &self,
        id: &MediaId,
        place: &MediaRef,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), PortError>;
    /// Every place the media was sent to.
    async fn refs(&self, id: &MediaId) -> Result<Vec<MediaRef>, PortError>;
    /// Forgets that the media was sent to `place` (a message deleted for everyone), so that
    /// place no longer lets anyone download it; absent, nothing changes.
    async fn remove_ref(&self, id: &MediaId, place: &MediaRef) -> Result<(), PortError>;
}

/// One upload in [`MemoryMedia`]: its record, the places it was sent to, and until when the
/// record is kept (`None`: for good), as DynamoDB's `ttl` says.
type MemoryUpload = (MediaUpload, BTreeSet<MediaRef>, Option<DateTime<Utc>>);

/// [`MediaStore`] in memory, for tests.
#[derive(Default)]
pub struct MemoryMedia(Mutex<BTreeMap<MediaId, MemoryUpload>>);

impl MemoryMedia {
    /// Until when the upload's record is kept: `Some(None)` for good, `None` if there is none.
    pub fn kept_until(&self, id: &MediaId) -> Option<Option<DateTime<Utc>>> {
        self.0.lock().unwrap().get(id).map(|(_, _, until)| *until)
    }
}

#[async_trait]
impl MediaStore for MemoryMedia {
    async fn create(&self, upload: &MediaUpload) -> Result<(), PortError> {
        let mut m = self.0.lock().unwrap();
        if m.contains_key(&upload.media_id) {
            return Err(PortError::Conflict);
        }
        let until = upload.created_at + chrono::Duration::seconds(UNATTACHED_RECORD_SECS);
        m.insert(
            upload.media_id.clone(),
            (upload.clone(), BTreeSet::new(), Some(until)),
        );
        Ok(())
    }

    async fn get(&self, id: &MediaId) -> Result<Option<MediaUpload>, PortError> {
        Ok(self.0.lock().unwrap().get(id).map(|(u, _, _)| u.clone()))
    }

    async fn add_ref(
        &self,
        id: &MediaId,
        place: &MediaRef,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), PortError> {
        if let Some((_, refs, kept)) = self.0.lock().unwrap().get_mut(id) {
            refs.insert(place.clone());
            *kept = match (*kept, until) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
        }
        Ok(())
    }

    async fn refs(&self, id: &MediaId) -> Result<Vec<MediaRef>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(id)
            .map(|(_, r, _)| r.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn remove_ref(&self, id: &MediaId, place: &MediaRef) -> Result<(), PortError> {
        if let Some((_, refs, _)) = self.0.lock().unwrap().get_mut(id) {
            refs.remove(place);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_their_own_shape() {
        let id = MediaId::generate();
        assert_eq!(MediaId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.object_key(), format!("media/{id}"));
        for bad in [
            "",
            "m_",
            "m_xyz",
            "u_0123456789abcdef0123456789abcdef",
            "m_../../etc",
        ] {
            assert_eq!(MediaId::parse(bad), None, "{bad}");
        }
        for seq in [Some(7), None] {
            let r = MediaRef::Session {
                session: SessionId::from_trusted("g_abc"),
                seq,
            };
            assert_eq!(MediaRef::from_key(&r.key()), Some(r));
        }
        assert_eq!(MediaRef::from_key("SESSION#g_abc#x"), None);
    }
}
