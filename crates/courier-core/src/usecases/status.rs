//! `postStatus`, `removeStatus`, `viewStatus`, `getStatusViewers`, `getStatusAudience`: status
//! posts (24-hour stories).
//!
//! A status is ciphertext (one Megolm message of the poster's status room, so one copy serves
//! every viewer) that lives until `expiresAt`. Who may see it follows the poster's
//! `privacy.status`: everyone, the poster's contacts, or nobody; the poster always sees its own.
//! A status the caller may not see is never revealed: `viewStatus` answers an empty list, and a
//! status id names only the caller's own statuses (others' are `NOT_FOUND`). Storage deletes
//! expired statuses late (DynamoDB TTL), so every read leaves them out by time.
//!
//! `statusPosted` goes to the live devices of the poster's contacts (unless privacy is nobody:
//! WhatsApp shows statuses only of people in one's address book, so "everyone" notifies contacts
//! too) and to the poster's other devices.

use super::deliver::Deliverer;
use super::device_messages::{is_message_id, new_ids};
use super::keys::user_id_param;
use super::profile::settings_or_default;
use super::session_checks::check_payload;
use crate::chat::timestamp;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::UserId;
use crate::media::MediaRef;
use crate::ports::{DeviceCredential, SettingsStore, Status, StatusStore};
use crate::protocol::{
    AudiencePage, GetStatusAudienceParams, GetStatusViewersParams, PostStatusParams, PostedStatus,
    REPLY_BUDGET_BYTES, RemoveStatusParams, RemovedStatus, StatusItem, StatusViewer, StatusesPage,
    ViewStatusParams, ViewersPage, fit_budget, status_posted_event,
};
use crate::settings::Audience;

/// How long a status lives by default (24 hours); `STATUS_TTL_SECS` overrides it.
pub const DEFAULT_STATUS_TTL_SECS: i64 = 86_400;
/// Most statuses a user may have live at once.
pub const MAX_LIVE_STATUSES: usize = 30;
/// Most attachments on one status.
pub const MAX_STATUS_ATTACHMENTS: usize = 4;
/// Longest media id, in characters.
pub const MAX_MEDIA_ID_CHARS: usize = 128;
/// Largest `getStatusViewers` page.
pub const MAX_VIEWERS_PAGE: usize = 100;
/// `getStatusAudience` page size.
pub const AUDIENCE_PAGE: usize = 1_000;

/// What the status operations need.
pub struct Deps<'a> {
    /// Statuses and their viewers (all but `getStatusAudience`).
    pub statuses: Option<&'a dyn StatusStore>,
    /// The poster's privacy choice and contacts (`postStatus`, `viewStatus`,
    /// `getStatusAudience`).
    pub settings: Option<&'a dyn SettingsStore>,
    /// To send `statusPosted` (only `postStatus` has it).
    pub deliver: Option<Deliverer<'a>>,
    /// To check and attach media (only `postStatus` has it): with it, attachments must be the
    /// poster's own uploaded media, and they become downloadable by the status's viewers.
    pub media: Option<super::media::AttachDeps<'a>>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// How long a new status lives, in seconds.
    pub ttl_secs: i64,
    /// The posting device's token bucket (`postStatus` only; `None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
}

fn status_id_param(s: &str) -> Result<&str, ApiError> {
    if is_message_id(s) {
        Ok(s)
    } else {
        Err(ApiError::bad_request("statusId is not a status id"))
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such status")
}

/// Who is told about (and given the keys to) `poster`'s statuses, the poster left out: its
/// contacts, or nobody. Sorted.
pub async fn audience(deps: &Deps<'_>, poster: &UserId) -> Result<Vec<UserId>, ApiError> {
    let s = settings_or_default(super::wired(deps.settings, "the settings")?, poster).await?;
    if s.privacy.status == Audience::Nobody {
        return Ok(Vec::new());
    }
    let settings = super::wired(deps.settings, "the settings")?;
    let mut users = settings.contacts(poster).await?;
    // Nobody the poster blocked, even a contact.
    let blocked = settings.blocked(poster).await?;
    users.retain(|u| !blocked.contains(u));
    users.sort();
    users.dedup();
    Ok(users)
}

/// `postStatus`: stores the status and tells the audience's live devices. Returns
/// `{statusId, expiresAt}`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym()))]
pub async fn post_status(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: PostStatusParams,
) -> Result<PostedStatus, ApiError> {
    check_payload(&p.payload)?;
    if p.payload.is_empty() {
        return Err(ApiError::bad_request("payload must not be empty"));
    }
    if p.attachments.len() > MAX_STATUS_ATTACHMENTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_STATUS_ATTACHMENTS} attachments"
        )));
    }
    // Before anything is read or written: a refused post stores and announces nothing.
    crate::rate_limit::take(
        deps.throttle.as_ref(),
        &super::session_checks::send_key("postStatus", who),
        "status posts",
        deps.clock.now(),
    )
    .await?;
    let media = match deps.media {
        Some(m) => Some((
            m,
            super::media::check_attachments(m, &who.user_id, &p.attachments).await?,
        )),
        None => {
            for (i, a) in p.attachments.iter().enumerate() {
                if a.is_empty()
                    || a.chars().count() > MAX_MEDIA_ID_CHARS
                    || a.chars().any(char::is_control)
                {
                    return Err(ApiError::bad_request(format!(
                        "attachments[{i}] must be a media id of 1 to {MAX_MEDIA_ID_CHARS} characters"
                    )));
                }
            }
            None
        }
    };
    let now = deps.clock.now();
    let expires_at = now + chrono::Duration::seconds(deps.ttl_secs);
    if let Some((m, ids)) = &media {
        super::media::check_status_attachments(*m, ids, expires_at).await?;
    }
    // Counted before the write: two posts racing at the limit may both pass (then 31 live).
    let (live, _) = super::wired(deps.statuses, "the statuses")?
        .live_statuses(&who.user_id, now, None, MAX_LIVE_STATUSES)
        .await?;
    if live.len() >= MAX_LIVE_STATUSES {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("a user has at most {MAX_LIVE_STATUSES} live statuses"),
        ));
    }
    let status = Status {
        user_id: who.user_id.clone(),
        status_id: new_ids(now, 1).remove(0),
        device_id: who.device_id.clone(),
        payload: p.payload,
        attachments: p.attachments,
        posted_at: now,
        expires_at,
    };
    if let Some((m, ids)) = &media {
        // Referenced before the status is stored, like a message's attachments: a failed post
        // leaves a reference to a status that never existed, which lets nobody in.
        let place = MediaRef::Status {
            poster: who.user_id.clone(),
            status_id: status.status_id.clone(),
        };
        super::media::attach_to_status(*m, ids, &place, expires_at).await?;
    }
    super::wired(deps.statuses, "the statuses")?
        .put_status(&status)
        .await?;
    if let Some(deliver) = &deps.deliver {
        let mut users = audience(deps, &who.user_id).await?;
        users.push(who.user_id.clone());
        // The status is stored: a failed notification is logged, not the post's failure
        // (devices that missed it see the status with their next viewStatus).
        match deliver
            .deliver(
                &users,
                Some(&who.device_id),
                &status_posted_event(&status),
                None,
            )
            .await
        {
            Ok(r) => tracing::info!(
                audience = users.len() - 1,
                posted = r.posted,
                "status posted"
            ),
            Err(e) => tracing::warn!(error = %e, "statusPosted not delivered to every device"),
        }
    }
    Ok(PostedStatus {
        status_id: status.status_id,
        expires_at: timestamp(status.expires_at),
    })
}

/// `removeStatus`: deletes one of the caller's live statuses and its viewers.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn remove_status(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: RemoveStatusParams,
) -> Result<RemovedStatus, ApiError> {
    let id = status_id_param(&p.status_id)?;
    let now = deps.clock.now();
    if super::wired(deps.statuses, "the statuses")?
        .status(&who.user_id, id, now)
        .await?
        .is_none()
    {
        return Err(not_found());
    }
    super::wired(deps.statuses, "the statuses")?
        .remove_status(&who.user_id, id)
        .await?;
    Ok(RemovedStatus { removed: true })
}

/// `viewStatus`: `{userId, statuses, hasMore}`, the live statuses of `userId` the caller may
/// see, oldest first, as many as fit [`REPLY_BUDGET_BYTES`] (continue with `after`). Each one
/// returned is recorded as viewed by the caller (unless it is the poster).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn view_status(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: ViewStatusParams,
) -> Result<StatusesPage, ApiError> {
    let poster = user_id_param("userId", &p.user_id)?;
    let after = p.after.as_deref().map(status_id_param).transpose()?;
    if !super::profile::may_view_statuses(
        super::wired(deps.settings, "the settings")?,
        &poster,
        &who.user_id,
    )
    .await?
    {
        return Ok(StatusesPage {
            user_id: poster.to_string(),
            statuses: Vec::new(),
            has_more: false,
        });
    }
    let now = deps.clock.now();
    let (mut shown, has_more) = super::wired(deps.statuses, "the statuses")?
        .live_statuses(&poster, now, after, MAX_LIVE_STATUSES)
        .await?;
    let (out, cut) = fit_budget(shown.iter().map(StatusItem::from), REPLY_BUDGET_BYTES);
    shown.truncate(out.len());
    let has_more = has_more || cut;
    if poster != who.user_id && !shown.is_empty() {
        super::wired(deps.statuses, "the statuses")?
            .record_views(&poster, &shown, &who.user_id, now)
            .await?;
    }
    Ok(StatusesPage {
        user_id: poster.to_string(),
        statuses: out,
        has_more,
    })
}

/// `getStatusViewers`: `{statusId, viewers: [{userId, viewedAt}], hasMore}` of one of the
/// caller's live statuses, by viewer id.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get_status_viewers(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GetStatusViewersParams,
) -> Result<ViewersPage, ApiError> {
    let id = status_id_param(&p.status_id)?;
    let after = p
        .after
        .as_deref()
        .map(|a| user_id_param("after", a))
        .transpose()?;
    let limit = match p.limit {
        None => MAX_VIEWERS_PAGE,
        Some(n) if (1..=MAX_VIEWERS_PAGE as u32).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "limit must be 1 to {MAX_VIEWERS_PAGE}"
            )));
        }
    };
    let now = deps.clock.now();
    if super::wired(deps.statuses, "the statuses")?
        .status(&who.user_id, id, now)
        .await?
        .is_none()
    {
        return Err(not_found());
    }
    let (views, has_more) = super::wired(deps.statuses, "the statuses")?
        .viewers(&who.user_id, id, after.as_ref(), limit)
        .await?;
    let viewers = views
        .iter()
        .map(|v| StatusViewer {
            user_id: v.viewer.to_string(),
            viewed_at: timestamp(v.viewed_at),
        })
        .collect();
    Ok(ViewersPage {
        status_id: id.to_owned(),
        viewers,
        has_more,
    })
}

/// `getStatusAudience`: `{userIds, hasMore}`, who besides the caller may see its statuses and is
/// told of them (its contacts, or nobody), by id, [`AUDIENCE_PAGE`] at a time: the client shares
/// its status room key with their devices.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get_status_audience(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GetStatusAudienceParams,
) -> Result<AudiencePage, ApiError> {
    let after = p
        .after
        .as_deref()
        .map(|a| user_id_param("after", a))
        .transpose()?;
    let users = audience(deps, &who.user_id).await?;
    let mut rest = users
        .into_iter()
        .filter(|u| after.as_ref().is_none_or(|a| u > a));
    let page = rest
        .by_ref()
        .take(AUDIENCE_PAGE)
        .map(|u| u.to_string())
        .collect();
    Ok(AudiencePage {
        user_ids: page,
        has_more: rest.next().is_some(),
    })
}
