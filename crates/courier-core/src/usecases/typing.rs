//! `sendTyping`: tell the other members' live devices that the caller is (or stopped) typing.
//!
//! A typing notice is worth something only while the chat is open on both sides, so it is never
//! stored and never pushed: a device that is not connected simply does not see it. It honours the
//! sender's `lastSeen` privacy the way WhatsApp hides "online": a member the sender's setting
//! does not show its presence to gets nothing.

use super::deliver::Deliverer;
use super::profile::settings_or_default;
use super::session_checks::{parse_session, require_member, send_key};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::ids::UserId;
use crate::ports::{DeviceCredential, SessionStore, SettingsStore};
use crate::protocol::{Event, SendTypingParams, TypingSent};
use crate::settings::Audience;

/// Up to how many recipients a `contacts` audience is checked member by member rather than by
/// reading the sender's whole contact list.
const CONTACT_LOOKUPS: usize = 8;

/// What `sendTyping` needs.
pub struct Deps<'a> {
    /// Is the caller a member, who are the others.
    pub sessions: &'a dyn SessionStore,
    /// The sender's privacy setting and contacts.
    pub settings: &'a dyn SettingsStore,
    /// Posts to live connections (never pushes: built without push).
    pub deliver: Deliverer<'a>,
    /// The time, for the rate limit.
    pub clock: &'a dyn Clock,
    /// The sending device's bucket for this operation (`None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
}

/// Posts `typing` to the live devices of the members who may see the sender's presence.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn send_typing(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: SendTypingParams,
) -> Result<TypingSent, ApiError> {
    let session = parse_session(&p.session_id)?;
    crate::rate_limit::take(
        deps.throttle.as_ref(),
        &send_key("sendTyping", who),
        "typing notices",
        deps.clock.now(),
    )
    .await?;
    require_member(deps.sessions, &session, &who.user_id).await?;
    let others: Vec<UserId> = deps
        .sessions
        .members(&session)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .filter(|u| *u != who.user_id)
        .collect();
    let audience = settings_or_default(deps.settings, &who.user_id)
        .await?
        .privacy
        .last_seen;
    let mut to: Vec<UserId> = match audience {
        Audience::Everyone => others,
        Audience::Nobody => Vec::new(),
        // Whichever reads less: a lookup per member for a direct chat or a small group, else
        // the whole contact list once (up to 5,000 items; typing notices are frequent).
        Audience::Contacts if others.len() <= CONTACT_LOOKUPS => {
            let mut to = Vec::with_capacity(others.len());
            for u in others {
                if deps.settings.is_contact(&who.user_id, &u).await? {
                    to.push(u);
                }
            }
            to
        }
        Audience::Contacts => {
            let contacts = deps.settings.contacts(&who.user_id).await?;
            others
                .into_iter()
                .filter(|u| contacts.contains(u))
                .collect()
        }
    };
    // A direct chat's peer who blocked the sender does not see it typing (in a group, as on
    // WhatsApp, a block does not apply).
    if session.is_direct()
        && let [peer] = to.as_slice()
        && deps.settings.has_blocked(peer, &who.user_id).await?
    {
        to.clear();
    }
    if to.is_empty() {
        return Ok(TypingSent {});
    }
    let frame = Event::Typing {
        session_id: session.to_string(),
        user_id: who.user_id.to_string(),
        typing: p.typing,
    }
    .frame();
    // Best effort: a notice that did not arrive is stale a second later, never worth a retry.
    if let Err(e) = deps.deliver.deliver(&to, None, &frame, None).await {
        tracing::warn!(error = %e, "typing notice not delivered everywhere");
    }
    Ok(TypingSent {})
}
