//! Chats, messages, receipts and groups: their params and events.

use super::*;

use crate::chat::{Message, Receipt};

/// `lookupUser`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupUserParams {
    /// E.164 number.
    pub phone: String,
}

/// `discoverContacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverContactsParams {
    /// Numbers from the caller's address book, E.164 (others are skipped).
    pub phones: Vec<String>,
}

/// `initiateDirectChatSession`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateDirectChatParams {
    /// The other user.
    pub peer_user_id: String,
    /// Opaque E2EE set-up for the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<String>,
}

/// `sendMessage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageParams {
    /// Target session.
    pub session_id: String,
    /// Idempotency key.
    pub client_msg_id: String,
    /// Message kind: one a client may send ([`crate::chat::MessageKind::is_sendable`]).
    #[serde(rename = "type")]
    pub kind: crate::chat::MessageKind,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// Media ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// `listSessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsParams {
    /// Continue after this session id (the last one of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `readNewMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadNewMessagesParams {
    /// The session.
    pub session_id: String,
    /// Read after this message (from the start if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_msg_id: Option<String>,
    /// Page size, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `ackMessages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckMessagesParams {
    /// The session.
    pub session_id: String,
    /// Everything up to this message.
    pub msg_id: String,
    /// `delivered` or `read`.
    pub status: Receipt,
}

/// `getMessageStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMessageStatusParams {
    /// The message.
    pub msg_id: String,
}

/// `registerPushToken`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterPushTokenParams {
    /// `apns` or `fcm`.
    pub platform: crate::ports::PushPlatform,
    /// The device token from APNs / FCM.
    pub token: String,
}

/// The `message` event.
pub fn message_event(m: &Message) -> String {
    Event::Message { message: m.clone() }.frame()
}

/// The `sessionStarted` event, for a handshake message.
///
/// The handshake travels once, as the message's `payload`: carried twice, a 65,536-character
/// handshake made a frame over the gateway's 128 KB limit.
pub fn session_started_event(m: &Message) -> String {
    Event::SessionStarted {
        session_id: m.session_id.to_string(),
        from: m.sender.to_string(),
        message: m.clone(),
    }
    .frame()
}

/// The event a stored message becomes: `sessionStarted` for a handshake, `messageDeleted`,
/// `disappearingTimer` or
/// `groupUpdate` for what the server wrote into the session, else `message`.
pub fn event_for(m: &Message) -> String {
    match m.kind {
        crate::chat::MessageKind::Handshake => session_started_event(m),
        crate::chat::MessageKind::System => match MessageDeletion::of(m) {
            Some(d) => Event::MessageDeleted {
                session_id: m.session_id.to_string(),
                msg_id: d.msg_id,
                by: d.by.to_string(),
                message: Some(m.clone()),
            }
            .frame(),
            None => match DisappearingTimer::of(m) {
                Some(t) => Event::DisappearingTimer {
                    session_id: m.session_id.to_string(),
                    seconds: t.seconds,
                    by: t.by.to_string(),
                    message: Some(m.clone()),
                }
                .frame(),
                None => group_update_event(m),
            },
        },
        _ => message_event(m),
    }
}

/// A change to a group, as the server writes it into the group's session (a `system` message
/// whose payload is this, as JSON: membership is not secret from the server, content is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupChange {
    /// `created`, `memberAdded`, `memberRemoved`, `promoted` or `deleted`.
    pub update: String,
    /// Whom it is about (`created`: the creator).
    pub user_id: UserId,
    /// Who did it.
    pub by: UserId,
}

/// The `groupUpdate` event for a `system` message (or, with no message, for a group that is
/// gone: `deleted`, and a removed member's own removal).
pub fn group_update_event(m: &Message) -> String {
    let change: Option<GroupChange> = serde_json::from_str(&m.payload).ok();
    Event::GroupUpdate {
        group_id: m.session_id.to_string(),
        session_id: m.session_id.to_string(),
        update: change.as_ref().map(|c| c.update.clone()),
        user_id: change.as_ref().map(|c| c.user_id.to_string()),
        by: change.as_ref().map(|c| c.by.to_string()),
        message: Some(m.clone()),
        at: None,
    }
    .frame()
}

/// A `groupUpdate` event not carried by a message of the session.
pub fn group_notice(session: &SessionId, change: &GroupChange, at: &str) -> String {
    Event::GroupUpdate {
        group_id: session.to_string(),
        session_id: session.to_string(),
        update: Some(change.update.clone()),
        user_id: Some(change.user_id.to_string()),
        by: Some(change.by.to_string()),
        message: None,
        at: Some(at.to_owned()),
    }
    .frame()
}

/// `initiateGroupChatSession`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateGroupParams {
    /// The group's name (1 to `MAX_GROUP_NAME_CHARS` characters).
    pub name: String,
    /// What the group is about (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The other members (the creator is added as admin).
    pub members: Vec<String>,
}

/// `getGroup`, `deleteGroup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupParams {
    /// The group.
    pub group_id: String,
}

/// `addUserToGroup`, `removeUserFromGroup`, `promoteUserToAdmin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMemberParams {
    /// The group.
    pub group_id: String,
    /// The user.
    pub user_id: String,
}

/// The `status` event: a member's watermark moved.
pub fn status_event(
    session: &str,
    user: &str,
    status: Receipt,
    up_to_msg_id: &str,
    up_to_seq: u64,
    at: &str,
) -> String {
    Event::Status {
        session_id: session.to_owned(),
        user_id: user.to_owned(),
        status,
        up_to_msg_id: up_to_msg_id.to_owned(),
        up_to_seq,
        at: at.to_owned(),
    }
    .frame()
}

/// `approveDeviceLink`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApproveDeviceLinkParams {
    /// The code the new device shows.
    pub code: String,
}

/// Reply to `initiateDirectChatSession`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectChat {
    /// The session (always the same for the same two users).
    pub session_id: String,
    /// Whether this call created it.
    #[serde(default)]
    pub created: bool,
}

/// One entry of `listSessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// The session.
    pub session_id: String,
    /// Direct chat or group.
    #[serde(rename = "type")]
    pub kind: crate::chat::SessionKind,
    /// Member user ids.
    #[serde(default)]
    pub members: Vec<String>,
    /// The latest message's seq (0 if none).
    #[serde(default)]
    pub last_seq: u64,
    /// The latest message's id (`null` if none).
    #[serde(default)]
    pub last_msg_id: Option<String>,
    /// The caller's `delivered` watermark.
    #[serde(default)]
    pub delivered_seq: u64,
    /// The caller's `read` watermark.
    #[serde(default)]
    pub read_seq: u64,
}

/// Reply to `listSessions`: one page, by session id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsPage {
    /// The sessions of this page.
    pub sessions: Vec<SessionSummary>,
    /// Whether more follow the last one (ask again with `after` = its id).
    #[serde(default)]
    pub has_more: bool,
}

/// Reply to `sendMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// The message id.
    pub msg_id: String,
    /// Its seq in the session.
    pub seq: u64,
    /// When the server stored it.
    #[serde(default)]
    pub sent_at: String,
    /// When it disappears, if the chat's disappearing timer was on (absent in the reply to a
    /// retry, which stored nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Reply to `readNewMessages`: `M` is the message as the reader keeps it (the server's
/// [`Message`]; the SDK's adds what it decrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesPage<M = Message> {
    /// In session order.
    pub messages: Vec<M>,
    /// Whether more follow the last one.
    #[serde(default)]
    pub has_more: bool,
    /// When the page is empty but more follow: every message up to this one was read past
    /// (withheld from the reader, or disappeared), so the reader continues after it. Without
    /// it, a reader behind a long run of such messages would ask for the same place for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_to: Option<String>,
}

/// Reply to `ackMessages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckReply {
    /// Whether the watermark moved (false when it was already there or past).
    pub moved: bool,
}

/// One recipient in `getMessageStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientStatus {
    /// The recipient.
    pub user_id: String,
    /// Its status for the message.
    pub status: Receipt,
    /// When its watermark moved to or past the message (`null` while `sent`).
    #[serde(default)]
    pub at: Option<String>,
}

/// Reply to `getMessageStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatus {
    /// The message.
    pub msg_id: String,
    /// The weakest recipient's status.
    pub status: Receipt,
    /// Per recipient.
    #[serde(default)]
    pub recipients: Vec<RecipientStatus>,
}

/// Reply to `initiateGroupChatSession`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCreated {
    /// The group.
    pub group_id: String,
    /// Its session (the same id).
    pub session_id: String,
}

/// One member in `getGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    /// The member.
    pub user_id: String,
    /// `admin` or `member`.
    pub role: crate::chat::Role,
    /// When it joined.
    pub joined_at: String,
}

/// Reply to `getGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupInfo {
    /// The group.
    pub group_id: String,
    /// Its session (the same id).
    pub session_id: String,
    /// Its name.
    pub name: String,
    /// Its description (empty when none).
    pub description: String,
    /// Who created it.
    pub created_by: String,
    /// When the group was created.
    pub created_at: String,
    /// By join time.
    pub members: Vec<GroupMember>,
}

/// The change a group operation wrote into the group's session (a `system` message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupNotice {
    /// Its message id.
    pub msg_id: String,
    /// Its seq.
    pub seq: u64,
}

/// Reply to `addUserToGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAdded {
    /// False when the user was a member already (nothing written).
    pub added: bool,
    /// The `memberAdded` change, when added.
    #[serde(flatten)]
    pub notice: Option<GroupNotice>,
}

/// Reply to `removeUserFromGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    /// Always true.
    pub removed: bool,
    /// The `memberRemoved` change (none when the group was deleted).
    #[serde(flatten)]
    pub notice: Option<GroupNotice>,
    /// The last member left: the group is gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_deleted: bool,
    /// The member promoted because no admin was left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_admin: Option<String>,
}

/// Reply to `promoteUserToAdmin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberPromoted {
    /// False when the user was an admin already (nothing written).
    pub promoted: bool,
    /// The `promoted` change, when promoted.
    #[serde(flatten)]
    pub notice: Option<GroupNotice>,
}

/// Reply to `deleteGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDeleted {
    /// Always true.
    pub deleted: bool,
}

/// `sendTyping`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendTypingParams {
    /// The open chat.
    pub session_id: String,
    /// True while the user types; false when they stop.
    pub typing: bool,
}

/// Reply to `sendTyping`: `{}` (whom it reached is not said: that would tell who hides their
/// presence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingSent {}

/// `deleteMessage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMessageParams {
    /// The session.
    pub session_id: String,
    /// The message to delete for everyone.
    pub msg_id: String,
}

/// Reply to `deleteMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeleted {
    /// The message deleted.
    pub msg_id: String,
    /// Always true (deleting again answers the same).
    pub deleted: bool,
}

/// A record the server writes into a session as a `system` message whose payload is the record
/// as JSON, told apart from the others by its `update` (group changes have their own reader,
/// [`GroupChange`], whose `update` takes several values).
pub trait SystemRecord: serde::de::DeserializeOwned {
    /// The `update` of this kind of record.
    const UPDATE: &'static str;

    /// This record's `update`.
    fn update(&self) -> &str;

    /// The record a stored message is, if it is one of this kind.
    fn of(m: &Message) -> Option<Self> {
        if m.kind != crate::chat::MessageKind::System {
            return None;
        }
        Self::from_payload(&m.payload)
    }

    /// The record a `system` message's payload is, if it is one of this kind (for readers that
    /// hold the message as their own type, as the SDK does).
    fn from_payload(payload: &str) -> Option<Self> {
        serde_json::from_str::<Self>(payload)
            .ok()
            .filter(|r| r.update() == Self::UPDATE)
    }
}

/// A message deleted for everyone, as the server writes it into the session: a `system`
/// message whose payload is this, as JSON, so that devices offline at the time learn of it when
/// they sync past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeletion {
    /// Always `messageDeleted`.
    pub update: String,
    /// The message deleted.
    pub msg_id: String,
    /// Its sender, who deleted it.
    pub by: UserId,
}

impl SystemRecord for MessageDeletion {
    const UPDATE: &'static str = "messageDeleted";

    fn update(&self) -> &str {
        &self.update
    }
}

/// `setDisappearingTimer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetDisappearingTimerParams {
    /// The session.
    pub session_id: String,
    /// 0 (off), 86,400 (24 hours), 604,800 (7 days) or 7,776,000 (90 days).
    pub seconds: u32,
}

/// Reply to `setDisappearingTimer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisappearingTimerSet {
    /// The session.
    pub session_id: String,
    /// The timer now, in seconds (0: off).
    pub seconds: u32,
    /// The `system` message that records the change; absent when the timer already was
    /// `seconds` (nothing changed, nothing was written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
}

/// A change of a session's disappearing timer, as the server writes it into the session: a
/// `system` message whose payload is this, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisappearingTimer {
    /// Always `disappearingTimer`.
    pub update: String,
    /// The new timer, in seconds (0: off).
    pub seconds: u32,
    /// Who changed it.
    pub by: UserId,
}

impl SystemRecord for DisappearingTimer {
    const UPDATE: &'static str = "disappearingTimer";

    fn update(&self) -> &str {
        &self.update
    }
}
