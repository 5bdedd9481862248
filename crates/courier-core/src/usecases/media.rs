//! `createMediaUpload`, `getMediaDownload`, and attaching media to a message (`sendMessage`)
//! or a status (`postStatus`).

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::UserId;
use crate::media::{
    DOWNLOAD_TTL_SECS, MAX_CONTENT_TYPE_CHARS, MAX_MEDIA_BYTES, MediaId, MediaRef, MediaStore,
    MediaUpload, STATUS_MEDIA_OBJECT_DAYS, STATUS_RECORD_GRACE_SECS, TAG_ATTACHED, TAG_KEY,
    TAG_STATUS, TAG_UNATTACHED, UPLOAD_TTL_SECS,
};
use crate::ports::{DeviceCredential, ObjectStore, SessionStore, SettingsStore, StatusStore};
use crate::protocol::{
    CreateMediaUploadParams, GetMediaDownloadParams, MediaDownload, MediaUpload as UploadReply,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What the media operations need.
pub struct Deps<'a> {
    /// Upload records and references.
    pub media: &'a dyn MediaStore,
    /// The bucket.
    pub objects: &'a dyn ObjectStore,
    /// Memberships: who may download (`getMediaDownload` only).
    pub sessions: Option<&'a dyn SessionStore>,
    /// Status posts and their posters' privacy (who may download a status's media); without
    /// them, media attached only to statuses is the uploader's alone.
    pub statuses: Option<StatusLookup<'a>>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The daily byte quota of uploads per user (`None`: unlimited).
    pub upload_quota: Option<crate::rate_limit::QuotaThrottle<'a>>,
}

/// What deciding on a status's media needs: is the status live, and may the caller see it.
#[derive(Clone, Copy)]
pub struct StatusLookup<'a> {
    /// The statuses.
    pub statuses: &'a dyn StatusStore,
    /// The posters' privacy settings and contacts.
    pub settings: &'a dyn SettingsStore,
}

/// What `sendMessage` needs to attach media.
#[derive(Clone, Copy)]
pub struct AttachDeps<'a> {
    /// Upload records and references.
    pub media: &'a dyn MediaStore,
    /// The bucket (is the object there, with the declared size?).
    pub objects: &'a dyn ObjectStore,
}

/// A content type is `type/subtype` (optionally `; parameters`), printable ASCII, at most
/// [`MAX_CONTENT_TYPE_CHARS`]: it becomes a signed header of the upload.
fn check_content_type(ct: &str) -> Result<(), ApiError> {
    let sane = !ct.is_empty()
        && ct.len() <= MAX_CONTENT_TYPE_CHARS
        && ct.bytes().all(|b| (0x20..0x7f).contains(&b))
        && ct
            .split(';')
            .next()
            .and_then(|essence| essence.trim().split_once('/'))
            .is_some_and(|(t, s)| {
                let token = |x: &str| {
                    !x.is_empty()
                        && x.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
                };
                token(t) && token(s)
            });
    if sane {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "contentType must be a media type like image/jpeg, at most {MAX_CONTENT_TYPE_CHARS} characters"
        )))
    }
}

/// The counter of a user's upload bytes in the rate-limit store.
pub fn upload_quota_key(user: &UserId) -> String {
    format!("mediaUploadBytes#account#{user}")
}

/// Parses a media id from a request.
pub fn parse_media(s: &str) -> Result<MediaId, ApiError> {
    MediaId::parse(s).ok_or_else(|| ApiError::bad_request("mediaId is not a media id"))
}

/// `createMediaUpload`: records the upload and returns a presigned `PUT` bound to the declared
/// content type and size, which stores the object tagged unattached.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn create_upload(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: CreateMediaUploadParams,
) -> Result<UploadReply, ApiError> {
    if p.size == 0 {
        return Err(ApiError::bad_request("size must be at least 1 byte"));
    }
    if p.size > MAX_MEDIA_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("media files are at most {MAX_MEDIA_BYTES} bytes (16 MiB)"),
        ));
    }
    check_content_type(&p.content_type)?;
    // Declared sizes are what the presigned PUT accepts, so they bound what can be stored;
    // counted per user (all devices) before anything is recorded or signed.
    if let Some(quota) = &deps.upload_quota {
        quota
            .take(
                &upload_quota_key(&who.user_id),
                p.size,
                "media uploads",
                deps.clock.now(),
            )
            .await?;
    }
    let upload = MediaUpload {
        media_id: MediaId::generate(),
        uploader: who.user_id.clone(),
        size: p.size,
        content_type: p.content_type,
        created_at: deps.clock.now(),
    };
    deps.media.create(&upload).await?;
    let put = deps
        .objects
        .presign_put(
            &upload.media_id.object_key(),
            &upload.content_type,
            upload.size,
            &[(TAG_KEY, TAG_UNATTACHED)],
            Duration::from_secs(UPLOAD_TTL_SECS),
        )
        .await?;
    let headers = put
        .headers
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .collect();
    Ok(UploadReply {
        media_id: upload.media_id.to_string(),
        upload_url: put.url,
        upload_method: put.method,
        upload_headers: headers,
        expires_in_seconds: put.expires_in_seconds,
    })
}

/// Whether `user` may download the media: its uploader, a member of a session who was there for a
/// message it was sent with, or one allowed to see a live status it is attached to.
pub async fn may_download(
    deps: &Deps<'_>,
    upload: &MediaUpload,
    user: &UserId,
) -> Result<bool, ApiError> {
    let (media, sessions) = (deps.media, super::wired(deps.sessions, "the sessions")?);
    if &upload.uploader == user {
        return Ok(true);
    }
    for place in media.refs(&upload.media_id).await? {
        match place {
            MediaRef::Session { session, seq } => {
                // A member reads from their join point on: media sent before it is not theirs.
                if let Some(m) = sessions.membership(&session, user).await?
                    && seq.is_none_or(|seq| seq > m.joined_seq)
                {
                    return Ok(true);
                }
            }
            MediaRef::Status { poster, status_id } => {
                let Some(lookup) = deps.statuses else {
                    continue;
                };
                let live = lookup
                    .statuses
                    .status(&poster, &status_id, deps.clock.now())
                    .await?
                    .is_some();
                if live && super::profile::may_view_statuses(lookup.settings, &poster, user).await?
                {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// `getMediaDownload`: a presigned `GET` for the uploader and the members who can read a message
/// the media was sent with; `FORBIDDEN` for anyone else, `NOT_FOUND` for an unknown id or an object that was
/// never uploaded (or already expired).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get_download(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GetMediaDownloadParams,
) -> Result<MediaDownload, ApiError> {
    let id = parse_media(&p.media_id)?;
    let Some(upload) = deps.media.get(&id).await? else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such media"));
    };
    if !may_download(deps, &upload, &who.user_id).await? {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the uploader, members who can read a message it was sent with and viewers of a live status it is on may download this media",
        ));
    }
    let key = id.object_key();
    if deps.objects.size(&key).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the media was never uploaded, or has expired",
        ));
    }
    let get = deps
        .objects
        .presign_get(&key, Duration::from_secs(DOWNLOAD_TTL_SECS))
        .await?;
    Ok(MediaDownload {
        media_id: id.to_string(),
        download_url: get.url,
        size: upload.size,
        content_type: upload.content_type,
        expires_in_seconds: get.expires_in_seconds,
    })
}

/// Checks the media a message attaches: well-formed, distinct ids, each uploaded by the sender
/// (`FORBIDDEN` otherwise, `NOT_FOUND` if unknown) and stored with its declared size
/// (`BAD_REQUEST` otherwise). Returns the parsed ids.
pub async fn check_attachments(
    deps: AttachDeps<'_>,
    sender: &UserId,
    ids: &[String],
) -> Result<Vec<MediaId>, ApiError> {
    let mut parsed: Vec<MediaId> = Vec::with_capacity(ids.len());
    for s in ids {
        let id = MediaId::parse(s)
            .ok_or_else(|| ApiError::bad_request("attachments must be media ids"))?;
        if parsed.contains(&id) {
            return Err(ApiError::bad_request(
                "attachments must not repeat a media id",
            ));
        }
        parsed.push(id);
    }
    for id in &parsed {
        let Some(upload) = deps.media.get(id).await? else {
            return Err(ApiError::new(ErrorCode::NotFound, format!("no media {id}")));
        };
        if &upload.uploader != sender {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("media {id} was uploaded by someone else; upload it again to send it"),
            ));
        }
        match deps.objects.size(&id.object_key()).await? {
            Some(n) if n == upload.size => {}
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "media {id} does not have its declared size"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "media {id} was not uploaded (or has expired)"
                )));
            }
        }
    }
    Ok(parsed)
}

/// Records that the media was sent to `place` and tags the objects attached, so the lifecycle
/// rule keeps them. Idempotent: a retried send records the same thing again.
pub async fn attach(
    deps: AttachDeps<'_>,
    ids: &[MediaId],
    place: &MediaRef,
) -> Result<(), ApiError> {
    for id in ids {
        deps.media.add_ref(id, place, None).await?;
        deps.objects
            .set_tags(&id.object_key(), &[(TAG_KEY, TAG_ATTACHED)])
            .await?;
    }
    Ok(())
}

/// Whether a message refers to the media (then it is kept for good, tagged `attached`).
async fn in_a_message(media: &dyn MediaStore, id: &MediaId) -> Result<bool, ApiError> {
    Ok(media
        .refs(id)
        .await?
        .iter()
        .any(|r| matches!(r, MediaRef::Session { .. })))
}

/// Checks that media a status attaches will outlive it: media a message refers to is kept for
/// good, any other is removed [`STATUS_MEDIA_OBJECT_DAYS`] after its upload, so its upload must
/// be recent enough (`BAD_REQUEST` otherwise: upload it again). Call after
/// [`check_attachments`].
pub async fn check_status_attachments(
    deps: AttachDeps<'_>,
    ids: &[MediaId],
    expires_at: DateTime<Utc>,
) -> Result<(), ApiError> {
    for id in ids {
        let Some(upload) = deps.media.get(id).await? else {
            return Err(ApiError::new(ErrorCode::NotFound, format!("no media {id}")));
        };
        let removed_at = upload.created_at + chrono::Duration::days(STATUS_MEDIA_OBJECT_DAYS);
        if removed_at >= expires_at {
            continue;
        }
        if !in_a_message(deps.media, id).await? {
            return Err(ApiError::bad_request(format!(
                "media {id} was uploaded too long ago to last as long as a status; upload it again"
            )));
        }
    }
    Ok(())
}

/// Records that the media was posted in the status `place`, which expires at `expires_at`: the
/// records are kept until a day after that, and the objects are tagged `status` (the lifecycle
/// rule `ExpireStatusMedia` removes them) unless a message refers to them too (`attached`,
/// kept). A message attaching the same media meanwhile tags it `attached` after its reference
/// is written; this tags `status` first and reads the references after, so whichever order the
/// two run in, media a message refers to ends up `attached`.
pub async fn attach_to_status(
    deps: AttachDeps<'_>,
    ids: &[MediaId],
    place: &MediaRef,
    expires_at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let until = expires_at + chrono::Duration::seconds(STATUS_RECORD_GRACE_SECS);
    for id in ids {
        deps.media.add_ref(id, place, Some(until)).await?;
        let key = id.object_key();
        deps.objects
            .set_tags(&key, &[(TAG_KEY, TAG_STATUS)])
            .await?;
        if in_a_message(deps.media, id).await? {
            deps.objects
                .set_tags(&key, &[(TAG_KEY, TAG_ATTACHED)])
                .await?;
        }
    }
    Ok(())
}
