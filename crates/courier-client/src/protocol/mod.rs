//! The messaging protocol as typed values: messages, sessions, delivery status, server events,
//! and the request frames of every action (`docs/protocol.md`, "Actions implemented" and
//! "Events").
//!
//! Parsing is lenient where the page allows the server to grow (unknown message types, unknown
//! events, missing optional fields), and strict where a wrong value would mislead the client
//! (sequence numbers, statuses).

use crate::ClientError;
use courier_core::protocol as p;
use courier_core::protocol::SystemRecord;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

mod requests;

pub use requests::*;

pub use courier_core::chat::MessageKind;
/// The replies of the actions, as the server builds them (`courier_core::protocol`).
pub use courier_core::protocol::{
    DeviceRef, DirectChat, DiscoveredContact, KeyBundle, LinkedDevice, MessageStatus,
    QueuedDeviceMessage as DeviceMessage, RecipientStatus, SendToDeviceReply as SendToDeviceResult,
    SentMessage, SessionSummary, SessionsPage, StatusViewer, UserDevice,
};
/// A page of `readNewMessages`, with the SDK's [`Message`].
pub type MessagesPage = courier_core::protocol::MessagesPage<Message>;
/// Reply to `readDeviceMessages`.
pub use courier_core::protocol::DeviceMessagesPage;

/// A message as the server returns it (in `readNewMessages` and in `message` events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `<sessionId>.<seq>`; treat as opaque.
    pub msg_id: String,
    /// The session it belongs to.
    pub session_id: String,
    /// Its position in the session, from 1.
    pub seq: u64,
    /// The sending user.
    pub sender: String,
    /// The sending device.
    #[serde(default)]
    pub sender_device: String,
    /// The sender's idempotency key (absent for messages the server writes itself).
    #[serde(default)]
    pub client_msg_id: Option<String>,
    /// What it carries.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// The (for now plain, later encrypted) content; see [`crate::payload`].
    #[serde(default)]
    pub payload: String,
    /// Media ids.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// When the server stored it (RFC 3339, UTC).
    #[serde(default)]
    pub sent_at: String,
    /// When it disappears (RFC 3339, UTC): sent while the chat's disappearing timer was on.
    /// Clients delete their copies then; the server no longer returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The text it carries, as this client read it: decrypted by a [`crate::Client`] with
    /// end-to-end encryption, the payload as is without (for `media` messages the descriptor
    /// read by [`crate::media::MediaPayload::from_message`]; `None` for other kinds, and never
    /// on the wire).
    #[serde(skip)]
    pub text: Option<String>,
}

/// A delivery status, weakest first: `Sent < Delivered < Read`.
pub use courier_core::chat::Receipt;

/// A push platform for `registerPushToken`.
pub use courier_core::ports::PushPlatform;

/// A message for one device, for `sendToDevice` (at most 16,384 characters of payload).
pub use courier_core::protocol::OutgoingDeviceMessage;

/// A message to send with [`crate::Client::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The session.
    pub session_id: String,
    /// What it carries.
    pub kind: MessageKind,
    /// The payload, already encoded (see [`crate::payload::encode`]).
    pub payload: String,
    /// Media ids (at most 16).
    pub attachments: Vec<String>,
    /// The idempotency key; a uuid is generated when None. Retries reuse it.
    pub client_msg_id: Option<String>,
}

impl NewMessage {
    /// A text message with `text` encoded by [`crate::payload::encode`].
    pub fn text(session_id: impl Into<String>, text: &str) -> Self {
        Self {
            session_id: session_id.into(),
            kind: MessageKind::Text,
            payload: crate::payload::encode(text),
            attachments: Vec::new(),
            client_msg_id: None,
        }
    }
}

/// Something the server (or the [`crate::Client`]) reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new message (the `Client` emits each once, in session order).
    Message(Message),
    /// Someone started a session with this user (or this user did, on another device).
    SessionStarted {
        /// The session.
        session_id: String,
        /// Who started it.
        from: String,
        /// The opaque E2EE set-up (None if the session was started without one).
        handshake: Option<String>,
        /// The stored `handshake` message, if any.
        message: Option<Message>,
    },
    /// A message queued for this device (`sendToDevice`). A [`crate::Client`] with end-to-end
    /// encryption consumes these itself (they carry room keys) and does not emit them.
    DeviceMessage(DeviceMessage),
    /// A message this device cannot decrypt: its room key did not arrive (after the device's
    /// queue was read), it came from a device whose identity key changed, or it is not
    /// encrypted. If its key arrives later, the message is emitted then.
    Undecryptable {
        /// The message as received (`text` is None).
        message: Message,
        /// Why it could not be decrypted.
        reason: String,
    },
    /// A contact's identity changed (a device presented another identity key than the one
    /// pinned, or the account has a new primary device): nothing is sent to or accepted from
    /// it until the user accepts it ([`crate::Client::accept_identity`]).
    IdentityChanged {
        /// The user.
        user_id: String,
        /// The device whose key changed (or the new primary device).
        device_id: String,
    },
    /// The account's primary device sent this device its recent history (a history bundle,
    /// [`crate::history_bundle`]), and the `Client` merged it into the device's history (the
    /// file beside its crypto state), marked as synced.
    HistorySynced {
        /// The primary device that sent it.
        from_device: String,
        /// Messages in the bundle.
        messages: usize,
        /// Chats in the bundle.
        chats: usize,
        /// Messages this device did not have yet.
        added: usize,
    },
    /// A member moved a watermark.
    Status {
        /// The session.
        session_id: String,
        /// The member whose watermark moved.
        user_id: String,
        /// `delivered` or `read`.
        status: Receipt,
        /// Every message up to this one has the status.
        up_to_msg_id: String,
        /// Its seq.
        up_to_seq: u64,
        /// When the watermark moved (absent from servers that did not say).
        at: Option<String>,
    },
    /// A user whose statuses this user may see posted one (or this user did, on another
    /// device): fetch it with [`crate::Client::view_status`].
    StatusPosted {
        /// The poster.
        user_id: String,
        /// The status.
        status_id: String,
        /// When it stops being shown.
        expires_at: String,
    },
    /// A member of a chat started or stopped typing (only while both are online, and only if
    /// their `lastSeen` privacy setting shows them to this user).
    Typing {
        /// The session.
        session_id: String,
        /// Who is typing.
        user_id: String,
        /// False when they stopped.
        typing: bool,
    },
    /// Its sender deleted a message for everyone: forget its content and show "This message was
    /// deleted". Comes live, or on sync as the `system` message that records it.
    MessageDeleted {
        /// The session.
        session_id: String,
        /// The message deleted.
        msg_id: String,
        /// Who deleted it (its sender).
        by: String,
        /// The `system` message that records the deletion.
        message: Option<Message>,
    },
    /// A member changed the chat's disappearing timer: messages sent from `message` on
    /// disappear after `seconds` (0: they no longer do). Comes live, or on sync as the `system`
    /// message that records it.
    DisappearingTimer {
        /// The session.
        session_id: String,
        /// The new timer, in seconds (0: off).
        seconds: u32,
        /// Who changed it.
        by: String,
        /// The `system` message that records the change.
        message: Option<Message>,
    },
    /// The `Client` has a live connection.
    Connected,
    /// The `Client`'s connection ended; it reconnects by itself.
    Disconnected,
    /// The `Client` finished catching up after a (re)connect.
    Synced,
    /// The server refused the API key (HTTP 401: revoked, or the account moved to another
    /// phone). The `Client` has stopped; no event follows.
    Unauthorized,
    /// Something went wrong that the `Client` works around (e.g. a sync step failed); for logs.
    Error(String),
    /// An event or frame this client does not understand, as received.
    Unknown(Value),
}

/// The server's message as the SDK keeps it: the same JSON, read into [`Message`].
fn sdk_message(m: &courier_core::chat::Message) -> Option<Message> {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

impl Event {
    /// Reads an unsolicited frame. Anything not understood becomes [`Event::Unknown`].
    pub fn from_frame(value: Value) -> Event {
        Self::parse(&value).unwrap_or(Event::Unknown(value))
    }

    /// The server's event type (`courier_core::protocol::Event`, which the server writes its
    /// frames with) read from the frame, then turned into this client's view of it: messages
    /// become the SDK's [`Message`] (the same wire shape, with room for what it decrypts).
    fn parse(v: &Value) -> Option<Event> {
        use courier_core::protocol::Event as Wire;
        if v.get("type")?.as_str()? != "event" {
            return None;
        }
        let event: Wire = serde_json::from_value(v.clone()).ok()?;
        Some(match event {
            Wire::Message { message } => Event::Message(sdk_message(&message)?),
            Wire::SessionStarted {
                session_id,
                from,
                message,
            } => {
                let message = sdk_message(&message)?;
                Event::SessionStarted {
                    session_id,
                    from,
                    // The handshake travels once, as the message's payload.
                    handshake: Some(message.payload.clone()),
                    message: Some(message),
                }
            }
            Wire::DeviceMessage { message } => Event::DeviceMessage(message),
            Wire::Status {
                session_id,
                user_id,
                status,
                up_to_msg_id,
                up_to_seq,
                at,
            } => Event::Status {
                session_id,
                user_id,
                status,
                up_to_msg_id,
                up_to_seq,
                at: Some(at),
            },
            Wire::StatusPosted {
                user_id,
                status_id,
                expires_at,
            } => Event::StatusPosted {
                user_id,
                status_id,
                expires_at,
            },
            // Group changes reach the client as the `system` messages that record them.
            Wire::GroupUpdate { .. } => return None,
            Wire::Typing {
                session_id,
                user_id,
                typing,
            } => Event::Typing {
                session_id,
                user_id,
                typing,
            },
            Wire::MessageDeleted {
                session_id,
                msg_id,
                by,
                message,
            } => Event::MessageDeleted {
                session_id,
                msg_id,
                by,
                message: match message {
                    Some(m) => Some(sdk_message(&m)?),
                    None => None,
                },
            },
            Wire::DisappearingTimer {
                session_id,
                seconds,
                by,
                message,
            } => Event::DisappearingTimer {
                session_id,
                seconds,
                by,
                message: match message {
                    Some(m) => Some(sdk_message(&m)?),
                    None => None,
                },
            },
        })
    }

    /// The event a stored message stands for: `SessionStarted` for a `handshake` message (as
    /// when it is read by `readNewMessages`), `MessageDeleted` for the `system` message that
    /// records a deletion, `DisappearingTimer` for one that records a timer change, `Message`
    /// otherwise.
    pub fn for_message(m: Message) -> Event {
        if m.kind == MessageKind::System
            && let Some(t) = courier_core::protocol::DisappearingTimer::from_payload(&m.payload)
        {
            return Event::DisappearingTimer {
                session_id: m.session_id.clone(),
                seconds: t.seconds,
                by: t.by.to_string(),
                message: Some(m),
            };
        }
        if m.kind == MessageKind::System
            && let Some(d) = courier_core::protocol::MessageDeletion::from_payload(&m.payload)
        {
            return Event::MessageDeleted {
                session_id: m.session_id.clone(),
                msg_id: d.msg_id,
                by: d.by.to_string(),
                message: Some(m),
            };
        }
        if m.kind == MessageKind::Handshake {
            Event::SessionStarted {
                session_id: m.session_id.clone(),
                from: m.sender.clone(),
                handshake: Some(m.payload.clone()),
                message: Some(m),
            }
        } else {
            Event::Message(m)
        }
    }
}

/// A status post as `viewStatus` returns it; `text` is filled in once decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusPost {
    /// The poster.
    pub user_id: String,
    /// Its id.
    pub status_id: String,
    /// The poster's device that encrypted it.
    pub device_id: String,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// Media ids.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// When it was posted.
    pub posted_at: String,
    /// When it stops being shown.
    pub expires_at: String,
    /// The text, if this client could decrypt it.
    #[serde(skip)]
    pub text: Option<String>,
}

/// `postStatus`.
pub fn post_status(payload: &str, attachments: &[String]) -> Request {
    Request::new(
        "postStatus",
        &p::PostStatusParams {
            payload: payload.into(),
            attachments: attachments.to_vec(),
        },
    )
}

/// `removeStatus`.
pub fn remove_status(status_id: &str) -> Request {
    Request::new(
        "removeStatus",
        &p::RemoveStatusParams {
            status_id: status_id.into(),
        },
    )
}

/// `viewStatus`, after the status `after` if given.
pub fn view_status(user_id: &str, after: Option<&str>) -> Request {
    Request::new(
        "viewStatus",
        &p::ViewStatusParams {
            user_id: user_id.into(),
            after: after.map(Into::into),
        },
    )
}

/// `getStatusViewers`, after the viewer `after` if given.
pub fn status_viewers(status_id: &str, after: Option<&str>) -> Request {
    Request::new(
        "getStatusViewers",
        &p::GetStatusViewersParams {
            status_id: status_id.into(),
            after: after.map(Into::into),
            limit: None,
        },
    )
}

/// `getStatusAudience`, after the user `after` if given.
pub fn status_audience(after: Option<&str>) -> Request {
    Request::new(
        "getStatusAudience",
        &p::GetStatusAudienceParams {
            after: after.map(Into::into),
        },
    )
}

/// Reads a reply's `result` as `T`.
pub(crate) fn parse<T: DeserializeOwned>(result: Value) -> Result<T, ClientError> {
    serde_json::from_value(result.clone()).map_err(|e| ClientError::Unexpected {
        status: 0,
        body: format!("{e}: {result}"),
    })
}

/// Reads one string field of a reply's `result`.
#[cfg_attr(not(feature = "native"), allow(dead_code))]
pub(crate) fn field_str(result: &Value, name: &str) -> Result<String, ClientError> {
    result[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Unexpected {
            status: 0,
            body: format!("no {name} in {result}"),
        })
}

/// Reads one boolean field of a reply's `result` (false if absent).
#[cfg_attr(not(feature = "native"), allow(dead_code))]
pub(crate) fn field_bool(result: &Value, name: &str) -> bool {
    result[name].as_bool().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(seq: u64, kind: &str) -> Value {
        json!({"msgId": format!("s_1.{seq}"), "sessionId": "s_1", "seq": seq, "sender": "u_a",
               "senderDevice": "d_a", "clientMsgId": "c-1", "type": kind, "payload": "hi",
               "attachments": [], "sentAt": "2026-11-27T12:00:00.000Z"})
    }

    #[test]
    fn parses_status_posted() {
        let e = Event::from_frame(json!({"type": "event", "event": "statusPosted",
            "userId": "u_a", "statusId": "01JDX7Q9V6T4ZK3M2N8P5R1S0A",
            "expiresAt": "2026-11-30T12:00:00.000Z"}));
        assert_eq!(
            e,
            Event::StatusPosted {
                user_id: "u_a".into(),
                status_id: "01JDX7Q9V6T4ZK3M2N8P5R1S0A".into(),
                expires_at: "2026-11-30T12:00:00.000Z".into(),
            }
        );
    }

    #[test]
    fn parses_events() {
        let e = Event::from_frame(
            json!({"type": "event", "event": "message", "message": msg(3, "text")}),
        );
        let Event::Message(m) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (m.seq, m.kind, m.payload.as_str()),
            (3, MessageKind::Text, "hi")
        );

        let e = Event::from_frame(
            json!({"type": "event", "event": "status", "sessionId": "s_1",
            "userId": "u_b", "status": "read", "upToMsgId": "s_1.3", "upToSeq": 3, "at": "t"}),
        );
        assert!(matches!(
            e,
            Event::Status {
                status: Receipt::Read,
                up_to_seq: 3,
                ..
            }
        ));

        let e = Event::from_frame(
            json!({"type": "event", "event": "sessionStarted", "sessionId": "s_1",
            "from": "u_a", "message": msg(1, "handshake")}),
        );
        // The handshake travels once, as the stored message's payload.
        assert!(
            matches!(e, Event::SessionStarted { ref handshake, message: Some(_), .. } if handshake.as_deref() == Some("hi"))
        );

        let odd = json!({"type": "event", "event": "typing", "sessionId": "s_1"});
        assert_eq!(Event::from_frame(odd.clone()), Event::Unknown(odd));
        let gw = json!({"message": "Internal server error", "connectionId": "x", "requestId": "y"});
        assert_eq!(Event::from_frame(gw.clone()), Event::Unknown(gw));
        let bad =
            json!({"type": "event", "event": "status", "sessionId": "s_1", "status": "weird"});
        assert_eq!(Event::from_frame(bad.clone()), Event::Unknown(bad));
    }

    #[test]
    fn unknown_message_types_round_trip() {
        let m: Message = serde_json::from_value(msg(1, "poll")).unwrap();
        assert_eq!(m.kind, MessageKind::Other("poll".into()));
        assert_eq!(serde_json::to_value(&m).unwrap()["type"], "poll");
        assert!(Receipt::Sent < Receipt::Delivered);
        assert!(Receipt::Delivered < Receipt::Read);
    }

    #[test]
    fn builds_requests() {
        let r = read_new_messages("s_1", None, Some(100));
        assert_eq!(r.params, json!({"sessionId": "s_1", "limit": 100}));
        let r = send_message(&NewMessage::text("s_1", "hey"), "c-9");
        assert_eq!(
            r.params,
            json!({"sessionId": "s_1", "clientMsgId": "c-9", "type": "text", "payload": "hey"})
        );
        assert_eq!(
            initiate_direct_chat("u_b", None).params,
            json!({"peerUserId": "u_b"})
        );
        assert_eq!(ack("s_1", "s_1.2", Receipt::Read).params["status"], "read");
    }
}
