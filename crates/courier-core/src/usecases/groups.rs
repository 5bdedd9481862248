//! Groups: `initiateGroupChatSession`, `getGroup`, `addUserToGroup`, `removeUserFromGroup`,
//! `promoteUserToAdmin`, `deleteGroup`.
//!
//! A group is a session (`g_...`, which is also its id) with a record (name, description, member
//! count) and one membership per member, with a role. Every change is written into the session
//! as a `system` message (its payload a [`GroupChange`]), so the fan-out delivers it to every
//! member's devices as a `groupUpdate` event, and a device that was offline reads it in order
//! with the messages. Two notices cannot travel that way, since their recipients are no longer
//! members when the fan-out runs: a removed member's own removal and a deleted group; those are
//! posted to the devices directly (live only).
//!
//! Rules: the creator is admin; 2 to [`MAX_GROUP_MEMBERS`] members; admins add, remove anyone,
//! promote and delete; every member may remove itself (leave); when the last admin leaves, the
//! longest-standing member becomes admin; when the last member leaves, the group is deleted.

use super::deliver::Deliverer;
use super::session_checks::parse_session;
use crate::chat::{
    Draft, MAX_GROUP_DESCRIPTION_CHARS, MAX_GROUP_MEMBERS, MAX_GROUP_NAME_CHARS, Membership, Role,
    timestamp,
};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{SessionId, UserId};
use crate::ports::{
    Added, DeviceCredential, Group, GroupStore, MessageStore, SessionStore, SettingsStore,
    UserDirectory,
};
use crate::protocol::{
    GroupChange, GroupMemberParams, GroupParams, InitiateGroupParams, group_notice,
};
use crate::protocol::{
    GroupCreated, GroupDeleted, GroupInfo, GroupMember, GroupNotice, MemberAdded, MemberPromoted,
    MemberRemoved,
};
use crate::settings::GroupsAdd;
use futures_util::{StreamExt, TryStreamExt, stream};

/// What the group operations need.
pub struct Deps<'a> {
    /// Group records and memberships.
    pub groups: &'a dyn GroupStore,
    /// Memberships (the same items, read as any session's).
    pub sessions: &'a dyn SessionStore,
    /// The group's session, where every change is written.
    pub messages: &'a dyn MessageStore,
    /// Do the users exist?
    pub accounts: &'a dyn UserDirectory,
    /// Who lets whom add them (`groupsAdd`).
    pub settings: &'a dyn SettingsStore,
    /// For the notices that cannot go through the session (removal, deletion), and for the
    /// changes' own delivery.
    pub deliver: Deliverer<'a>,
    /// Where a change delivered by the operation itself records that it was (`None`: the
    /// changes are left to the fan-out, which reads the members when it gets to them, possibly
    /// after a deletion removed them).
    pub log: Option<&'a dyn crate::ports::DeliveryLog>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The daily cap on how often strangers add one user to groups (`None`: no cap).
    pub adds_per_target: Option<crate::rate_limit::StrangerCap<'a>>,
}

/// Counts `adder`'s adding `users` against their caps (before anything is written).
async fn take_adds(deps: &Deps<'_>, adder: &UserId, users: &[UserId]) -> Result<(), ApiError> {
    match &deps.adds_per_target {
        Some(cap) => cap.take(adder, users, deps.clock.now()).await,
        None => Ok(()),
    }
}

/// Refuses with `FORBIDDEN` if one of `users` blocked the caller, or lets only its contacts add
/// it to groups and the caller is not among them: the same answer for both, so a refusal does
/// not tell a block from a privacy setting. Their settings are read in one batch; contact lists
/// only for those who chose `contacts`.
async fn check_groups_add(
    settings: &dyn SettingsStore,
    adder: &UserId,
    users: &[UserId],
) -> Result<(), ApiError> {
    let refused = |u: &UserId| {
        ApiError::new(
            ErrorCode::Forbidden,
            format!("{u} does not let you add them to groups"),
        )
    };
    let mut sorted = users.to_vec();
    sorted.sort();
    for u in &sorted {
        if settings.has_blocked(u, adder).await? {
            return Err(refused(u));
        }
    }
    let mut restricted: Vec<_> = settings
        .settings_of(users)
        .await?
        .into_iter()
        .filter(|(_, s)| s.privacy.groups_add == GroupsAdd::Contacts)
        .map(|(u, _)| u)
        .collect();
    restricted.sort();
    for u in restricted {
        if !settings.is_contact(&u, adder).await? {
            return Err(refused(&u));
        }
    }
    Ok(())
}

fn new_group_id() -> SessionId {
    SessionId::from_trusted(format!("g_{}", uuid::Uuid::new_v4().simple()))
}

fn user_param(s: &str) -> Result<UserId, ApiError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::bad_request(format!("{s:?} is not a user id")));
    }
    Ok(UserId::from_trusted(s))
}

fn group_param(s: &str) -> Result<SessionId, ApiError> {
    let id = parse_session(s)?;
    if id.is_direct() {
        return Err(ApiError::bad_request("groupId is not a group id"));
    }
    Ok(id)
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such group")
}

/// The group and the caller's membership: `NOT_FOUND` for no group and for an outsider alike (an
/// outsider learns nothing, not even that the group exists), and, with `admin`, `FORBIDDEN` for
/// a member who is not an admin.
async fn caller_in(
    deps: &Deps<'_>,
    group: &SessionId,
    who: &UserId,
    admin: bool,
) -> Result<(Group, Membership), ApiError> {
    let g = deps.groups.group(group).await?.ok_or_else(not_found)?;
    let m = deps
        .sessions
        .membership(group, who)
        .await?
        .ok_or_else(not_found)?;
    if admin && m.role != Role::Admin {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only a group admin may do this",
        ));
    }
    Ok((g, m))
}

/// Writes a change into the group's session and delivers it as `groupUpdate` to the members
/// there are now (with [`Deps::log`]; else the fan-out delivers it). Delivered by the operation,
/// a change reaches the members before a later one (a deletion) removes them; the fan-out
/// delivers it again only if this delivery did not finish.
async fn record(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    group: &SessionId,
    update: &str,
    user: &UserId,
) -> Result<GroupNotice, ApiError> {
    let change = GroupChange {
        update: update.to_owned(),
        user_id: user.clone(),
        by: who.user_id.clone(),
    };
    let draft = Draft {
        sender: who.user_id.clone(),
        sender_device: who.device_id.clone(),
        client_msg_id: format!("sys-{}", uuid::Uuid::new_v4().simple()),
        kind: "system".into(),
        payload: serde_json::to_string(&change).expect("a GroupChange serialises"),
        attachments: Vec::new(),
        hidden_from: None,
        disappears: false,
        inline: deps.log.is_some(),
    };
    let appended = deps
        .messages
        .append(group, &draft, deps.clock.now())
        .await?;
    let (msg_id, seq) = match appended {
        crate::chat::Appended::New(m) => {
            let reply = (m.msg_id.clone(), m.seq);
            if let Some(log) = deps.log {
                let out = super::deliver::Outbound {
                    message: *m,
                    members: None,
                };
                // Its outcome is recorded: the fan-out finishes what this did not.
                let _ =
                    super::fan_out::deliver_inline(deps.sessions, &deps.deliver, log, &out).await;
            }
            reply
        }
        crate::chat::Appended::Duplicate { msg_id, seq, .. } => (msg_id, seq),
    };
    Ok(GroupNotice { msg_id, seq })
}

/// Posts a notice to users who will not get it through the session (best effort, live only).
async fn notify(deps: &Deps<'_>, users: &[UserId], group: &SessionId, change: GroupChange) {
    let frame = group_notice(group, &change, &timestamp(deps.clock.now()));
    if let Err(e) = deps.deliver.deliver(users, None, &frame, None).await {
        tracing::warn!(error = %e, "group notice not delivered everywhere");
    }
}

/// `initiateGroupChatSession`: creates the group with the caller as admin.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn initiate(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: InitiateGroupParams,
) -> Result<GroupCreated, ApiError> {
    let name = p.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_GROUP_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "name must be 1 to {MAX_GROUP_NAME_CHARS} characters"
        )));
    }
    let description = p.description.unwrap_or_default();
    if description.chars().count() > MAX_GROUP_DESCRIPTION_CHARS {
        return Err(ApiError::bad_request(format!(
            "description must be at most {MAX_GROUP_DESCRIPTION_CHARS} characters"
        )));
    }
    let mut others: Vec<UserId> = Vec::with_capacity(p.members.len());
    for m in &p.members {
        let u = user_param(m)?;
        if u != who.user_id && !others.contains(&u) {
            others.push(u);
        }
    }
    if others.is_empty() {
        return Err(ApiError::bad_request(
            "a group needs at least one other member",
        ));
    }
    if others.len() + 1 > MAX_GROUP_MEMBERS {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("a group has at most {MAX_GROUP_MEMBERS} members"),
        ));
    }
    // Every member must exist (looked up side by side: up to 256 reads).
    let missing: Vec<UserId> =
        stream::iter(others.iter().cloned())
            .map(|u| async move {
                Ok::<_, ApiError>(deps.accounts.user(&u).await?.is_none().then_some(u))
            })
            .buffer_unordered(16)
            .try_filter_map(|u| async move { Ok(u) })
            .try_collect()
            .await?;
    if let Some(u) = missing.first() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no such user: {u}"),
        ));
    }
    check_groups_add(deps.settings, &who.user_id, &others).await?;
    take_adds(deps, &who.user_id, &others).await?;
    let group = Group {
        session_id: new_group_id(),
        name,
        description,
        created_by: who.user_id.clone(),
        created_at: deps.clock.now(),
        member_count: 0,
    };
    let mut members = vec![(who.user_id.clone(), Role::Admin)];
    members.extend(others.into_iter().map(|u| (u, Role::Member)));
    deps.groups.create_group(&group, &members).await?;
    record(deps, who, &group.session_id, "created", &who.user_id).await?;
    tracing::info!(members = members.len(), "group created");
    Ok(GroupCreated {
        group_id: group.session_id.to_string(),
        session_id: group.session_id.to_string(),
    })
}

/// `getGroup`: the group and its members, for members.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn get(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GroupParams,
) -> Result<GroupInfo, ApiError> {
    let id = group_param(&p.group_id)?;
    let (g, _) = caller_in(deps, &id, &who.user_id, false).await?;
    let mut members = deps.sessions.members(&id).await?;
    members.sort_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)));
    let members = members
        .iter()
        .map(|m| GroupMember {
            user_id: m.user_id.to_string(),
            role: m.role,
            joined_at: timestamp(m.joined_at),
        })
        .collect();
    Ok(GroupInfo {
        group_id: g.session_id.to_string(),
        session_id: g.session_id.to_string(),
        name: g.name,
        description: g.description,
        created_by: g.created_by.to_string(),
        created_at: timestamp(g.created_at),
        members,
    })
}

/// `addUserToGroup` (admins): the new member reads from its join point on.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn add(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GroupMemberParams,
) -> Result<MemberAdded, ApiError> {
    let id = group_param(&p.group_id)?;
    let user = user_param(&p.user_id)?;
    caller_in(deps, &id, &who.user_id, true).await?;
    if deps.accounts.user(&user).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, "no such user"));
    }
    if user != who.user_id {
        check_groups_add(deps.settings, &who.user_id, std::slice::from_ref(&user)).await?;
        take_adds(deps, &who.user_id, std::slice::from_ref(&user)).await?;
    }
    let joined_seq = deps.messages.last(&id).await?.map_or(0, |m| m.seq);
    let now = deps.clock.now();
    match deps
        .groups
        .add_member(&id, &user, joined_seq, MAX_GROUP_MEMBERS as u32, now)
        .await?
    {
        Added::Added => {}
        Added::AlreadyMember => {
            return Ok(MemberAdded {
                added: false,
                notice: None,
            });
        }
        Added::Full => {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("the group already has {MAX_GROUP_MEMBERS} members"),
            ));
        }
        Added::NoGroup => return Err(not_found()),
    }
    let notice = record(deps, who, &id, "memberAdded", &user).await?;
    Ok(MemberAdded {
        added: true,
        notice: Some(notice),
    })
}

/// `removeUserFromGroup`: admins remove anyone, any member removes itself (leaves).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn remove(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GroupMemberParams,
) -> Result<MemberRemoved, ApiError> {
    let id = group_param(&p.group_id)?;
    let user = user_param(&p.user_id)?;
    let leaving = user == who.user_id;
    caller_in(deps, &id, &who.user_id, !leaving).await?;
    leave_or_remove(deps, who, &id, &user).await
}

/// Removes `user` (checked by the caller), hands the group to a new admin if it has none left,
/// and deletes it when nobody is left.
async fn leave_or_remove(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    id: &SessionId,
    user: &UserId,
) -> Result<MemberRemoved, ApiError> {
    if !deps.groups.remove_member(id, user).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "that user is not a member of this group",
        ));
    }
    let change = GroupChange {
        update: "memberRemoved".into(),
        user_id: user.clone(),
        by: who.user_id.clone(),
    };
    notify(deps, std::slice::from_ref(user), id, change).await;
    let rest = deps.sessions.members(id).await?;
    if rest.is_empty() {
        deps.groups.delete_group(id, &[]).await?;
        return Ok(MemberRemoved {
            removed: true,
            notice: None,
            group_deleted: true,
            new_admin: None,
        });
    }
    let mut reply = MemberRemoved {
        removed: true,
        notice: Some(record(deps, who, id, "memberRemoved", user).await?),
        group_deleted: false,
        new_admin: None,
    };
    if !rest.iter().any(|m| m.role == Role::Admin) {
        // The longest-standing member takes over.
        let heir = rest
            .iter()
            .min_by(|a, b| {
                (a.joined_seq, a.joined_at, &a.user_id).cmp(&(
                    b.joined_seq,
                    b.joined_at,
                    &b.user_id,
                ))
            })
            .expect("rest is not empty");
        if deps.groups.set_role(id, &heir.user_id, Role::Admin).await? {
            record(deps, who, id, "promoted", &heir.user_id).await?;
            reply.new_admin = Some(heir.user_id.to_string());
        }
    }
    Ok(reply)
}

/// `promoteUserToAdmin` (admins).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn promote(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GroupMemberParams,
) -> Result<MemberPromoted, ApiError> {
    let id = group_param(&p.group_id)?;
    let user = user_param(&p.user_id)?;
    caller_in(deps, &id, &who.user_id, true).await?;
    let target = deps.sessions.membership(&id, &user).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "that user is not a member of this group",
        )
    })?;
    if target.role == Role::Admin {
        return Ok(MemberPromoted {
            promoted: false,
            notice: None,
        });
    }
    if !deps.groups.set_role(&id, &user, Role::Admin).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "that user is not a member of this group",
        ));
    }
    let notice = record(deps, who, &id, "promoted", &user).await?;
    Ok(MemberPromoted {
        promoted: true,
        notice: Some(notice),
    })
}

/// `deleteGroup` (admins): the group, its record and memberships go; every member's live
/// devices get `groupUpdate` `deleted`; afterwards every group operation answers `NOT_FOUND`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn delete(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: GroupParams,
) -> Result<GroupDeleted, ApiError> {
    let id = group_param(&p.group_id)?;
    caller_in(deps, &id, &who.user_id, true).await?;
    let members: Vec<UserId> = deps
        .sessions
        .members(&id)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    deps.groups.delete_group(&id, &members).await?;
    let change = GroupChange {
        update: "deleted".into(),
        user_id: who.user_id.clone(),
        by: who.user_id.clone(),
    };
    notify(deps, &members, &id, change).await;
    Ok(GroupDeleted { deleted: true })
}

/// A deleted account leaves each of its groups as if it had left itself (admin hand-over
/// included). Returns how many groups it left.
pub async fn leave_all_groups(deps: &Deps<'_>, who: &DeviceCredential) -> Result<usize, ApiError> {
    let mut left = 0;
    for m in deps.sessions.sessions_of(&who.user_id).await? {
        if m.session_id.is_direct() {
            continue;
        }
        match leave_or_remove(deps, who, &m.session_id, &who.user_id).await {
            Ok(_) => left += 1,
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(left)
}
