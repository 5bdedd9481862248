//! The request frames of every action, built from the parameter types of
//! `courier_core::protocol` (the server parses the very same types).

use super::*;

/// A request: the action name and its fields. Built by the functions below, sent by
/// [`crate::Session::call`] or [`crate::Client::call`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The action.
    pub action: &'static str,
    /// Its fields (an object).
    pub params: Value,
}

impl Request {
    /// `action` with `params`, one of the parameter types of `courier_core::protocol`: the
    /// server parses the very same types.
    pub(crate) fn new(action: &'static str, params: &impl Serialize) -> Self {
        Self {
            action,
            params: serde_json::to_value(params).expect("protocol parameters are JSON"),
        }
    }
}

/// `initiateGroupChatSession`: the caller is admin; `members` are the others (1 to 256).
pub fn initiate_group(name: &str, description: Option<&str>, members: &[String]) -> Request {
    Request::new(
        "initiateGroupChatSession",
        &p::InitiateGroupParams {
            name: name.into(),
            description: description.map(Into::into),
            members: members.to_vec(),
        },
    )
}

/// A group operation on one member: `addUserToGroup`, `removeUserFromGroup`,
/// `promoteUserToAdmin`.
pub fn group_member(action: GroupAction, group_id: &str, user_id: &str) -> Request {
    Request::new(
        action.name(),
        &p::GroupMemberParams {
            group_id: group_id.into(),
            user_id: user_id.into(),
        },
    )
}

/// `getGroup`.
pub fn get_group(group_id: &str) -> Request {
    Request::new(
        "getGroup",
        &p::GroupParams {
            group_id: group_id.into(),
        },
    )
}

/// `deleteGroup`.
pub fn delete_group(group_id: &str) -> Request {
    Request::new(
        "deleteGroup",
        &p::GroupParams {
            group_id: group_id.into(),
        },
    )
}

/// What an admin (or a leaving member) does to one member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAction {
    /// `addUserToGroup`.
    Add,
    /// `removeUserFromGroup` (a member may remove itself: leave).
    Remove,
    /// `promoteUserToAdmin`.
    Promote,
}

impl GroupAction {
    /// The protocol action.
    pub fn name(self) -> &'static str {
        match self {
            GroupAction::Add => "addUserToGroup",
            GroupAction::Remove => "removeUserFromGroup",
            GroupAction::Promote => "promoteUserToAdmin",
        }
    }
}

/// `lookupUser`.
pub fn lookup_user(phone: &str) -> Request {
    Request::new(
        "lookupUser",
        &p::LookupUserParams {
            phone: phone.into(),
        },
    )
}

/// `discoverContacts`: which of `phones` (E.164) have an account.
pub fn discover_contacts(phones: &[String]) -> Request {
    Request::new(
        "discoverContacts",
        &p::DiscoverContactsParams {
            phones: phones.to_vec(),
        },
    )
}

/// The accounts in a `discoverContacts` reply.
#[cfg_attr(not(feature = "native"), allow(dead_code))]
pub(crate) fn discovered(result: Value) -> Result<Vec<DiscoveredContact>, ClientError> {
    #[derive(Deserialize)]
    struct Reply {
        registered: Vec<DiscoveredContact>,
    }
    parse::<Reply>(result).map(|r| r.registered)
}

/// `createBackup`: a presigned upload for an encrypted backup of `size` bytes.
pub fn create_backup(size: u64) -> Request {
    Request::new("createBackup", &p::CreateBackupParams { size })
}

/// `listBackups`.
pub fn list_backups() -> Request {
    Request::new("listBackups", &p::ListBackupsParams {})
}

/// `getBackupDownload`.
pub fn get_backup_download(backup_id: &str) -> Request {
    Request::new(
        "getBackupDownload",
        &p::GetBackupDownloadParams {
            backup_id: backup_id.into(),
        },
    )
}

/// `initiateDirectChatSession`.
pub fn initiate_direct_chat(peer_user_id: &str, handshake: Option<&str>) -> Request {
    Request::new(
        "initiateDirectChatSession",
        &p::InitiateDirectChatParams {
            peer_user_id: peer_user_id.into(),
            handshake: handshake.map(Into::into),
        },
    )
}

/// Sessions asked for per `listSessions` page (the server's largest page; it may return fewer,
/// to keep its reply within a frame).
pub const SESSIONS_PAGE: u32 = 100;

/// `listSessions`: the page of sessions after session id `after` (from the first if `None`).
pub fn list_sessions(after: Option<&str>) -> Request {
    Request::new(
        "listSessions",
        &p::ListSessionsParams {
            after: after.map(Into::into),
            limit: Some(SESSIONS_PAGE),
        },
    )
}

/// Every session of the caller: `listSessions` page after page (by `after`, while `hasMore`),
/// each page asked through `ask`.
pub async fn all_sessions<F, Fut>(mut ask: F) -> Result<Vec<SessionSummary>, ClientError>
where
    F: FnMut(Request) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ClientError>>,
{
    let mut all: Vec<SessionSummary> = Vec::new();
    loop {
        let after = all.last().map(|s| s.session_id.clone());
        let page: SessionsPage = parse(ask(list_sessions(after.as_deref())).await?)?;
        let done = !page.has_more || page.sessions.is_empty();
        all.extend(page.sessions);
        if done {
            return Ok(all);
        }
    }
}

/// `sendMessage`.
pub fn send_message(m: &NewMessage, client_msg_id: &str) -> Request {
    Request::new(
        "sendMessage",
        &p::SendMessageParams {
            session_id: m.session_id.clone(),
            client_msg_id: client_msg_id.into(),
            kind: m.kind.clone(),
            payload: m.payload.clone(),
            attachments: m.attachments.clone(),
        },
    )
}

/// `readNewMessages`.
pub fn read_new_messages(
    session_id: &str,
    last_msg_id: Option<&str>,
    limit: Option<u32>,
) -> Request {
    Request::new(
        "readNewMessages",
        &p::ReadNewMessagesParams {
            session_id: session_id.into(),
            last_msg_id: last_msg_id.map(Into::into),
            limit,
        },
    )
}

/// `ackMessages`.
pub fn ack(session_id: &str, msg_id: &str, status: Receipt) -> Request {
    Request::new(
        "ackMessages",
        &p::AckMessagesParams {
            session_id: session_id.into(),
            msg_id: msg_id.into(),
            status,
        },
    )
}

/// `getMessageStatus`.
pub fn get_message_status(msg_id: &str) -> Request {
    Request::new(
        "getMessageStatus",
        &p::GetMessageStatusParams {
            msg_id: msg_id.into(),
        },
    )
}

/// `getProfile`: what `user_id`'s privacy settings let this user see (name, about, avatar,
/// online and last seen; the phone number when the two share a chat).
pub fn get_profile(user_id: &str) -> Request {
    Request::new(
        "getProfile",
        &p::GetProfileParams {
            user_id: user_id.into(),
        },
    )
}

/// `updateSettings`: change profile fields and privacy choices.
pub fn update_settings(params: &p::UpdateSettingsParams) -> Request {
    Request::new("updateSettings", params)
}

/// `updateContacts`: add and remove contacts (whom `contacts`-only privacy settings show).
pub fn update_contacts(add: &[String], remove: &[String]) -> Request {
    Request::new(
        "updateContacts",
        &p::UpdateContactsParams {
            add: add.to_vec(),
            remove: remove.to_vec(),
        },
    )
}

/// `blockUser` (`block`) or `unblockUser`.
pub fn block_user(user_id: &str, block: bool) -> Request {
    Request::new(
        if block { "blockUser" } else { "unblockUser" },
        &p::BlockParams {
            user_id: user_id.into(),
        },
    )
}

/// `listBlocked`.
pub fn list_blocked() -> Request {
    Request::new("listBlocked", &p::ListBlockedParams {})
}

/// `reportUser`: with up to 5 of their messages as this device decrypted them.
pub fn report_user(user_id: &str, messages: Vec<p::ReportedMessage>) -> Request {
    Request::new(
        "reportUser",
        &p::ReportUserParams {
            user_id: user_id.into(),
            messages,
        },
    )
}

/// `deleteMessage`: delete one of this user's messages for everyone (within 48 hours).
pub fn delete_message(session_id: &str, msg_id: &str) -> Request {
    Request::new(
        "deleteMessage",
        &p::DeleteMessageParams {
            session_id: session_id.into(),
            msg_id: msg_id.into(),
        },
    )
}

/// `setDisappearingTimer`: messages sent in the chat from now on disappear after `seconds`
/// (0: off; 86,400, 604,800 or 7,776,000).
pub fn set_disappearing_timer(session_id: &str, seconds: u32) -> Request {
    Request::new(
        "setDisappearingTimer",
        &p::SetDisappearingTimerParams {
            session_id: session_id.into(),
            seconds,
        },
    )
}

/// `sendTyping`: this user started (`true`) or stopped typing in a chat.
pub fn send_typing(session_id: &str, typing: bool) -> Request {
    Request::new(
        "sendTyping",
        &p::SendTypingParams {
            session_id: session_id.into(),
            typing,
        },
    )
}

/// `registerPushToken`.
pub fn register_push_token(platform: PushPlatform, token: &str) -> Request {
    Request::new(
        "registerPushToken",
        &p::RegisterPushTokenParams {
            platform,
            token: token.into(),
        },
    )
}

/// `setRegistrationPin`: two-step verification; re-registering the number will need `pin`
/// (six digits). From the primary `current_pin` is not needed; a companion changes an existing
/// PIN only with it.
pub fn set_registration_pin(pin: &str, current_pin: Option<&str>) -> Request {
    Request::new(
        "setRegistrationPin",
        &p::SetRegistrationPinParams {
            pin: pin.into(),
            current_pin: current_pin.map(Into::into),
        },
    )
}

/// `removeRegistrationPin`: from the primary without `current_pin`; a companion needs it.
pub fn remove_registration_pin(current_pin: Option<&str>) -> Request {
    Request::new(
        "removeRegistrationPin",
        &p::RemoveRegistrationPinParams {
            current_pin: current_pin.map(Into::into),
        },
    )
}

/// `checkRegistrationPin`: whether `pin` is the account's registration PIN (any device).
pub fn check_registration_pin(pin: &str) -> Request {
    Request::new(
        "checkRegistrationPin",
        &p::CheckRegistrationPinParams { pin: pin.into() },
    )
}

/// `deleteAccount`.
pub fn delete_account() -> Request {
    Request::new("deleteAccount", &p::DeleteAccountParams {})
}

/// `uploadKeys`: identity and signing keys, one-time keys (at most 100), a fallback key.
pub fn upload_keys(
    identity_key: &str,
    signing_key: &str,
    one_time_keys: &[crate::crypto::OneTimeKey],
    fallback_key: Option<&crate::crypto::OneTimeKey>,
) -> Request {
    Request::new(
        "uploadKeys",
        &p::UploadKeysParams {
            identity_key: identity_key.into(),
            signing_key: signing_key.into(),
            one_time_keys: one_time_keys.to_vec(),
            fallback_key: fallback_key.cloned(),
        },
    )
}

/// `claimKeys`: one key bundle per device of `user_id` (only `device_ids` when given).
pub fn claim_keys(user_id: &str, device_ids: Option<&[String]>) -> Request {
    Request::new(
        "claimKeys",
        &p::ClaimKeysParams {
            user_id: user_id.into(),
            device_ids: device_ids.map(<[String]>::to_vec),
        },
    )
}

/// `listDevices` (1 to 50 users: `courier_core::usecases::keys::MAX_LIST_USERS`).
pub fn list_devices(user_ids: &[String]) -> Request {
    Request::new(
        "listDevices",
        &p::ListDevicesParams {
            user_ids: user_ids.to_vec(),
        },
    )
}

/// `removeDevice`.
pub fn remove_device(device_id: &str) -> Request {
    Request::new(
        "removeDevice",
        &p::RemoveDeviceParams {
            device_id: device_id.into(),
        },
    )
}

/// `approveDeviceLink`.
pub fn approve_device_link(code: &str) -> Request {
    Request::new(
        "approveDeviceLink",
        &p::ApproveDeviceLinkParams { code: code.into() },
    )
}

/// `sendToDevice` (1 to 100 messages).
pub fn send_to_device(messages: &[OutgoingDeviceMessage]) -> Request {
    Request::new(
        "sendToDevice",
        &p::SendToDeviceParams {
            messages: messages.to_vec(),
        },
    )
}

/// `readDeviceMessages`.
pub fn read_device_messages(limit: Option<u32>) -> Request {
    Request::new("readDeviceMessages", &p::ReadDeviceMessagesParams { limit })
}

/// `ackDeviceMessages` (1 to 100 ids).
pub fn ack_device_messages(ids: &[String]) -> Request {
    Request::new(
        "ackDeviceMessages",
        &p::AckDeviceMessagesParams { ids: ids.to_vec() },
    )
}
