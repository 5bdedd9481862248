//! Connections, presence, activity and last seen; a recording gateway and push service.

use crate::error::PortError;
use crate::ids::{ConnectionId, DeviceId, UserId};
use crate::ports::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Live connections and push endpoints in maps; serves [`ConnectionStore`] and [`PresenceStore`].
#[derive(Default)]
pub struct MemoryConnections(
    Mutex<HashMap<ConnectionId, Connection>>,
    Mutex<BTreeMap<(UserId, DeviceId), String>>,
    Mutex<HashMap<UserId, DateTime<Utc>>>,
    Mutex<HashMap<UserId, chrono::NaiveDate>>,
    std::sync::OnceLock<std::sync::Arc<dyn AccountStore>>,
);

impl MemoryConnections {
    /// Connections that, as the DynamoDB store does, are recorded only while their device is
    /// among `accounts`' devices (without that, any connection is recorded).
    pub fn requiring_devices_of(accounts: std::sync::Arc<dyn AccountStore>) -> Self {
        let s = Self::default();
        let _ = s.4.set(accounts);
        s
    }
}

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn add(&self, c: &Connection) -> Result<(), PortError> {
        if let Some(accounts) = self.4.get() {
            let devices = accounts.devices(&c.user_id).await?;
            if !devices.iter().any(|d| d.device_id == c.device_id) {
                return Err(PortError::Conflict);
            }
        }
        self.0
            .lock()
            .unwrap()
            .insert(c.connection_id.clone(), c.clone());
        Ok(())
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, PortError> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }

    async fn remove(&self, id: &ConnectionId) -> Result<Option<Connection>, PortError> {
        Ok(self.0.lock().unwrap().remove(id))
    }

    async fn forget_user(&self, user: &UserId) -> Result<(), PortError> {
        self.0.lock().unwrap().retain(|_, c| &c.user_id != user);
        self.1.lock().unwrap().retain(|(u, _), _| u != user);
        self.2.lock().unwrap().remove(user);
        Ok(())
    }

    async fn remove_stale(
        &self,
        _user: &UserId,
        _device: &DeviceId,
        id: &ConnectionId,
    ) -> Result<(), PortError> {
        self.0.lock().unwrap().remove(id);
        Ok(())
    }

    async fn for_user(&self, user_id: &UserId) -> Result<Vec<(DeviceId, ConnectionId)>, PortError> {
        let map = self.0.lock().unwrap();
        let mut v: Vec<_> = map
            .values()
            .filter(|c| &c.user_id == user_id)
            .map(|c| (c.device_id.clone(), c.connection_id.clone()))
            .collect();
        v.sort();
        Ok(v)
    }
}

/// A gateway with a set of open connections that records what is posted and closed.
#[derive(Default)]
pub struct RecordingGateway {
    open: Mutex<std::collections::HashSet<ConnectionId>>,
    posted: Mutex<Vec<(ConnectionId, String)>>,
    closed: Mutex<Vec<ConnectionId>>,
}

impl RecordingGateway {
    /// Marks a connection as open.
    pub fn open(&self, id: &ConnectionId) {
        self.open.lock().unwrap().insert(id.clone());
    }

    /// Frames posted, in order.
    pub fn posted(&self) -> Vec<(ConnectionId, String)> {
        self.posted.lock().unwrap().clone()
    }

    /// Connections closed, in order.
    pub fn closed(&self) -> Vec<ConnectionId> {
        self.closed.lock().unwrap().clone()
    }
}

#[async_trait]
impl ConnectionGateway for RecordingGateway {
    async fn post(&self, id: &ConnectionId, data: &str) -> Result<(), GatewayError> {
        if !self.open.lock().unwrap().contains(id) {
            return Err(GatewayError::Gone);
        }
        self.posted
            .lock()
            .unwrap()
            .push((id.clone(), data.to_owned()));
        Ok(())
    }

    async fn close(&self, id: &ConnectionId) -> Result<(), GatewayError> {
        if !self.open.lock().unwrap().remove(id) {
            return Err(GatewayError::Gone);
        }
        self.closed.lock().unwrap().push(id.clone());
        Ok(())
    }
}

#[async_trait]
impl PresenceStore for MemoryConnections {
    async fn presence(&self, users: &[UserId]) -> Result<Vec<Presence>, PortError> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let connections = self.for_user(u).await?;
            let push = self
                .1
                .lock()
                .unwrap()
                .iter()
                .filter(|((user, _), _)| user == u)
                .map(|((_, d), e)| (d.clone(), e.clone()))
                .collect();
            out.push(Presence {
                user_id: u.clone(),
                connections,
                push,
            });
        }
        Ok(out)
    }

    async fn set_push_endpoint(
        &self,
        user: &UserId,
        device: &DeviceId,
        endpoint: &str,
    ) -> Result<(), PortError> {
        self.1
            .lock()
            .unwrap()
            .insert((user.clone(), device.clone()), endpoint.to_owned());
        Ok(())
    }

    async fn forget_push_endpoint(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<(), PortError> {
        self.1
            .lock()
            .unwrap()
            .remove(&(user.clone(), device.clone()));
        Ok(())
    }
}

/// Records pushes; registers endpoints as `endpoint/<platform>/<device>`.
#[derive(Default)]
pub struct RecordingPush(Mutex<Vec<(String, PushNote)>>, Mutex<Vec<(String, UserId)>>);

impl RecordingPush {
    /// Pushes sent: (endpoint, note).
    pub fn sent(&self) -> Vec<(String, PushNote)> {
        self.0.lock().unwrap().clone()
    }

    /// Device-message pushes sent: (endpoint, sender).
    pub fn device_message_pushes(&self) -> Vec<(String, UserId)> {
        self.1.lock().unwrap().clone()
    }
}

#[async_trait]
impl PushService for RecordingPush {
    async fn register(
        &self,
        platform: PushPlatform,
        _token: &str,
        device: &DeviceId,
    ) -> Result<Option<String>, PortError> {
        Ok(Some(format!("endpoint/{platform:?}/{device}")))
    }

    async fn notify(&self, endpoint: &str, note: &PushNote) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), note.clone()));
        Ok(())
    }

    async fn notify_device_message(
        &self,
        endpoint: &str,
        sender: &UserId,
    ) -> Result<(), PortError> {
        self.1
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), sender.clone()));
        Ok(())
    }
}

#[async_trait]
impl ActivityStore for MemoryConnections {
    async fn mark_active(
        &self,
        user: &UserId,
        day: chrono::NaiveDate,
    ) -> Result<FirstActivity, PortError> {
        let mut days = self.3.lock().unwrap();
        let before = days.insert(user.clone(), day);
        Ok(FirstActivity {
            of_day: before != Some(day),
            of_month: before.is_none_or(|b| month_of(b) != month_of(day)),
        })
    }
}

/// `YYYY-MM` of a day.
pub(crate) fn month_of(day: chrono::NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

#[async_trait]
impl LastSeenStore for MemoryConnections {
    async fn record_last_seen(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), PortError> {
        self.2.lock().unwrap().insert(user.clone(), at);
        Ok(())
    }

    async fn last_seen(&self, user: &UserId) -> Result<LastSeen, PortError> {
        let online = self.0.lock().unwrap().values().any(|c| &c.user_id == user);
        Ok(LastSeen {
            online,
            at: self.2.lock().unwrap().get(user).copied(),
        })
    }
}
