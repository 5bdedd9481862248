//! Settings, privacy, contacts and profiles: their params.

use super::*;

/// `getSettings`: no fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetSettingsParams {}

/// The display part of `updateSettings`: only the fields given change; `null` clears one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisplayUpdate {
    /// New display name.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<Option<String>>,
    /// New about line.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub about: Option<Option<String>>,
    /// New avatar media id.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub avatar: Option<Option<String>>,
}

/// The privacy part of `updateSettings`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivacyUpdate {
    /// Who sees last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<crate::settings::Audience>,
    /// Who sees the avatar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_photo: Option<crate::settings::Audience>,
    /// Who sees the about line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<crate::settings::Audience>,
    /// Who sees status posts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::settings::Audience>,
    /// Read receipts on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_receipts: Option<bool>,
    /// Who may add the user to groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_add: Option<crate::settings::GroupsAdd>,
}

/// `updateSettings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSettingsParams {
    /// Profile fields to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<DisplayUpdate>,
    /// Privacy choices to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyUpdate>,
}

/// `updateContacts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateContactsParams {
    /// User ids to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// User ids to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// `getProfile`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetProfileParams {
    /// Whose profile.
    pub user_id: String,
}

/// A present field is `Some`, even when it is `null` (`Some(None)`: clear it).
fn some<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Reply to `lookupUser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupUserReply {
    /// The account behind the number.
    pub user_id: String,
}

/// An address-book number that has an account (`discoverContacts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredContact {
    /// The number, E.164.
    pub phone: String,
    /// Its account.
    pub user_id: String,
}

/// Reply to `discoverContacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverContactsReply {
    /// The numbers that have an account, each once, in the order asked.
    pub registered: Vec<DiscoveredContact>,
}

/// Reply to `updateContacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactsCount {
    /// How many contacts the caller has now.
    pub count: usize,
}

/// Reply to `getProfile`: what the owner's privacy settings let the caller see. A hidden field
/// is absent (`None`); an allowed field that is not set is `null` (`Some(None)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The profile's owner.
    pub user_id: String,
    /// The display name (always shown; `null` when not set).
    pub name: Option<String>,
    /// The about line.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub about: Option<Option<String>>,
    /// The avatar's media id.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub avatar: Option<Option<String>>,
    /// Whether a device of the owner is connected now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// When the owner was last connected.
    #[serde(
        default,
        deserialize_with = "some",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_seen: Option<Option<String>>,
    /// The owner's phone number: only for someone who shares a chat (direct or group) with it,
    /// as WhatsApp shows a number to everyone in a chat with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Reply to `registerPushToken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTokenReply {
    /// Always true: the device's endpoint has the token.
    pub registered: bool,
}

/// Reply to `getSettings`: the caller's settings, and whether its account has a registration
/// PIN (two-step verification on), so that any of its devices can show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsReply {
    /// Display fields and privacy choices.
    #[serde(flatten)]
    pub settings: crate::settings::Settings,
    /// Whether re-registering the number needs the PIN.
    pub registration_pin: bool,
}

/// `blockUser`, `unblockUser`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockParams {
    /// The user.
    pub user_id: String,
}

/// Reply to `blockUser` and `unblockUser`: whether the user is blocked now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockReply {
    /// The user.
    pub user_id: String,
    /// Blocked now.
    pub blocked: bool,
}

/// `listBlocked`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListBlockedParams {}

/// Reply to `listBlocked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedList {
    /// Everyone the caller blocked, by id.
    pub user_ids: Vec<String>,
}

/// `reportUser`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportUserParams {
    /// Whom.
    pub user_id: String,
    /// Up to 5 of their messages, as the reporter decrypted them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ReportedMessage>,
}

/// A message attached to a report: its id and the text the reporter's device decrypted (the
/// server cannot check the text; it checks that the message is the reported user's, in a chat
/// of the reporter's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedMessage {
    /// The message.
    pub msg_id: String,
    /// What it said.
    pub text: String,
}

/// Reply to `reportUser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportFiled {
    /// The report's id.
    pub report_id: String,
    /// Always true: reporting blocks.
    pub blocked: bool,
}
