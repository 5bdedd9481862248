//! Activity, last seen, settings and contacts.

use crate::error::PortError;
use crate::ids::UserId;
use crate::settings::Settings;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Whether a user is online, and when it was last (for `getProfile`'s last seen).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastSeen {
    /// Some device of the user has a live connection.
    pub online: bool,
    /// When the user's last device connection closed, if one ever did.
    pub at: Option<DateTime<Utc>>,
}

/// Whether a mark of activity was a user's first of its day and of its month (UTC): what daily
/// and monthly active users are counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirstActivity {
    /// First activity of the day.
    pub of_day: bool,
    /// First activity of the month.
    pub of_month: bool,
}

/// Activity markers for the analytics (daily and monthly active users), kept beside presence.
#[async_trait]
pub trait ActivityStore: Send + Sync {
    /// Marks `user` active on `day` and says whether that is its first activity of the day and
    /// of the month. Concurrent marks of the same day count it once.
    async fn mark_active(
        &self,
        user: &UserId,
        day: chrono::NaiveDate,
    ) -> Result<FirstActivity, PortError>;
}

/// Last seen, kept beside the presence the connections already maintain.
#[async_trait]
pub trait LastSeenStore: Send + Sync {
    /// Records that a connection of `user` closed at `at`; nothing is written for a user whose
    /// presence was forgotten (a deleted account).
    async fn record_last_seen(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), PortError>;
    /// Whether `user` is online and when it was last seen.
    async fn last_seen(&self, user: &UserId) -> Result<LastSeen, PortError>;
}

/// Whom each user blocked (`blockUser`), kept beside its contacts. Every settings store is one,
/// so whatever reads a user's privacy settings can also tell whom it blocked.
#[async_trait]
pub trait BlockList: Send + Sync {
    /// `owner` blocks `user` (again: nothing changes).
    async fn block(
        &self,
        owner: &UserId,
        user: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// `owner` unblocks `user` (not blocked: nothing changes).
    async fn unblock(&self, owner: &UserId, user: &UserId) -> Result<(), PortError>;
    /// Whether `owner` blocked `user` (one item lookup).
    async fn has_blocked(&self, owner: &UserId, user: &UserId) -> Result<bool, PortError>;
    /// Everyone `owner` blocked.
    async fn blocked(&self, owner: &UserId) -> Result<Vec<UserId>, PortError>;
    /// Forgets whom `owner` blocked (account deletion).
    async fn delete_blocks(&self, owner: &UserId) -> Result<(), PortError>;
}

/// Profile and privacy settings, contact lists and block lists.
#[async_trait]
pub trait SettingsStore: BlockList + Send + Sync {
    /// A user's settings; `None` if it never changed them (the defaults apply).
    async fn settings(&self, user: &UserId) -> Result<Option<Settings>, PortError>;
    /// Several users' settings at once (missing users are left out: the defaults apply).
    async fn settings_of(
        &self,
        users: &[UserId],
    ) -> Result<std::collections::HashMap<UserId, Settings>, PortError>;
    /// Stores a user's settings.
    async fn put_settings(&self, user: &UserId, settings: &Settings) -> Result<(), PortError>;
    /// Whether `contact` is in `owner`'s contacts (one item lookup).
    async fn is_contact(&self, owner: &UserId, contact: &UserId) -> Result<bool, PortError>;
    /// How many contacts `owner` has.
    async fn contact_count(&self, owner: &UserId) -> Result<usize, PortError>;
    /// Every contact of `owner` (whom a status post notifies).
    async fn contacts(&self, owner: &UserId) -> Result<Vec<UserId>, PortError>;
    /// Adds and removes contacts (adding one already there, or removing one absent, is a no-op).
    async fn update_contacts(
        &self,
        owner: &UserId,
        add: &[UserId],
        remove: &[UserId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Deletes a user's settings and contacts (account deletion).
    async fn delete_settings(&self, user: &UserId) -> Result<(), PortError>;
}
