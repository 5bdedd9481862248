//! Live connections and the gateway that posts to them; presence and push.

use crate::error::PortError;
use crate::ids::{ConnectionId, DeviceId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A live WebSocket connection of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Gateway id.
    pub connection_id: ConnectionId,
    /// The account the connection was opened with.
    pub user_id: UserId,
    /// The device whose key opened it.
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
