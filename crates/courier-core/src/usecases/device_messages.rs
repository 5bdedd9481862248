//! Per-device queues: `sendToDevice`, `readDeviceMessages`, `ackDeviceMessages`.
//!
//! A device message (an Olm-encrypted room key, say) is for one device, not for a session. It is
//! stored in the target device's queue first, then posted to that device's live connections as
//! a `deviceMessage` event; a device with no live connection gets a push that says only that a
//! device message from the sender waits. The device reads its queue when it comes back and
//! acknowledges what it has processed; what is never acknowledged expires after 30 days.

use super::deliver::Deliverer;
use super::keys::{device_id_param, user_id_param};
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{DeviceId, UserId};
use crate::ports::{
    DeviceCredential, DeviceMessage, DeviceQueueStore, QueuedMessage, UserDirectory,
};
use crate::protocol::{
    AckDeviceMessagesParams, AckedDeviceMessages, DeviceMessagesPage, DeviceRef,
    QueuedDeviceMessage, REPLY_BUDGET_BYTES, ReadDeviceMessagesParams, SendToDeviceParams,
    SendToDeviceReply, device_message_event, fit_budget,
};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use std::collections::{HashMap, HashSet};

/// Messages in one `sendToDevice`.
pub const MAX_DEVICE_MESSAGES: usize = 100;
/// Longest payload, in characters.
pub const MAX_DEVICE_PAYLOAD_CHARS: usize = 16_384;
/// Ids in one `ackDeviceMessages`.
pub const MAX_ACK_IDS: usize = 100;
/// How long an unacknowledged message is kept.
pub const DEVICE_MESSAGE_TTL_DAYS: i64 = 30;
/// `readDeviceMessages` page size when none is asked for.
pub const DEFAULT_READ_LIMIT: u32 = 50;
/// Largest page.
pub const MAX_READ_LIMIT: u32 = 100;

/// What the device-queue operations need.
pub struct Deps<'a> {
    /// Do the target devices exist? (`sendToDevice` only.)
    pub accounts: Option<&'a dyn UserDirectory>,
    /// The queues.
    pub queues: &'a dyn DeviceQueueStore,
    /// Live delivery and pushes (`sendToDevice` only).
    pub deliver: Option<Deliverer<'a>>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The sending device's token bucket (`sendToDevice` only; `None`: unlimited).
    pub throttle: Option<crate::rate_limit::Throttle<'a>>,
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn base32(mut v: u128, chars: usize) -> String {
    let mut out = vec![b'0'; chars];
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[(v & 31) as usize];
        v >>= 5;
    }
    String::from_utf8(out).expect("ascii")
}

/// The 10-character time part of a ULID: sorting ids sorts them by time.
pub fn ulid_time_prefix(at: DateTime<Utc>) -> String {
    base32(at.timestamp_millis().max(0) as u128, 10)
}

/// ULIDs for `n` messages queued at `at`, in order: the time, then a random 80-bit value that
/// grows by one per message, so the ids of one call sort in the order given.
pub fn new_ids(at: DateTime<Utc>, n: usize) -> Vec<String> {
    let time = ulid_time_prefix(at);
    // Leave room to add n without overflowing 80 bits.
    let start: u128 = rand::random::<u128>() & ((1u128 << 79) - 1);
    (0..n)
        .map(|i| format!("{time}{}", base32(start + i as u128, 16)))
        .collect()
}

/// Whether `s` has the shape of an id this server hands out.
pub fn is_message_id(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| CROCKFORD.contains(&b))
}

/// `sendToDevice`: returns `{"queued": [...], "unknownDevices": [...]}`.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym()))]
pub async fn send_to_device(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: SendToDeviceParams,
) -> Result<SendToDeviceReply, ApiError> {
    if p.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must hold at least one message",
        ));
    }
    if p.messages.len() > MAX_DEVICE_MESSAGES {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("messages: at most {MAX_DEVICE_MESSAGES} per call"),
        ));
    }
    let mut targets = Vec::with_capacity(p.messages.len());
    for (i, m) in p.messages.iter().enumerate() {
        let user = user_id_param(&format!("messages[{i}].userId"), &m.user_id)?;
        let device = device_id_param(&format!("messages[{i}].deviceId"), &m.device_id)?;
        if m.payload.chars().count() > MAX_DEVICE_PAYLOAD_CHARS {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("messages[{i}].payload: at most {MAX_DEVICE_PAYLOAD_CHARS} characters"),
            ));
        }
        targets.push((user, device));
    }

    // Before anything is read or written: a refused call queues and delivers nothing.
    crate::rate_limit::take(
        deps.throttle.as_ref(),
        &super::session_checks::send_key("sendToDevice", who),
        "device messages",
        deps.clock.now(),
    )
    .await?;
    // Which target devices exist: one device query per distinct user.
    let mut users: Vec<UserId> = targets.iter().map(|(u, _)| u.clone()).collect();
    users.sort();
    users.dedup();
    let existing: HashMap<UserId, HashSet<DeviceId>> = stream::iter(users)
        .map(|u| async move {
            let devices = super::wired(deps.accounts, "the accounts")?
                .devices(&u)
                .await?;
            Ok::<_, ApiError>((u, devices.into_iter().map(|d| d.device_id).collect()))
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;

    let now = deps.clock.now();
    let expires_at = now + chrono::Duration::days(DEVICE_MESSAGE_TTL_DAYS);
    let mut ids = new_ids(now, targets.len()).into_iter();
    let mut queued = Vec::new();
    let mut unknown = Vec::new();
    for ((user, device), m) in targets.into_iter().zip(p.messages) {
        let id = ids.next().expect("one id per message");
        if !existing.get(&user).is_some_and(|d| d.contains(&device)) {
            unknown.push(DeviceRef {
                user_id: user.to_string(),
                device_id: device.to_string(),
                id: None,
            });
            continue;
        }
        queued.push(QueuedMessage {
            user_id: user,
            device_id: device,
            message: DeviceMessage {
                id,
                sender: who.user_id.clone(),
                sender_device: who.device_id.clone(),
                payload: m.payload,
                sent_at: now,
            },
            expires_at,
        });
    }
    // Persist first: once the reply says queued, the message is kept until read or expired.
    if !queued.is_empty() {
        deps.queues.enqueue(&queued).await?;
    }
    if let Some(deliver) = &deps.deliver {
        let frames: Vec<_> = queued
            .iter()
            .map(|q| {
                (
                    q.user_id.clone(),
                    q.device_id.clone(),
                    device_message_event(&q.message),
                )
            })
            .collect();
        // The messages are stored: a failed live delivery is read from the queue later.
        match deliver.deliver_to_devices(&frames, &who.user_id).await {
            Ok(report) => tracing::info!(
                queued = queued.len(),
                unknown = unknown.len(),
                posted = report.posted,
                gone = report.gone,
                pushed = report.pushed,
                "device messages queued"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                queued = queued.len(),
                "device messages queued; live delivery failed"
            ),
        }
    }
    let queued = queued
        .iter()
        .map(|q| DeviceRef {
            user_id: q.user_id.to_string(),
            device_id: q.device_id.to_string(),
            id: Some(q.message.id.clone()),
        })
        .collect();
    Ok(SendToDeviceReply {
        queued,
        unknown_devices: unknown,
    })
}

/// `readDeviceMessages`: the caller device's queue, oldest first, at most `limit` messages and
/// as many as fit [`REPLY_BUDGET_BYTES`] (`hasMore`: read again after acknowledging these).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym()))]
pub async fn read_device_messages(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: ReadDeviceMessagesParams,
) -> Result<DeviceMessagesPage, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_READ_LIMIT);
    if !(1..=MAX_READ_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_READ_LIMIT}"
        )));
    }
    let (messages, more) = deps
        .queues
        .read(
            &who.user_id,
            &who.device_id,
            deps.clock.now(),
            limit as usize,
        )
        .await?;
    // A page of 16 KB messages would pass the frame long before `limit`: cut it to the budget.
    let (messages, cut) = fit_budget(
        messages.iter().map(QueuedDeviceMessage::from),
        REPLY_BUDGET_BYTES,
    );
    Ok(DeviceMessagesPage {
        messages,
        has_more: more || cut,
    })
}

/// `ackDeviceMessages`: removes the ids from the caller device's queue.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym()))]
pub async fn ack_device_messages(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: AckDeviceMessagesParams,
) -> Result<AckedDeviceMessages, ApiError> {
    if p.ids.is_empty() {
        return Err(ApiError::bad_request("ids must hold at least one id"));
    }
    if p.ids.len() > MAX_ACK_IDS {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("ids: at most {MAX_ACK_IDS} per call"),
        ));
    }
    let mut ids: Vec<String> = Vec::with_capacity(p.ids.len());
    for (i, id) in p.ids.iter().enumerate() {
        if !is_message_id(id) {
            return Err(ApiError::bad_request(format!(
                "ids[{i}] is not a device message id"
            )));
        }
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    let acked = deps.queues.ack(&who.user_id, &who.device_id, &ids).await?;
    Ok(AckedDeviceMessages { acked })
}
