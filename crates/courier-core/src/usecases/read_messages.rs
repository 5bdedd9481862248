//! `readNewMessages`: page through a session after a message, in session order.

use super::session_checks::{parse_session, require_member};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::ids::MsgId;
use crate::ports::{DeviceCredential, MessageStore, SessionStore};
use crate::protocol::MessagesPage;
use crate::protocol::{REPLY_BUDGET_BYTES, ReadNewMessagesParams, fit_budget};

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page.
pub const MAX_LIMIT: u32 = 100;
/// Pages read at most for one reply when every message on them was withheld from the reader or
/// has disappeared.
const SKIPPED_PAGES: usize = 5;

/// Messages after `lastMsgId`: at most `limit`, and as many as fit [`REPLY_BUDGET_BYTES`].
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn read_new_messages(
    sessions: &dyn SessionStore,
    messages: &dyn MessageStore,
    clock: &dyn Clock,
    who: &DeviceCredential,
    p: ReadNewMessagesParams,
) -> Result<MessagesPage, ApiError> {
    let session = parse_session(&p.session_id)?;
    let after = match p.last_msg_id.as_deref() {
        None | Some("") => 0,
        Some(id) => {
            let id = MsgId::parse(id)
                .ok_or_else(|| ApiError::bad_request("lastMsgId is not a message id"))?;
            if id.session != session {
                return Err(ApiError::bad_request(
                    "lastMsgId belongs to another session",
                ));
            }
            id.seq
        }
    };
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let me = require_member(sessions, &session, &who.user_id).await?;
    // A group member reads from where it joined.
    let after = after.max(me.joined_seq);
    // What was withheld from the reader (its sender is blocked by it) is not there for it, nor is
    // what has disappeared (its timer ran out, though DynamoDB's TTL may not have removed it
    // yet); a page of nothing else is skipped (a few times: a reader continues from the last it
    // got).
    let now = clock.now();
    let mut after = after;
    let (mut page, mut has_more) = (Vec::new(), false);
    for _ in 0..SKIPPED_PAGES {
        let (read, more) = messages.after(&session, after, limit as usize).await?;
        after = read.last().map_or(after, |m| m.seq);
        page = read;
        has_more = more;
        page.retain(|m| m.hidden_from.as_ref() != Some(&who.user_id) && !m.expired(now));
        if !page.is_empty() || !has_more {
            break;
        }
    }
    // 100 handshakes of 64 KB would make a 6.5 MB reply the gateway refuses, and the reader could
    // never get past them: cut the page to the budget and let the reader continue.
    let (messages, cut) = fit_budget(page, REPLY_BUDGET_BYTES);
    let skipped_to = (messages.is_empty() && has_more).then(|| {
        MsgId {
            session: session.clone(),
            seq: after,
        }
        .to_string()
    });
    Ok(MessagesPage {
        messages,
        has_more: has_more || cut,
        skipped_to,
    })
}
