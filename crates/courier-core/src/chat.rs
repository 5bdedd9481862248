//! Chat records as use cases see them: sessions, memberships with their receipt watermarks, and
//! messages (whose payload the server never reads: it is the clients' ciphertext).

use crate::ids::{DeviceId, MsgId, SessionId, UserId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Longest payload accepted, in characters.
pub const MAX_PAYLOAD_CHARS: usize = 65_536;
/// Longest `clientMsgId`.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 16;
/// Most members of a group, its creator included.
pub const MAX_GROUP_MEMBERS: usize = 257;
/// Longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 100;
/// Longest group description, in characters.
pub const MAX_GROUP_DESCRIPTION_CHARS: usize = 512;

/// A member's role in a group (direct sessions have only members).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May add, remove and promote members and delete the group.
    Admin,
    /// May send, read and leave.
    #[default]
    Member,
}

/// The kind of session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Two users.
    Direct,
    /// A group (2 to 257 members).
    Group,
}

/// A user's place in a session, with how far their devices have got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The session.
    pub session_id: SessionId,
    /// Its kind.
    pub kind: SessionKind,
    /// The member.
    pub user_id: UserId,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// The session's last sequence number when they joined: they see only what comes after.
    pub joined_seq: u64,
    /// Their role (groups).
    pub role: Role,
    /// Every message up to this one was delivered to one of their devices.
    pub delivered: Watermark,
    /// Every message up to this one was read.
    pub read: Watermark,
}

/// A receipt watermark: a sequence number and when it was reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermark {
    /// Highest acknowledged sequence number (0: none).
    pub seq: u64,
    /// When the watermark last moved.
    pub at: Option<DateTime<Utc>>,
}

/// The status of a message for one recipient, or in aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Receipt {
    /// Stored, not yet on a device of the recipient.
    Sent,
    /// On at least one device of the recipient.
    Delivered,
    /// Seen by the recipient (only for those who send read receipts).
    Read,
}

impl Receipt {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Receipt::Sent => "sent",
            Receipt::Delivered => "delivered",
            Receipt::Read => "read",
        }
    }
}

impl std::fmt::Display for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message as stored and as sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `<sessionId>.<seq>`.
    pub msg_id: String,
    /// The session.
    pub session_id: SessionId,
    /// Position in the session.
    pub seq: u64,
    /// Sending user.
    pub sender: UserId,
    /// Sending device.
    pub sender_device: DeviceId,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// What it carries.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// Opaque to the server; absent (empty) once deleted for everyone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub payload: String,
    /// Media ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// When the server stored it (RFC 3339, milliseconds, UTC).
    pub sent_at: String,
    /// When it disappears (RFC 3339, milliseconds, UTC): a `text` or `media` message sent while
    /// the session's disappearing timer was on. From then on no read returns it and clients
    /// delete their copies; DynamoDB's TTL removes the item later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The member it is withheld from: in a direct chat, the peer who blocked its sender. Never
    /// on the wire (the sender must not learn of the block); stores keep it beside the message.
    #[serde(skip)]
    pub hidden_from: Option<UserId>,
}

impl Message {
    /// Whether it has disappeared by `now` (its [`Message::expires_at`] has passed). A stored
    /// expiry that does not parse counts as passed: a message is never kept longer than asked.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.as_deref().is_some_and(|at| {
            DateTime::parse_from_rfc3339(at).map_or(true, |at| at.with_timezone(&Utc) <= now)
        })
    }

    /// The message's id.
    pub fn id(&self) -> MsgId {
        MsgId {
            session: self.session_id.clone(),
            seq: self.seq,
        }
    }
}

/// What a message carries (its `type` on the wire). The server never looks inside. A kind this
/// build does not know is kept as it is (`Other`), so a reader never drops a newer sender's
/// message for its kind; only [`MessageKind::is_sendable`] kinds may be sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum MessageKind {
    /// A text message (the payload is the encrypted text).
    Text,
    /// A message with attachments.
    Media,
    /// The end-to-end session set-up stored by `initiateDirectChatSession`.
    Handshake,
    /// A notice the server writes (group changes, deletions); never sent by a client.
    System,
    /// What is left of a message its sender deleted for everyone: no payload, no attachments.
    Deleted,
    /// A kind this build does not know.
    Other(String),
}

impl MessageKind {
    /// The kinds a client may send with `sendMessage`.
    pub const SENDABLE: [MessageKind; 3] = [
        MessageKind::Text,
        MessageKind::Media,
        MessageKind::Handshake,
    ];

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Media => "media",
            MessageKind::Handshake => "handshake",
            MessageKind::System => "system",
            MessageKind::Deleted => "deleted",
            MessageKind::Other(s) => s,
        }
    }

    /// Whether a client may send it (`system` is the server's; unknown kinds are refused).
    pub fn is_sendable(&self) -> bool {
        Self::SENDABLE.contains(self)
    }
}

impl From<String> for MessageKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "text" => MessageKind::Text,
            "media" => MessageKind::Media,
            "handshake" => MessageKind::Handshake,
            "system" => MessageKind::System,
            "deleted" => MessageKind::Deleted,
            _ => MessageKind::Other(s),
        }
    }
}

impl From<&str> for MessageKind {
    fn from(s: &str) -> Self {
        MessageKind::from(s.to_owned())
    }
}

impl From<MessageKind> for String {
    fn from(k: MessageKind) -> Self {
        k.as_str().to_owned()
    }
}

impl PartialEq<&str> for MessageKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3339 with milliseconds and `Z`, as the protocol writes times.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A message before it has a place in the session.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The sending user.
    pub sender: UserId,
    /// Sending device.
    pub sender_device: DeviceId,
    /// Idempotency key.
    pub client_msg_id: String,
    /// What it carries (its `type` on the wire).
    pub kind: MessageKind,
    /// Ciphertext; the server stores and forwards it unread.
    pub payload: String,
    /// Media ids.
    pub attachments: Vec<String>,
    /// The member it is withheld from (see [`Message::hidden_from`]).
    pub hidden_from: Option<UserId>,
    /// It disappears if the session's timer is on when it is stored (`text` and `media`; what
    /// the server writes, handshakes and deletions never do). The store decides the expiry from
    /// the timer it reads at the very number it writes, so a message written just after a
    /// timer change follows the change.
    pub disappears: bool,
    /// Its writer delivers it itself, right after storing it (`sendMessage`); the stream
    /// consumer then delivers it only if that delivery did not finish (see
    /// the `DeliveryLog` port). False for messages the stream alone delivers.
    pub inline: bool,
}

impl Draft {
    /// The message this draft becomes at number `seq` of `session`, stored at `at`.
    pub fn message(
        &self,
        session: &SessionId,
        seq: u64,
        at: DateTime<Utc>,
        expires_at: Option<String>,
    ) -> Message {
        Message {
            msg_id: MsgId {
                session: session.clone(),
                seq,
            }
            .to_string(),
            session_id: session.clone(),
            seq,
            sender: self.sender.clone(),
            sender_device: self.sender_device.clone(),
            client_msg_id: self.client_msg_id.clone(),
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            attachments: self.attachments.clone(),
            sent_at: timestamp(at),
            expires_at,
            hidden_from: self.hidden_from.clone(),
        }
    }
}

/// The allowed disappearing timers, in seconds: off, 24 hours, 7 days, 90 days (WhatsApp's).
pub const DISAPPEARING_TIMERS: [u32; 4] = [0, 86_400, 604_800, 7_776_000];

/// Where a session ends: its last sequence number (never below the numbers of messages that
/// have disappeared since) and its disappearing timer in seconds (0: off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tail {
    /// The last sequence number used (0: none).
    pub seq: u64,
    /// The session's disappearing timer, in seconds (0: off).
    pub timer: u32,
}

impl Tail {
    /// When a message stored at `at` disappears under this timer, if it does.
    pub fn expiry(&self, draft: &Draft, at: DateTime<Utc>) -> Option<String> {
        (draft.disappears && self.timer > 0)
            .then(|| timestamp(at + chrono::Duration::seconds(i64::from(self.timer))))
    }
}

/// How the invocation that stored a message ended its own delivery of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InlineOutcome {
    /// Every live device was posted to (or found gone, or refused the frame for good) and every
    /// offline device with a push endpoint was pushed: the stream consumer does nothing.
    Done,
    /// A post or a push failed in a way worth retrying: the stream consumer delivers it again
    /// (at once, not after the grace a dead invocation gets).
    Retry,
}

/// What appending a draft did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored as a new message (boxed: a message is several times the size of the other
    /// variant).
    New(Box<Message>),
    /// The sender already sent this `clientMsgId`: the first result.
    Duplicate {
        /// Its id.
        msg_id: String,
        /// Its sequence number.
        seq: u64,
        /// When it was stored.
        sent_at: String,
    },
}
