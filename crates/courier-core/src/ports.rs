//! The narrow interfaces use cases need. Each adapter (DynamoDB, SNS, the API Gateway management
//! API, or the in-memory ones in [`crate::memory`]) implements the ones it can serve; each
//! function is given only the ports its operation uses, which is also its IAM policy.

use crate::error::PortError;
use crate::ids::{ConnectionId, DeviceId, UserId};
use crate::phone::PhoneNumber;
use crate::protocol::Platform;
use crate::secrets::{ApiKeyHash, CodeHash};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A code sent by SMS and not yet used, with the history that rate-limits sending.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRegistration {
    /// The number being registered.
    pub phone: PhoneNumber,
    /// The current code's salted hash.
    pub code: CodeHash,
    /// When the current code stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// Wrong codes entered against the current code.
    pub failed_attempts: u32,
    /// When codes were sent, within the rate-limit window.
    pub sent_at: Vec<DateTime<Utc>>,
    /// Optimistic-concurrency version; every write increments it.
    pub version: u64,
}

/// Pending registrations, one per phone number.
#[async_trait]
pub trait RegistrationStore: Send + Sync {
    /// The pending registration for a number (strongly consistent).
    async fn get(&self, phone: &PhoneNumber) -> Result<Option<PendingRegistration>, PortError>;
    /// Writes `reg` if the stored version is still `expected` (`None`: nothing stored).
    async fn put(&self, reg: &PendingRegistration, expected: Option<u64>) -> Result<(), PortError>;
    /// Removes the registration if its version is still `expected`.
    async fn delete(&self, phone: &PhoneNumber, expected: u64) -> Result<(), PortError>;
}

/// Sends SMS.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends `text` to `to`.
    async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<(), PortError>;
}

/// An account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Its id.
    pub user_id: UserId,
    /// The number it registered with.
    pub phone: PhoneNumber,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A device of an account, with the hash of its API key.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// The user it belongs to.
    pub user_id: UserId,
    /// Its id.
    pub device_id: DeviceId,
    /// Name given by the user.
    pub name: String,
    /// Client kind.
    pub platform: Platform,
    /// Whether this is the phone the number was verified on (it approves linked devices).
    pub primary: bool,
    /// Hash of its API key.
    pub key_hash: ApiKeyHash,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Users, their phone numbers and devices.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The user holding a number, if any.
    async fn user_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError>;
    /// A user's profile.
    async fn user(&self, user_id: &UserId) -> Result<Option<User>, PortError>;
    /// A user's devices.
    async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>, PortError>;
    /// Creates the user, claims its number and adds its first device with its key, all or
    /// nothing. `Conflict` if the number is already claimed.
    async fn create_account(&self, user: &User, device: &Device) -> Result<(), PortError>;
    /// Adds `new_primary` with its key and removes `old` devices with their keys, all or nothing.
    async fn replace_devices(&self, new_primary: &Device, old: &[Device]) -> Result<(), PortError>;
    /// Removes the user, its number claim, its devices and their keys.
    async fn delete_account(&self, user: &User, devices: &[Device]) -> Result<(), PortError>;
    /// Removes one device with its API key, all or nothing.
    async fn remove_device(&self, device: &Device) -> Result<(), PortError>;
    /// The account's approved links whose new device has not collected its key yet (each will
    /// become a companion): they count toward the companion cap.
    async fn pending_links(&self, user_id: &UserId) -> Result<Vec<PendingLink>, PortError>;
    /// Ends the account's pending links: none of them can be completed any more. Returns how
    /// many there were. Every revocation (re-registration, `deleteAccount`, `removeDevice`) calls
    /// it, so a device approved earlier cannot join after the owner has cleaned up.
    async fn end_pending_links(&self, user_id: &UserId) -> Result<usize, PortError>;
    /// Which account a device belongs to, if it exists (device ids are unique across accounts).
    async fn device_owner(&self, device: &DeviceId) -> Result<Option<UserId>, PortError>;
    /// The account's registration PIN (two-step verification), if it has one.
    async fn registration_pin(
        &self,
        user_id: &UserId,
    ) -> Result<Option<RegistrationPinRecord>, PortError>;
    /// Writes the account's PIN record if its stored version is `expected` (`None`: there is
    /// none); `Conflict` otherwise, so concurrent wrong tries cannot undercount.
    async fn put_registration_pin(
        &self,
        pin: &RegistrationPinRecord,
        expected: Option<u64>,
    ) -> Result<(), PortError>;
    /// Removes the account's PIN record (nothing if there is none). `delete_account` removes it
    /// too.
    async fn delete_registration_pin(&self, user_id: &UserId) -> Result<(), PortError>;
}

/// An account's registration PIN: its Argon2id hash and the wrong tries against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPinRecord {
    /// The account.
    pub user_id: UserId,
    /// The PIN's Argon2id hash (PHC string).
    pub hash: String,
    /// Wrong PINs given since the PIN was set or last proven.
    pub failed_attempts: u32,
    /// Set when the tries ran out: no PIN is accepted before it.
    pub locked_until: Option<DateTime<Utc>>,
    /// Optimistic-locking version, starting at 1.
    pub version: u64,
}

/// An approved link whose new device has not collected its key yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLink {
    /// The link request.
    pub link_id: String,
    /// The device it will add.
    pub device_id: DeviceId,
    /// When it stops working (the code's expiry).
    pub expires_at: DateTime<Utc>,
}

/// Who a valid API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredential {
    /// The account.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
}

/// Looks up API keys by hash (the authorizer's only read).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The device a key hash belongs to, if the key is live.
    async fn device_for_key(&self, key: &ApiKeyHash)
    -> Result<Option<DeviceCredential>, PortError>;
}

/// One-time connect tickets (`POST /v1/connect-tickets`): what a browser puts in the WebSocket
/// URL instead of its key. Each is stored by its hash with the hash of the key it stands for.
#[async_trait]
pub trait ConnectTicketStore: Send + Sync {
    /// Stores a ticket for `key` until `expires_at`.
    async fn put_ticket(
        &self,
        ticket: &ApiKeyHash,
        key: &ApiKeyHash,
        expires_at: DateTime<Utc>,
    ) -> Result<(), PortError>;

    /// Removes the ticket and answers its key and expiry, if it was there. However many take
    /// the same ticket at once, at most one gets it (single use).
    async fn take_ticket(
        &self,
        ticket: &ApiKeyHash,
    ) -> Result<Option<(ApiKeyHash, DateTime<Utc>)>, PortError>;
}

/// A live WebSocket connection of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Gateway id.
    pub connection_id: ConnectionId,
    /// Account.
    pub user_id: UserId,
    /// Device.
    pub device_id: DeviceId,
    /// When it opened.
    pub connected_at: DateTime<Utc>,
}

/// Live connections, found by id (on disconnect) and by user (for fan-out).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Records a new connection, only if its device still exists (checked in the same atomic
    /// write): `Conflict` if the device was removed since the authorizer let it in. Revocations
    /// delete the device first and list its connections after, so every connection is either
    /// listed (and closed) or refused here.
    async fn add(&self, connection: &Connection) -> Result<(), PortError>;
    /// Forgets a connection; returns it if it was known.
    async fn remove(&self, connection_id: &ConnectionId) -> Result<Option<Connection>, PortError>;
    /// A connection's record, if it is known (strongly consistent).
    async fn connection(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Option<Connection>, PortError>;
    /// A user's live connections, with their devices.
    async fn for_user(&self, user_id: &UserId) -> Result<Vec<(DeviceId, ConnectionId)>, PortError>;
    /// Forgets everything about a user's presence: connections and push endpoints.
    async fn forget_user(&self, user_id: &UserId) -> Result<(), PortError>;
    /// Forgets a connection the gateway says is gone, even if its own record is already missing
    /// (a socket that died without `$disconnect`, or a half-finished connect). A store may keep
    /// a connection that opened moments ago: API Gateway answers 410 for a connection still
    /// inside `$connect`, which is not gone (the DynamoDB store keeps those younger than 30 s).
    async fn remove_stale(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        connection_id: &ConnectionId,
    ) -> Result<(), PortError>;
}

/// Why posting to a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The connection is closed (API Gateway's `GoneException`).
    #[error("connection is gone")]
    Gone,
    /// The gateway refused this frame for good (`PayloadTooLargeException` 413, a 400): sending
    /// it again can only fail again, so delivery logs it, counts it and goes on.
    #[error("the gateway refused the frame: {0}")]
    Refused(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] PortError),
}

/// The WebSocket gateway's management API.
#[async_trait]
pub trait ConnectionGateway: Send + Sync {
    /// Sends one frame to a connection.
    async fn post(&self, connection_id: &ConnectionId, data: &str) -> Result<(), GatewayError>;
    /// Closes a connection (the gateway then runs `$disconnect`).
    async fn close(&self, connection_id: &ConnectionId) -> Result<(), GatewayError>;
    /// Closes a connection that may still be inside its `$connect` (recorded, not yet open:
    /// the gateway answers `Gone` for it until `$connect` returns): tries again until the close
    /// succeeds or `until` passes. A gateway with no such state closes once.
    async fn close_opening(
        &self,
        connection_id: &ConnectionId,
        until: DateTime<Utc>,
    ) -> Result<(), GatewayError> {
        let _ = until;
        self.close(connection_id).await
    }
}

use crate::chat::{Appended, Draft, InlineOutcome, Membership, Message, Receipt, Role};
use crate::ids::{MsgId, SessionId};

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
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Who created it.
    pub created_by: UserId,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Members right now (kept with every add and remove, so the limit holds under races).
    pub member_count: u32,
}

/// What adding a member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Added.
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
    /// The last message of a session, if any.
    async fn last(&self, session: &SessionId) -> Result<Option<Message>, PortError>;
    /// The session's last sequence number (0: none), read consistently.
    async fn last_seq(&self, session: &SessionId) -> Result<u64, PortError> {
        Ok(self.last(session).await?.map_or(0, |m| m.seq))
    }
    /// [`MessageStore::append`] with the session's last sequence number already read (by
    /// [`MessageStore::last_seq`], side by side with other reads): a stale `last` only costs a
    /// retry at the next number, never a wrong one.
    async fn append_after(
        &self,
        session: &SessionId,
        draft: &Draft,
        last: u64,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError> {
        let _ = last;
        self.append(session, draft, at).await
    }
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

/// Where a user can be reached: live connections and push endpoints, per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The user.
    pub user_id: UserId,
    /// Live connections.
    pub connections: Vec<(DeviceId, ConnectionId)>,
    /// SNS endpoints of devices that registered a push token.
    pub push: Vec<(DeviceId, String)>,
}

/// Presence of many users at once (fan-out), and push endpoints.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// The presence of each user, in the order given (batched reads, not one query per user).
    async fn presence(&self, users: &[UserId]) -> Result<Vec<Presence>, PortError>;
    /// Records a device's push endpoint.
    async fn set_push_endpoint(
        &self,
        user: &UserId,
        device: &DeviceId,
        endpoint: &str,
    ) -> Result<(), PortError>;
    /// Forgets a device's push endpoint (the device was removed).
    async fn forget_push_endpoint(&self, user: &UserId, device: &DeviceId)
    -> Result<(), PortError>;
}

/// Push platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushPlatform {
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging.
    Fcm,
}

/// What a push says: which session has something new, from whom. Never the content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushNote {
    /// The session.
    pub session_id: String,
    /// The sender.
    pub sender: String,
    /// The message.
    pub msg_id: String,
}

/// Push notifications (SNS platform endpoints).
#[async_trait]
pub trait PushService: Send + Sync {
    /// Creates or refreshes a device's endpoint; `None` if the platform is not configured.
    async fn register(
        &self,
        platform: PushPlatform,
        token: &str,
        device: &DeviceId,
    ) -> Result<Option<String>, PortError>;
    /// Sends a note to an endpoint.
    async fn notify(&self, endpoint: &str, note: &PushNote) -> Result<(), PortError>;
    /// Tells a device that a device message from `sender` waits in its queue (no content).
    async fn notify_device_message(&self, endpoint: &str, sender: &UserId)
    -> Result<(), PortError>;
}

/// A pending request from a new device to join an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    /// Random id the new device polls with (it is the new device's secret).
    pub link_id: String,
    /// Short single-use code the primary device approves (shown as a QR code).
    pub code: String,
    /// The new device's name.
    pub name: String,
    /// Its platform.
    pub platform: Platform,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
    /// Set once approved: the account and the new device's id.
    pub approved: Option<DeviceCredential>,
    /// Set once approved: the primary device that approved it (completing the link requires
    /// that it still exists).
    pub approved_by: Option<DeviceId>,
}

/// Link requests, found by id (the new device) and by code (the approving primary device).
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Stores a new request; `Conflict` if its code is already in use.
    async fn create(&self, link: &LinkRequest) -> Result<(), PortError>;
    /// The request with this id.
    async fn by_id(&self, link_id: &str) -> Result<Option<LinkRequest>, PortError>;
    /// The request with this code.
    async fn by_code(&self, code: &str) -> Result<Option<LinkRequest>, PortError>;
    /// Marks a pending request approved for `device` by the primary device `approver`, retires
    /// its code and records it among the account's pending links ([`AccountStore::pending_links`]),
    /// all or nothing; `Conflict` if it was no longer pending or `approver` no longer exists.
    async fn approve(
        &self,
        link: &LinkRequest,
        device: &DeviceCredential,
        approver: &DeviceId,
    ) -> Result<(), PortError>;
    /// Removes an approved request and adds its device with its key, all or nothing, only while
    /// the link is still among the account's pending links and the device that approved it
    /// still exists; `Conflict` otherwise (already taken, ended by a revocation, or its approver
    /// replaced or removed).
    async fn complete(&self, link: &LinkRequest, device: &Device) -> Result<(), PortError>;
}

// ---- Keys and device queues (end-to-end encryption) --------------------------------------------

/// A signed Curve25519 key others claim to start an Olm session with a device: a one-time key
/// or the fallback key. The server checks its shape, never its cryptography.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedKey {
    /// Unique per device.
    pub key_id: String,
    /// The public key, unpadded base64.
    pub key: String,
    /// Its signature by the device's signing key, unpadded base64.
    pub signature: String,
}

/// A device's entry in the key directory: its long-term public keys and its fallback key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    /// The user it belongs to.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// Curve25519 identity key.
    pub identity_key: String,
    /// Ed25519 signing key (verifies the one-time keys' signatures).
    pub signing_key: String,
    /// Handed out, and not consumed, once the one-time keys run out.
    pub fallback: Option<SignedKey>,
}

/// The key directory: per device, its [`DeviceKeys`] and a pool of one-time keys, each of which
/// is handed out at most once.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The entries of every device of a user that has uploaded keys (one query).
    async fn device_keys(&self, user: &UserId) -> Result<Vec<DeviceKeys>, PortError>;
    /// Writes a device's entry. With `discard_old`, its one-time keys are deleted first (the
    /// device's identity changed: keys signed by the old one are useless).
    async fn put_device_keys(&self, keys: &DeviceKeys, discard_old: bool) -> Result<(), PortError>;
    /// The ids of a device's unclaimed one-time keys (strongly consistent).
    async fn one_time_key_ids(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>, PortError>;
    /// How many unclaimed one-time keys a device has.
    async fn one_time_key_count(&self, user: &UserId, device: &DeviceId) -> Result<u32, PortError>;
    /// Stores one-time keys (their ids are not stored yet).
    async fn add_one_time_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: &[SignedKey],
    ) -> Result<(), PortError>;
    /// Removes and returns one unclaimed one-time key of a device; `None` when none is left.
    /// Two claims, however concurrent, never get the same key.
    async fn claim_one_time_key(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Option<SignedKey>, PortError>;
    /// Deletes a device's entry and all its one-time keys.
    async fn delete_device_keys(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError>;
}

/// A message for one device (a room key, a key request...), opaque to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMessage {
    /// Time-sortable id (a ULID): queue order.
    pub id: String,
    /// The sending user.
    pub sender: UserId,
    /// The sending device.
    pub sender_device: DeviceId,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// When it was queued.
    pub sent_at: DateTime<Utc>,
}

/// A device message addressed to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Target user.
    pub user_id: UserId,
    /// Target device.
    pub device_id: DeviceId,
    /// The message.
    pub message: DeviceMessage,
    /// When it is dropped unread.
    pub expires_at: DateTime<Utc>,
}

/// Per-device queues of device messages, oldest first.
#[async_trait]
pub trait DeviceQueueStore: Send + Sync {
    /// Stores messages (all of them, or fails).
    async fn enqueue(&self, messages: &[QueuedMessage]) -> Result<(), PortError>;
    /// Up to `limit` messages of a device's queue that have not expired at `now`, oldest first,
    /// and whether more follow.
    async fn read(
        &self,
        user: &UserId,
        device: &DeviceId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<DeviceMessage>, bool), PortError>;
    /// Removes these ids from a device's queue; returns how many were in it.
    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        ids: &[String],
    ) -> Result<usize, PortError>;
    /// Deletes a device's whole queue.
    async fn purge(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError>;
}

use crate::settings::Settings;

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

/// Profile and privacy settings, and contact lists.
#[async_trait]
pub trait SettingsStore: Send + Sync {
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

/// An HTTP request, signed by the server, that a client sends straight to object storage (S3
/// presigned URLs): the bytes never pass through a function.
#[derive(Debug, Clone, PartialEq)]
pub struct PresignedRequest {
    /// `PUT` or `GET`.
    pub method: String,
    /// The signed URL.
    pub url: String,
    /// Headers the client must send exactly as given (they are part of the signature).
    pub headers: Vec<(String, String)>,
    /// How long the URL stays valid.
    pub expires_in_seconds: u64,
}

/// Object storage for ciphertext blobs (media, backups): presigned uploads and downloads, and the
/// little bookkeeping the server does itself (sizes, tags for lifecycle rules, deletion).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A `PUT` for `key` bound to `content_type` and exactly `size` bytes, stored with `tags`
    /// (S3 object tags, which lifecycle rules can act on), valid for `ttl`.
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        tags: &[(&str, &str)],
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError>;
    /// A `GET` for `key`, valid for `ttl`.
    async fn presign_get(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError>;
    /// The stored object's size in bytes; `None` if nothing is stored under `key`.
    async fn size(&self, key: &str) -> Result<Option<u64>, PortError>;
    /// Replaces the object's tags.
    async fn set_tags(&self, key: &str, tags: &[(&str, &str)]) -> Result<(), PortError>;
    /// Deletes the object (deleting a missing one is not an error).
    async fn delete(&self, key: &str) -> Result<(), PortError>;
}

// ---- Status posts (24-hour stories) -------------------------------------------------------------

/// A status post: ciphertext every allowed viewer can read, live until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The poster.
    pub user_id: UserId,
    /// Time-sortable id (a ULID), unique per poster.
    pub status_id: String,
    /// The poster's device that posted it (its Megolm session decrypts it).
    pub device_id: DeviceId,
    /// End-to-end encrypted; the server stores and forwards it unread.
    pub payload: String,
    /// Media ids.
    pub attachments: Vec<String>,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// When it stops being shown (storage deletes it some time later: DynamoDB TTL).
    pub expires_at: DateTime<Utc>,
}

/// Who viewed a status, and when first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    /// The viewer.
    pub viewer: UserId,
    /// When it first viewed the status.
    pub viewed_at: DateTime<Utc>,
}

/// Status posts and their viewers, per poster. Expired items may still be stored (TTL deletion
/// lags): every read takes `now` and leaves them out.
#[async_trait]
pub trait StatusStore: Send + Sync {
    /// Stores a new status.
    async fn put_status(&self, status: &Status) -> Result<(), PortError>;
    /// A poster's statuses live at `now` with ids after `after`, oldest first, at most `limit`,
    /// and whether more follow.
    async fn live_statuses(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Status>, bool), PortError>;
    /// One status of a poster, if it is live at `now`.
    async fn status(
        &self,
        user: &UserId,
        status_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Status>, PortError>;
    /// Records that `viewer` saw these statuses of `poster` at `at`; a view already recorded
    /// keeps its first time.
    async fn record_views(
        &self,
        poster: &UserId,
        statuses: &[Status],
        viewer: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Viewers of a status (by viewer id, after `after`), at most `limit`, and whether more follow.
    async fn viewers(
        &self,
        poster: &UserId,
        status_id: &str,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<(Vec<StatusView>, bool), PortError>;
    /// Deletes a status and its viewer records.
    async fn remove_status(&self, poster: &UserId, status_id: &str) -> Result<(), PortError>;
    /// Deletes every status of a user and their viewer records (account deletion).
    async fn delete_statuses(&self, user: &UserId) -> Result<(), PortError>;
}
/// A user backup: a ciphertext object the client uploaded to `backups/<userId>/<backupId>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// The user it belongs to.
    pub user_id: UserId,
    /// Random id, unique per user.
    pub backup_id: String,
    /// The size the upload was bound to, in bytes.
    pub size: u64,
    /// When `createBackup` was called.
    pub created_at: DateTime<Utc>,
    /// The object was seen in storage with the right size (until then it is pending and expires).
    pub complete: bool,
}

/// The records of user backups (the objects themselves are in an [`ObjectStore`]).
#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Stores a new pending record.
    async fn put_backup(&self, backup: &BackupRecord) -> Result<(), PortError>;
    /// Every record of a user (pending ones included), newest first.
    async fn backups(&self, user: &UserId) -> Result<Vec<BackupRecord>, PortError>;
    /// One record of a user.
    async fn backup(
        &self,
        user: &UserId,
        backup_id: &str,
    ) -> Result<Option<BackupRecord>, PortError>;
    /// Marks a record complete (its object was uploaded); it no longer expires.
    async fn mark_complete(&self, user: &UserId, backup_id: &str) -> Result<(), PortError>;
    /// Deletes a record (deleting a missing one is not an error).
    async fn delete_backup(&self, user: &UserId, backup_id: &str) -> Result<(), PortError>;
}

/// Shared rate-limit state (see [`crate::rate_limit`]): many function instances take from the
/// same buckets, so the state lives in a store, never in a process.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request for `key` under `rule` at `now`, unless that would exceed the limit;
    /// two concurrent takes never both get the last unit.
    async fn take(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError>;
    /// What a take would answer now, without counting anything.
    async fn check(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError>;
    /// Adds `amount` to `key`'s count in the window of `quota` that holds `now`, unless the
    /// count would pass `quota.max` (then nothing is added); concurrent takes never together
    /// pass it. An amount above `max` is always refused.
    async fn take_amount(
        &self,
        key: &str,
        amount: u64,
        quota: crate::rate_limit::Quota,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError>;
    /// Takes one back from `key`'s count in the window of `window_secs` that holds `now` (a
    /// [`Rule::Window`](crate::rate_limit::Rule::Window) take that turned out not to count);
    /// never below zero.
    async fn give_back(
        &self,
        key: &str,
        window_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
}
