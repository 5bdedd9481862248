//! A user's profile (display fields) and privacy settings, and who may see what.
//!
//! The server enforces every choice: `getProfile` filters by them, receipts honour
//! `readReceipts`, and groups honour `groupsAdd`. "Contacts" means: the viewer is in the owner's
//! contact list (`updateContacts`), one lookup of one item.

use serde::{Deserialize, Serialize};

/// Longest display name, in characters (WhatsApp's).
pub const MAX_NAME_CHARS: usize = 25;
/// Longest "about" text, in characters (WhatsApp's).
pub const MAX_ABOUT_CHARS: usize = 139;
/// Longest avatar media id, in characters (media ids are opaque for now).
pub const MAX_AVATAR_CHARS: usize = 128;
/// Most contacts a user may keep.
pub const MAX_CONTACTS: usize = 5_000;

/// Who may see a profile field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Audience {
    /// Every Courier user.
    #[default]
    Everyone,
    /// Users in the owner's contacts.
    Contacts,
    /// Nobody but the owner.
    Nobody,
}

impl Audience {
    /// Whether a viewer (not the owner) may see the field.
    pub fn allows(self, viewer_is_contact: bool) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::Contacts => viewer_is_contact,
            Audience::Nobody => false,
        }
    }
}

/// Who may add a user to groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupsAdd {
    /// Any user, contact or not (the default).
    #[default]
    Everyone,
    /// Only users in the owner's contacts.
    Contacts,
}

/// What others may see of a user, and what its profile says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Display {
    /// Display name.
    pub name: Option<String>,
    /// The "about" line.
    pub about: Option<String>,
    /// The profile photo, as a media id (opaque).
    pub avatar: Option<String>,
}

/// Privacy choices; the defaults are WhatsApp's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Privacy {
    /// Who sees when the user was last online (and whether it is online).
    pub last_seen: Audience,
    /// Who sees the avatar.
    pub profile_photo: Audience,
    /// Who sees the about line.
    pub about: Audience,
    /// Who sees status posts.
    pub status: Audience,
    /// Whether the user sends read receipts (and, in exchange, sees others').
    pub read_receipts: bool,
    /// Who may add the user to groups.
    pub groups_add: GroupsAdd,
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            last_seen: Audience::Everyone,
            profile_photo: Audience::Everyone,
            about: Audience::Everyone,
            status: Audience::Everyone,
            read_receipts: true,
            groups_add: GroupsAdd::Everyone,
        }
    }
}

/// A user's settings as stored and as `getSettings` returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Profile fields.
    pub display: Display,
    /// Privacy choices.
    pub privacy: Privacy,
}
