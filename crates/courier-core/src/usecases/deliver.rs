//! Delivery to devices: post a frame to every live connection of some users, clean up
//! connections the gateway says are gone, and push to devices that could not be reached live.

use crate::chat::{Membership, Message};
use crate::error::PortError;
use crate::ids::{DeviceId, UserId};
use crate::ports::{
    ConnectionGateway, ConnectionStore, GatewayError, PresenceStore, PushNote, PushService,
};
use futures_util::{StreamExt, stream};
use std::collections::HashSet;

/// Management API calls in flight at once per delivery.
pub const MAX_CONCURRENT_POSTS: usize = 32;

/// The ports delivery needs.
pub struct Deliverer<'a> {
    /// Presence (connections and push endpoints).
    pub presence: &'a dyn PresenceStore,
    /// To forget gone connections.
    pub connections: &'a dyn ConnectionStore,
    /// The management API.
    pub gateway: &'a dyn ConnectionGateway,
    /// Push, if this delivery may push offline devices.
    pub push: Option<&'a dyn PushService>,
}

/// What a delivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Frames posted.
    pub posted: usize,
    /// Connections found gone (and removed).
    pub gone: usize,
    /// Frames the gateway refused for good (too large, malformed): logged and skipped, never
    /// retried, since a retry can only be refused again.
    pub refused: usize,
    /// Pushes sent.
    pub pushed: usize,
}

impl Deliverer<'_> {
    /// Posts `frame` to every live connection of `users`, except those of `skip_device`; pushes
    /// `note` (if given) to each device with a push endpoint that no connection reached. Fails if
    /// any post or push failed for a reason worth retrying (not a gone connection, not a frame
    /// refused for good), after trying them all, so the caller can retry (clients de-duplicate).
    pub async fn deliver(
        &self,
        users: &[UserId],
        skip_device: Option<&DeviceId>,
        frame: &str,
        note: Option<&PushNote>,
    ) -> Result<DeliveryReport, PortError> {
        let presence = self.presence.presence(users).await?;
        let targets: Vec<_> = presence
            .iter()
            .flat_map(|p| p.connections.iter().map(move |(d, c)| (&p.user_id, d, c)))
            .filter(|(_, device, _)| Some(*device) != skip_device)
            .collect();
        // The posts are made into futures first (a Vec, not a stream's `map` closure), so no
        // closure over borrowed tuples is part of this future's type: such a closure defeats
        // rustc's proof that callers' futures are `Send` (higher-ranked lifetimes), as when a
        // PIN reset runs a whole account deletion inside `validateAccount`.
        let posts: Vec<_> = targets
            .into_iter()
            .map(|(user, device, conn)| async move {
                (user, device, conn, self.gateway.post(conn, frame).await)
            })
            .collect();
        let results: Vec<_> = stream::iter(posts)
            .buffer_unordered(MAX_CONCURRENT_POSTS)
            .collect()
            .await;

        let mut report = DeliveryReport::default();
        let mut reached: HashSet<&DeviceId> = HashSet::new();
        let mut failure = None;
        for (user, device, conn, result) in results {
            match result {
                Ok(()) => {
                    report.posted += 1;
                    reached.insert(device);
                }
                Err(GatewayError::Gone) => {
                    report.gone += 1;
                    self.connections.remove_stale(user, device, conn).await?;
                }
                Err(GatewayError::Refused(why)) => {
                    report.refused += 1;
                    // The device is not reached live; it gets the push below and syncs.
                    tracing::error!(reason = %why, "frame refused for good; skipped");
                }
                Err(GatewayError::Other(e)) => failure = Some(e),
            }
        }
        if let (Some(push), Some(note)) = (self.push, note) {
            for p in &presence {
                for (device, endpoint) in &p.push {
                    if Some(device) == skip_device || reached.contains(device) {
                        continue;
                    }
                    match push.notify(endpoint, note).await {
                        Ok(()) => report.pushed += 1,
                        Err(e) => failure = Some(e),
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Posts each frame to the live connections of its one target device (not the user's other
    /// devices); a device none of whose connections took its frames gets one content-free push
    /// (`a device message from sender waits`), if it has an endpoint and this delivery may push.
    /// Like [`Deliverer::deliver`], fails after trying everything if a post or push failed for
    /// a reason other than a gone connection.
    pub async fn deliver_to_devices(
        &self,
        frames: &[(UserId, DeviceId, String)],
        sender: &UserId,
    ) -> Result<DeliveryReport, PortError> {
        let mut users: Vec<UserId> = frames.iter().map(|(u, _, _)| u.clone()).collect();
        users.sort();
        users.dedup();
        let presence = self.presence.presence(&users).await?;
        let posts: Vec<_> = frames
            .iter()
            .flat_map(|(user, device, frame)| {
                presence
                    .iter()
                    .filter(move |p| &p.user_id == user)
                    .flat_map(|p| p.connections.iter())
                    .filter(move |(d, _)| d == device)
                    .map(move |(_, conn)| (user, device, conn, frame))
            })
            .collect();
        // Frames to one connection go in order (one at a time); connections side by side.
        let mut by_conn: Vec<(&UserId, &DeviceId, &crate::ids::ConnectionId, Vec<&String>)> =
            Vec::new();
        for (user, device, conn, frame) in posts {
            match by_conn.iter_mut().find(|(_, _, c, _)| *c == conn) {
                Some(entry) => entry.3.push(frame),
                None => by_conn.push((user, device, conn, vec![frame])),
            }
        }
        let results: Vec<_> = stream::iter(by_conn)
            .map(|(user, device, conn, frames)| async move {
                let mut posted = 0;
                for frame in frames {
                    match self.gateway.post(conn, frame).await {
                        Ok(()) => posted += 1,
                        Err(e) => return (user, device, conn, posted, Err(e)),
                    }
                }
                (user, device, conn, posted, Ok(()))
            })
            .buffer_unordered(MAX_CONCURRENT_POSTS)
            .collect()
            .await;
        let mut report = DeliveryReport::default();
        let mut reached: HashSet<(&UserId, &DeviceId)> = HashSet::new();
        let mut failure = None;
        for (user, device, conn, posted, result) in results {
            report.posted += posted;
            match result {
                Ok(()) => {
                    reached.insert((user, device));
                }
                Err(GatewayError::Gone) => {
                    report.gone += 1;
                    self.connections.remove_stale(user, device, conn).await?;
                }
                Err(GatewayError::Refused(why)) => {
                    report.refused += 1;
                    tracing::error!(reason = %why, "frame refused for good; skipped");
                }
                Err(GatewayError::Other(e)) => failure = Some(e),
            }
        }
        if let Some(push) = self.push {
            let mut pushed: HashSet<(&UserId, &DeviceId)> = HashSet::new();
            for (user, device, _) in frames {
                if reached.contains(&(user, device)) || !pushed.insert((user, device)) {
                    continue;
                }
                let endpoint = presence
                    .iter()
                    .filter(|p| &p.user_id == user)
                    .flat_map(|p| p.push.iter())
                    .find(|(d, _)| d == device);
                if let Some((_, endpoint)) = endpoint {
                    match push.notify_device_message(endpoint, sender).await {
                        Ok(()) => report.pushed += 1,
                        Err(e) => failure = Some(e),
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// A stored message waiting for its inline delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// The message as stored.
    pub message: Message,
    /// A direct session's members, read before the write (they never change); `None` for a
    /// group, whose members are read after the write, as the stream consumer reads them, so
    /// that someone added while the message was being written is not missed.
    pub members: Option<Vec<Membership>>,
}
