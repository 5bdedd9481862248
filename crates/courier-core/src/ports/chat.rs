//! Sessions, groups, messages and the record of their inline delivery.

use crate::chat::{Appended, Draft, InlineOutcome, Membership, Message, Receipt, Role, Tail};
use crate::error::PortError;
use crate::ids::{MsgId, SessionId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Sessions and memberships, with each member's receipt watermarks.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates the direct session of `a` and `b` with both memberships; `false` if it existed.
    async fn create_direct(
        &self,
        session: &SessionId,
        a: &UserId,
        b: &UserId,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError>;
    /// Whether the session exists.
    async fn exists(&self, session: &SessionId) -> Result<bool, PortError>;
    /// A user's membership of a session (strongly consistent).
    async fn membership(
        &self,
        session: &SessionId,
        user: &UserId,
    ) -> Result<Option<Membership>, PortError>;
    /// Every member of a session.
    async fn members(&self, session: &SessionId) -> Result<Vec<Membership>, PortError>;
    /// Every session a user belongs to, as its member items are now (watermarks included),
    /// including a membership written a moment ago: read consistently, not through an index that
    /// may lag behind the write.
    async fn sessions_of(&self, user: &UserId) -> Result<Vec<Membership>, PortError>;
    /// Removes the user from every session (account deletion); returns how many.
    async fn leave_all(&self, user: &UserId) -> Result<usize, PortError>;
    /// Moves a member's `delivered` or `read` watermark up to `seq`; `false` if it was already
    /// there or beyond (watermarks never move backwards), or if `seq` is from before the member
    /// joined (not theirs to acknowledge).
    async fn advance(
        &self,
        session: &SessionId,
        user: &UserId,
        receipt: Receipt,
        seq: u64,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError>;
}

/// A group's own record (its members are [`Membership`]s of its session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group's session (`g_...`), which is also the group's id.
    pub session_id: SessionId,
    /// The group's name, as its admins set it.
    pub name: String,
    /// What the group is about (empty when none).
    pub description: String,
    /// Who created it.
    pub created_by: UserId,
    /// When the group was created.
    pub created_at: DateTime<Utc>,
    /// Members right now (kept with every add and remove, so the limit holds under races).
    pub member_count: u32,
}

/// What adding a member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The user is a member now.
    Added,
    /// Already a member: nothing changed.
    AlreadyMember,
    /// The group is at its size limit.
    Full,
    /// No such group (deleted).
    NoGroup,
}

/// Groups: their record and their memberships, which live with the sessions' (a group member is
/// a [`Membership`] of the group's session, found by [`SessionStore`] like any other).
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates the group with its first members (each `(user, role)`), joined at sequence 0.
    /// `Conflict` if the id is taken.
    async fn create_group(
        &self,
        group: &Group,
        members: &[(UserId, Role)],
    ) -> Result<(), PortError>;
    /// The group's record.
    async fn group(&self, session: &SessionId) -> Result<Option<Group>, PortError>;
    /// The member count of every group (analytics: the group census). Reads the whole store,
    /// so only a scheduled job calls it.
    async fn group_sizes(&self) -> Result<Vec<u32>, PortError>;
    /// Adds a member who sees messages after `joined_seq`, unless the group already has `max`.
    async fn add_member(
        &self,
        session: &SessionId,
        user: &UserId,
        joined_seq: u64,
        max: u32,
        at: DateTime<Utc>,
    ) -> Result<Added, PortError>;
    /// Removes a member; `false` if they were not one.
    async fn remove_member(&self, session: &SessionId, user: &UserId) -> Result<bool, PortError>;
    /// Sets a member's role; `false` if they are not a member.
    async fn set_role(
        &self,
        session: &SessionId,
        user: &UserId,
        role: Role,
    ) -> Result<bool, PortError>;
    /// Removes the group record and every membership.
    async fn delete_group(&self, session: &SessionId, members: &[UserId]) -> Result<(), PortError>;
}

/// The messages of sessions, in per-session order.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Appends a message at the next sequence number, once per (sender, clientMsgId).
    async fn append(
        &self,
        session: &SessionId,
        draft: &Draft,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError>;
    /// Messages after `after_seq`, at most `limit`, and whether more follow.
    async fn after(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), PortError>;
    /// One message.
    async fn get(&self, id: &MsgId) -> Result<Option<Message>, PortError>;
    /// Deletes a message for everyone: its place in the session (id, sequence number, sender,
    /// time) stays, as a [`crate::chat::MessageKind::Deleted`] tombstone without payload or
    /// attachments. `false` if there is no such message.
    async fn erase(&self, id: &MsgId) -> Result<bool, PortError>;
    /// The last message of a session, if any.
    async fn last(&self, session: &SessionId) -> Result<Option<Message>, PortError>;
    /// Where the session ends: its last sequence number (0: none), read consistently, never
    /// below a number that was used by a message that has disappeared since, and its
    /// disappearing timer.
    async fn tail(&self, session: &SessionId) -> Result<Tail, PortError>;
    /// The session's last sequence number (see [`MessageStore::tail`]).
    async fn last_seq(&self, session: &SessionId) -> Result<u64, PortError> {
        Ok(self.tail(session).await?.seq)
    }
    /// [`MessageStore::append`] with the session's tail already read (by [`MessageStore::tail`],
    /// side by side with other reads): a stale `tail` only costs a retry at the next number
    /// (with the timer read again), never a wrong one.
    async fn append_after(
        &self,
        session: &SessionId,
        draft: &Draft,
        tail: Tail,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError> {
        let _ = tail;
        self.append(session, draft, at).await
    }
    /// Sets the session's disappearing timer to `seconds` and stores `record` (the `system`
    /// message that tells the members) at the next number, both or neither: every message
    /// after the record follows the new timer, every one before it the old.
    async fn set_timer(
        &self,
        session: &SessionId,
        record: &Draft,
        seconds: u32,
        at: DateTime<Utc>,
    ) -> Result<Message, PortError>;
    /// Records that the session has used numbers up to `seq`, so that [`MessageStore::tail`]
    /// stays above it after the messages there have disappeared and were removed (DynamoDB's
    /// TTL deletes items; without this the next message would take a number members have
    /// already read past). Called for every message that disappears, by the stream consumer.
    async fn keep_floor(&self, session: &SessionId, seq: u64) -> Result<(), PortError>;
}

/// Where the invocation that stored a message records how its own delivery ended, so the stream
/// consumer delivers only what it did not finish ([`crate::chat::InlineOutcome`]).
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Records the outcome for a message (written once, after the posts and pushes).
    async fn record(&self, id: &MsgId, outcome: InlineOutcome) -> Result<(), PortError>;
    /// The recorded outcome, if any (a consistent read: the consumer asks right after a write).
    async fn outcome(&self, id: &MsgId) -> Result<Option<InlineOutcome>, PortError>;
}
