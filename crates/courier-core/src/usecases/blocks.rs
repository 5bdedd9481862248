//! `blockUser`, `unblockUser`, `listBlocked` and `reportUser`.
//!
//! A block is one item beside the blocker's contacts ([`crate::ports::BlockList`]); what it
//! changes is enforced where each thing happens: a blocked user's direct messages and
//! handshakes are stored withheld from the blocker (`send_message::withheld_from`), so they
//! are accepted (the block is not revealed) but never delivered, pushed or read; its typing is
//! not shown; the blocker's profile fields, online and last seen, and statuses are hidden from
//! it; and it cannot add the blocker to groups (`FORBIDDEN`, worded as the privacy refusal).
//!
//! A report is stored for moderation as JSON under `reports/` (an object store only the
//! moderation role may read) and blocks the user.

use super::keys::user_id_param;
use super::session_checks::require_member;
use crate::chat::{MAX_PAYLOAD_CHARS, MessageKind, timestamp};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{MsgId, UserId};
use crate::ports::{
    DeviceCredential, MessageStore, ReportStore, SessionStore, SettingsStore, UserDirectory,
};
use crate::protocol::{
    BlockParams, BlockReply, BlockedList, ListBlockedParams, ReportFiled, ReportUserParams,
};
use serde::Serialize;

/// How many users one account may block (a block list is read whole by a status post).
pub const MAX_BLOCKED: usize = 10_000;
/// How many messages a report may attach, as WhatsApp's report does.
pub const MAX_REPORTED_MESSAGES: usize = 5;
/// Reports per account per UTC day: each stores up to 5 texts of 64 K characters for a person
/// to read, so a device's action budget alone would let one account file gigabytes a day.
pub const REPORTS_PER_DAY: crate::rate_limit::Rule = crate::rate_limit::Rule::Window {
    max: 20,
    window_secs: crate::rate_limit::DAY_SECS,
};

/// What the block actions need.
pub struct Deps<'a> {
    /// Block lists (every settings store is one).
    pub settings: &'a dyn SettingsStore,
    /// Does the user exist?
    pub accounts: &'a dyn UserDirectory,
    /// The time a block is recorded.
    pub clock: &'a dyn Clock,
}

/// What `reportUser` needs besides.
pub struct ReportDeps<'a> {
    /// Blocking.
    pub blocks: Deps<'a>,
    /// Is the reporter in the attached messages' chats.
    pub sessions: &'a dyn SessionStore,
    /// The attached messages.
    pub messages: &'a dyn MessageStore,
    /// Where reports go.
    pub reports: &'a dyn ReportStore,
    /// The account's daily budget of reports ([`REPORTS_PER_DAY`]; `None`: unlimited).
    pub budget: Option<crate::rate_limit::Throttle<'a>>,
}

/// `blockUser`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn block_user(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: BlockParams,
) -> Result<BlockReply, ApiError> {
    let user = other_user(deps, who, &p.user_id).await?;
    if !deps.settings.has_blocked(&who.user_id, &user).await?
        && deps.settings.blocked(&who.user_id).await?.len() >= MAX_BLOCKED
    {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BLOCKED} blocked users"
        )));
    }
    deps.settings
        .block(&who.user_id, &user, deps.clock.now())
        .await?;
    Ok(BlockReply {
        user_id: user.to_string(),
        blocked: true,
    })
}

/// `unblockUser`: what was withheld while blocked stays withheld.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn unblock_user(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: BlockParams,
) -> Result<BlockReply, ApiError> {
    let user = user_id_param("userId", &p.user_id)?;
    deps.settings.unblock(&who.user_id, &user).await?;
    Ok(BlockReply {
        user_id: user.to_string(),
        blocked: false,
    })
}

/// `listBlocked`.
pub async fn list_blocked(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    _: ListBlockedParams,
) -> Result<BlockedList, ApiError> {
    let mut user_ids: Vec<String> = deps
        .settings
        .blocked(&who.user_id)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    user_ids.sort();
    Ok(BlockedList { user_ids })
}

/// A report as the moderators read it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    report_id: &'a str,
    reporter: &'a UserId,
    reported: &'a UserId,
    at: String,
    messages: Vec<Reported>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Reported {
    msg_id: String,
    session_id: String,
    sent_at: String,
    /// As the reporter's device decrypted it: the server cannot check it.
    text: String,
}

/// `reportUser`: stores the report for moderation, then blocks the user.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn report_user(
    deps: &ReportDeps<'_>,
    who: &DeviceCredential,
    p: ReportUserParams,
) -> Result<ReportFiled, ApiError> {
    crate::rate_limit::take(
        deps.budget.as_ref(),
        &format!("reportUser#{}", who.user_id),
        "reports today",
        deps.blocks.clock.now(),
    )
    .await?;
    let user = other_user(&deps.blocks, who, &p.user_id).await?;
    if p.messages.len() > MAX_REPORTED_MESSAGES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_REPORTED_MESSAGES} messages"
        )));
    }
    let mut messages = Vec::with_capacity(p.messages.len());
    for m in p.messages {
        if m.text.chars().count() > MAX_PAYLOAD_CHARS {
            return Err(ApiError::bad_request(format!(
                "a reported message's text is at most {MAX_PAYLOAD_CHARS} characters"
            )));
        }
        let id = MsgId::parse(&m.msg_id)
            .ok_or_else(|| ApiError::bad_request("msgId is not a message id"))?;
        // Only the reported user's own messages, in a chat the reporter is in and could read:
        // a report cannot carry anyone else's words, nor a message the reporter never had.
        let me = require_member(deps.sessions, &id.session, &who.user_id).await?;
        let stored = deps
            .messages
            .get(&id)
            .await?
            .filter(|s| {
                s.seq > me.joined_seq
                    && s.hidden_from.as_ref() != Some(&who.user_id)
                    && !s.expired(deps.blocks.clock.now())
            })
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such message"))?;
        if stored.sender != user || !matches!(stored.kind, MessageKind::Text | MessageKind::Media) {
            return Err(ApiError::bad_request(format!(
                "{} is not a message {user} sent",
                m.msg_id
            )));
        }
        messages.push(Reported {
            msg_id: stored.msg_id,
            session_id: stored.session_id.to_string(),
            sent_at: stored.sent_at,
            text: m.text,
        });
    }
    let now = deps.blocks.clock.now();
    let report_id = uuid::Uuid::new_v4().simple().to_string();
    let report = Report {
        report_id: &report_id,
        reporter: &who.user_id,
        reported: &user,
        at: timestamp(now),
        messages,
    };
    let key = format!("reports/{}/{report_id}.json", now.format("%Y-%m-%d"));
    let json = serde_json::to_vec(&report).expect("a report serialises");
    deps.reports.file_report(&key, &json).await?;
    deps.blocks.settings.block(&who.user_id, &user, now).await?;
    tracing::info!(messages = report.messages.len(), "user reported");
    Ok(ReportFiled {
        report_id,
        blocked: true,
    })
}

/// The user a block or report names: an existing account that is not the caller's.
async fn other_user(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    user_id: &str,
) -> Result<UserId, ApiError> {
    let user = user_id_param("userId", user_id)?;
    if user == who.user_id {
        return Err(ApiError::bad_request("one cannot block or report oneself"));
    }
    if deps.accounts.user(&user).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, "no such user"));
    }
    Ok(user)
}
