//! `setDisappearingTimer`: a member turns a session's disappearing messages on, changes the
//! timer or turns them off (in a group, only an admin).
//!
//! The timer lives with the session's messages ([`MessageStore::set_timer`]), written together
//! with a `system` message that records the change ([`DisappearingTimer`]), so every message is
//! on one side of it: those stored after it carry `expiresAt` (their `sentAt` plus the timer),
//! and from that moment no read returns them; DynamoDB's TTL removes them later. The members'
//! live devices get the change as `disappearingTimer`; offline ones read the record on sync.

use super::deliver::{Deliverer, Outbound};
use super::session_checks::{parse_session, require_member, send_key};
use crate::chat::{DISAPPEARING_TIMERS, Draft, MessageKind, Role};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ports::{DeliveryLog, DeviceCredential, MessageStore, SessionStore};
use crate::protocol::{
    DisappearingTimer, DisappearingTimerSet, SetDisappearingTimerParams, SystemRecord,
};

/// What `setDisappearingTimer` needs.
pub struct Deps<'a> {
    /// Membership and role, and the members to tell.
    pub sessions: &'a dyn SessionStore,
    /// The timer and the change's record.
    pub messages: &'a dyn MessageStore,
    /// The time: the record's `sentAt`, the rate limit.
    pub clock: &'a dyn Clock,
    /// The device's bucket for this operation (`None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
    /// Delivers the change to live devices.
    pub deliver: Deliverer<'a>,
    /// Where the inline delivery's outcome goes, so the fan-out finishes what it did not;
    /// `None`: the fan-out alone delivers the change.
    pub log: Option<&'a dyn DeliveryLog>,
    /// One more timer accepted besides [`DISAPPEARING_TIMERS`], for tests of expiry that cannot
    /// wait a day (the template's `DisappearingTestSeconds`; `None` in production).
    pub test_seconds: Option<u32>,
}

/// Sets the session's disappearing timer.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn set_disappearing_timer(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: SetDisappearingTimerParams,
) -> Result<DisappearingTimerSet, ApiError> {
    let session = parse_session(&p.session_id)?;
    if !DISAPPEARING_TIMERS.contains(&p.seconds) && deps.test_seconds != Some(p.seconds) {
        let mut allowed: Vec<String> = DISAPPEARING_TIMERS.iter().map(u32::to_string).collect();
        allowed.extend(deps.test_seconds.map(|s| s.to_string()));
        return Err(ApiError::bad_request(format!(
            "seconds must be one of {}",
            allowed.join(", ")
        )));
    }
    crate::rate_limit::take(
        deps.throttle.as_ref(),
        &send_key("setDisappearingTimer", who),
        "timer changes",
        deps.clock.now(),
    )
    .await?;
    let (me, tail) = futures_util::future::join(
        require_member(deps.sessions, &session, &who.user_id),
        deps.messages.tail(&session),
    )
    .await;
    let me = me?;
    if !session.is_direct() && me.role != Role::Admin {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only a group admin may change its disappearing messages",
        ));
    }
    let mut reply = DisappearingTimerSet {
        session_id: session.to_string(),
        seconds: p.seconds,
        msg_id: None,
    };
    if tail?.timer == p.seconds {
        // Nothing changes, so nothing is written or told (a retry answers the same).
        return Ok(reply);
    }
    let change = DisappearingTimer {
        update: DisappearingTimer::UPDATE.to_owned(),
        seconds: p.seconds,
        by: who.user_id.clone(),
    };
    let now = deps.clock.now();
    let record = Draft {
        sender: who.user_id.clone(),
        sender_device: who.device_id.clone(),
        client_msg_id: format!("timer-{}-{:016x}", now.timestamp_millis(), rand_suffix()),
        kind: MessageKind::System,
        payload: serde_json::to_string(&change).expect("a timer change serialises"),
        attachments: Vec::new(),
        hidden_from: None,
        disappears: false,
        inline: deps.log.is_some(),
    };
    let stored = deps
        .messages
        .set_timer(&session, &record, p.seconds, now)
        .await?;
    reply.msg_id = Some(stored.msg_id.clone());
    if let Some(log) = deps.log {
        let out = Outbound {
            message: stored,
            members: None,
        };
        // Its outcome is recorded: the fan-out finishes what this did not.
        let _ = super::fan_out::deliver_inline(deps.sessions, &deps.deliver, log, &out).await;
    }
    tracing::info!(seconds = p.seconds, "disappearing timer changed");
    Ok(reply)
}

/// A random part for the record's `clientMsgId` (it is never retried under the same one: a
/// retry that finds the timer already set writes nothing).
fn rand_suffix() -> u64 {
    rand::random()
}
