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
