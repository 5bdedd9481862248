//! What the server pushes to a device's connection: every event is a value of [`Event`], sent as
//! `{"type": "event", "event": <name>, ...}` ([`Event::frame`]).

use super::QueuedDeviceMessage;
use crate::chat::{Message, Receipt};
use serde::{Deserialize, Serialize};

/// A server event (docs/protocol.md, Events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// A new message, to every device of every member but the sending device.
    Message {
        /// The message.
        message: Message,
    },
    /// Someone started a direct chat: the handshake is the message's payload.
    SessionStarted {
        /// The session.
        session_id: String,
        /// Who started it.
        from: String,
        /// The stored `handshake` message.
        message: Message,
    },
    /// A member moved a watermark.
    Status {
        /// The session.
        session_id: String,
        /// The member.
        user_id: String,
        /// `delivered` or `read`.
        status: Receipt,
        /// Up to this message.
        up_to_msg_id: String,
        /// Its seq.
        up_to_seq: u64,
        /// When the watermark moved.
        at: String,
    },
    /// A message queued for this device (`sendToDevice`).
    DeviceMessage {
        /// The message.
        message: QueuedDeviceMessage,
    },
    /// A contact posted a status (fetch it with `viewStatus`).
    StatusPosted {
        /// The poster.
        user_id: String,
        /// The status.
        status_id: String,
        /// When it stops being shown.
        expires_at: String,
    },
    /// A group changed: with the `system` message that records it, or, for the notices sent
    /// directly (a removed member's own removal, `deleted`), with `at`.
    GroupUpdate {
        /// The group.
        group_id: String,
        /// Its session (the same id).
        session_id: String,
        /// `created`, `memberAdded`, `memberRemoved`, `promoted` or `deleted` (`null` for a
        /// system message the server cannot read).
        update: Option<String>,
        /// The member it is about.
        user_id: Option<String>,
        /// Who did it.
        by: Option<String>,
        /// The message that records it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Message>,
        /// When, for a notice sent directly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// A member of an open chat started or stopped typing (`sendTyping`): live devices only,
    /// never stored, never pushed.
    Typing {
        /// The session.
        session_id: String,
        /// Who is typing.
        user_id: String,
        /// False when they stopped.
        typing: bool,
    },
    /// Its sender deleted a message for everyone (`deleteMessage`): drop its content.
    MessageDeleted {
        /// The session.
        session_id: String,
        /// The message deleted.
        msg_id: String,
        /// Who deleted it (its sender).
        by: String,
        /// The `system` message that records the deletion in the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Message>,
    },
    /// A member changed the session's disappearing timer (`setDisappearingTimer`): messages
    /// sent from now on disappear after `seconds` (0: they no longer do).
    DisappearingTimer {
        /// The session.
        session_id: String,
        /// The new timer, in seconds (0: off).
        seconds: u32,
        /// Who changed it.
        by: String,
        /// The `system` message that records the change in the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Message>,
    },
}

impl Event {
    /// The event's frame: `{"type": "event", "event": <name>, ...}`.
    pub fn frame(&self) -> String {
        let mut v = serde_json::to_value(self).expect("an event is JSON");
        v["type"] = serde_json::Value::String("event".into());
        v.to_string()
    }
}
