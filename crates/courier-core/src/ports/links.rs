//! Linking a new device to an account.

use super::accounts::{Device, DeviceCredential};
use crate::error::PortError;
use crate::ids::DeviceId;
use crate::protocol::Platform;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

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
