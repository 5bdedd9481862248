//! `getSettings`, `updateSettings`, `updateContacts`, `getProfile`: a user's profile, privacy
//! choices and contacts, and the profile as another user may see it.

use super::keys::user_id_param;
use crate::chat::timestamp;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::SessionId;
use crate::ids::UserId;
use crate::ports::{DeviceCredential, LastSeenStore, SessionStore, SettingsStore, UserDirectory};
use crate::protocol::{
    ContactsCount, GetProfileParams, Profile, SettingsReply, UpdateContactsParams,
    UpdateSettingsParams,
};
use crate::settings::{
    Audience, MAX_ABOUT_CHARS, MAX_AVATAR_CHARS, MAX_CONTACTS, MAX_NAME_CHARS, Settings,
};
use std::collections::BTreeSet;

/// What the profile operations need.
pub struct Deps<'a> {
    /// Settings and contacts.
    pub settings: &'a dyn SettingsStore,
    /// Does the user exist?
    pub accounts: &'a dyn UserDirectory,
    /// Online and last seen (`getProfile` only).
    pub last_seen: Option<&'a dyn LastSeenStore>,
    /// Who shares a chat with whom, for the phone number (`getProfile` only).
    pub sessions: Option<&'a dyn SessionStore>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
}

/// Whether `viewer` may see `poster`'s status posts (and their media): the poster's status
/// privacy (its contacts, everyone, or nobody); a poster always sees its own.
pub async fn may_view_statuses(
    settings: &dyn SettingsStore,
    poster: &UserId,
    viewer: &UserId,
) -> Result<bool, ApiError> {
    if poster == viewer {
        return Ok(true);
    }
    if settings.has_blocked(poster, viewer).await? {
        return Ok(false);
    }
    let s = settings_or_default(settings, poster).await?;
    Ok(match s.privacy.status {
        Audience::Everyone => true,
        Audience::Contacts => settings.is_contact(poster, viewer).await?,
        Audience::Nobody => false,
    })
}

/// A user's settings, the defaults filled in.
pub async fn settings_or_default(
    store: &dyn SettingsStore,
    user: &UserId,
) -> Result<Settings, ApiError> {
    Ok(store.settings(user).await?.unwrap_or_default())
}

/// `getSettings`: the caller's own settings, and whether the account has a registration PIN
/// (`registrationPin`: two-step verification on), so that any of its devices can show it.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get_settings(
    deps: &Deps<'_>,
    who: &DeviceCredential,
) -> Result<SettingsReply, ApiError> {
    let (s, pin) =
        futures_util::future::try_join(settings_or_default(deps.settings, &who.user_id), async {
            Ok(deps
                .accounts
                .registration_pin(&who.user_id)
                .await?
                .is_some())
        })
        .await?;
    Ok(SettingsReply {
        settings: s,
        registration_pin: pin,
    })
}

fn checked(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let v = v.trim().to_owned();
    if v.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok((!v.is_empty()).then_some(v))
}

/// `updateSettings`: only the fields given change; `null` or an empty string clears a display
/// field. Everything is validated before anything is written.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn update_settings(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: UpdateSettingsParams,
) -> Result<Settings, ApiError> {
    let mut s = settings_or_default(deps.settings, &who.user_id).await?;
    if let Some(d) = p.display {
        if let Some(name) = d.name {
            s.display.name = checked("display.name", name, MAX_NAME_CHARS)?;
        }
        if let Some(about) = d.about {
            s.display.about = checked("display.about", about, MAX_ABOUT_CHARS)?;
        }
        if let Some(avatar) = d.avatar {
            s.display.avatar = checked("display.avatar", avatar, MAX_AVATAR_CHARS)?;
        }
    }
    if let Some(v) = p.privacy {
        let pr = &mut s.privacy;
        pr.last_seen = v.last_seen.unwrap_or(pr.last_seen);
        pr.profile_photo = v.profile_photo.unwrap_or(pr.profile_photo);
        pr.about = v.about.unwrap_or(pr.about);
        pr.status = v.status.unwrap_or(pr.status);
        pr.read_receipts = v.read_receipts.unwrap_or(pr.read_receipts);
        pr.groups_add = v.groups_add.unwrap_or(pr.groups_add);
    }
    deps.settings.put_settings(&who.user_id, &s).await?;
    Ok(s)
}

fn id_list(field: &str, ids: &[String]) -> Result<BTreeSet<UserId>, ApiError> {
    if ids.len() > MAX_CONTACTS {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("{field} holds at most {MAX_CONTACTS} ids"),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, s)| user_id_param(&format!("{field}[{i}]"), s))
        .collect()
}

/// `updateContacts`: adds then removes (an id in both lists ends up removed); at most
/// [`MAX_CONTACTS`] in all, else `LIMIT_EXCEEDED` and nothing changes. Returns the count.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn update_contacts(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: UpdateContactsParams,
) -> Result<ContactsCount, ApiError> {
    let remove = id_list("remove", &p.remove)?;
    let add: Vec<UserId> = id_list("add", &p.add)?
        .into_iter()
        .filter(|u| !remove.contains(u))
        .collect();
    if add.contains(&who.user_id) {
        return Err(ApiError::bad_request(
            "add: a user cannot be its own contact",
        ));
    }
    let remove: Vec<UserId> = remove.into_iter().collect();
    let count = deps.settings.contact_count(&who.user_id).await?;
    if count + add.len() > MAX_CONTACTS {
        // Near the limit only: count exactly what the call would add and remove.
        let mut after = count;
        for u in &add {
            if !deps.settings.is_contact(&who.user_id, u).await? {
                after += 1;
            }
        }
        for u in &remove {
            if deps.settings.is_contact(&who.user_id, u).await? {
                after -= 1;
            }
        }
        if after > MAX_CONTACTS {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("a user has at most {MAX_CONTACTS} contacts"),
            ));
        }
    }
    deps.settings
        .update_contacts(&who.user_id, &add, &remove, deps.clock.now())
        .await?;
    let count = deps.settings.contact_count(&who.user_id).await?;
    tracing::info!(
        added = add.len(),
        removed = remove.len(),
        count,
        "contacts updated"
    );
    Ok(ContactsCount { count })
}

/// `getProfile`: the display fields the owner's privacy settings let the caller see. A hidden
/// field is left out; an allowed field that is not set is `null`. The name is always shown.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get_profile(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GetProfileParams,
) -> Result<Profile, ApiError> {
    let owner = user_id_param("userId", &p.user_id)?;
    let Some(account) = deps.accounts.user(&owner).await? else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such user"));
    };
    let s = settings_or_default(deps.settings, &owner).await?;
    let pr = &s.privacy;
    let me = owner == who.user_id;
    let audiences = [pr.about, pr.profile_photo, pr.last_seen];
    // Someone the owner blocked sees none of these, whatever the settings say.
    let blocked = !me && deps.settings.has_blocked(&owner, &who.user_id).await?;
    let contact = !me
        && !blocked
        && audiences.contains(&Audience::Contacts)
        && deps.settings.is_contact(&owner, &who.user_id).await?;
    let allowed = |a: Audience| me || (!blocked && a.allows(contact));
    let mut out = Profile {
        user_id: owner.to_string(),
        name: s.display.name.clone(),
        about: allowed(pr.about).then(|| s.display.about.clone()),
        avatar: allowed(pr.profile_photo).then(|| s.display.avatar.clone()),
        online: None,
        last_seen: None,
        phone: None,
    };
    let sessions = super::wired(deps.sessions, "sessions")?;
    if me || shares_a_chat(sessions, &owner, &who.user_id).await? {
        out.phone = Some(account.phone.to_string());
    }
    if allowed(pr.last_seen) {
        let seen = super::wired(deps.last_seen, "last seen")?
            .last_seen(&owner)
            .await?;
        out.online = Some(seen.online);
        out.last_seen = Some(seen.at.map(timestamp));
    }
    Ok(out)
}

/// Whether `a` and `b` are in a chat together: their direct chat (one read), else a group both
/// are members of (both users' memberships, read consistently).
pub async fn shares_a_chat(
    sessions: &dyn SessionStore,
    a: &UserId,
    b: &UserId,
) -> Result<bool, ApiError> {
    if sessions
        .membership(&SessionId::direct(a, b), b)
        .await?
        .is_some()
    {
        return Ok(true);
    }
    let (of_a, of_b) =
        futures_util::future::join(sessions.sessions_of(a), sessions.sessions_of(b)).await;
    let of_a: BTreeSet<SessionId> = of_a?
        .into_iter()
        .map(|m| m.session_id)
        .filter(|s| !s.is_direct())
        .collect();
    Ok(of_b?.iter().any(|m| of_a.contains(&m.session_id)))
}
