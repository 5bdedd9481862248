//! The key directory and device queues.

use crate::error::PortError;
use crate::ids::{DeviceId, UserId};
use crate::ports::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A device's entry and its unclaimed one-time keys, in upload order.
type KeyDirectoryEntry = (DeviceKeys, Vec<SignedKey>);

/// The key directory in maps: entries by device, one-time keys in upload order.
#[derive(Default)]
pub struct MemoryKeys(Mutex<BTreeMap<(UserId, DeviceId), KeyDirectoryEntry>>);

#[async_trait]
impl KeyStore for MemoryKeys {
    async fn device_keys(&self, user: &UserId) -> Result<Vec<DeviceKeys>, PortError> {
        let map = self.0.lock().unwrap();
        Ok(map
            .iter()
            .filter(|((u, _), _)| u == user)
            .map(|(_, (k, _))| k.clone())
            .collect())
    }

    async fn put_device_keys(&self, keys: &DeviceKeys, discard_old: bool) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        let entry = map
            .entry((keys.user_id.clone(), keys.device_id.clone()))
            .or_insert_with(|| (keys.clone(), Vec::new()));
        entry.0 = keys.clone();
        if discard_old {
            entry.1.clear();
        }
        Ok(())
    }

    async fn one_time_key_ids(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>, PortError> {
        let map = self.0.lock().unwrap();
        Ok(map
            .get(&(user.clone(), device.clone()))
            .map(|(_, otks)| otks.iter().map(|k| k.key_id.clone()).collect())
            .unwrap_or_default())
    }

    async fn one_time_key_count(&self, user: &UserId, device: &DeviceId) -> Result<u32, PortError> {
        Ok(self.one_time_key_ids(user, device).await?.len() as u32)
    }

    async fn add_one_time_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: &[SignedKey],
    ) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        let Some((_, otks)) = map.get_mut(&(user.clone(), device.clone())) else {
            return Err(PortError::Conflict);
        };
        otks.extend(keys.iter().cloned());
        Ok(())
    }

    async fn claim_one_time_key(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Option<SignedKey>, PortError> {
        let mut map = self.0.lock().unwrap();
        Ok(map
            .get_mut(&(user.clone(), device.clone()))
            .and_then(|(_, otks)| (!otks.is_empty()).then(|| otks.remove(0))))
    }

    async fn delete_device_keys(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap()
            .remove(&(user.clone(), device.clone()));
        Ok(())
    }
}

/// Device queues in maps, ordered by message id.
#[derive(Default)]
pub struct MemoryDeviceQueues(Mutex<BTreeMap<(UserId, DeviceId, String), QueuedMessage>>);

impl MemoryDeviceQueues {
    /// Every stored message, expired or not (tests check what is kept).
    pub fn all(&self) -> Vec<QueuedMessage> {
        self.0.lock().unwrap().values().cloned().collect()
    }
}

#[async_trait]
impl DeviceQueueStore for MemoryDeviceQueues {
    async fn enqueue(&self, messages: &[QueuedMessage]) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        for m in messages {
            map.insert(
                (m.user_id.clone(), m.device_id.clone(), m.message.id.clone()),
                m.clone(),
            );
        }
        Ok(())
    }

    async fn read(
        &self,
        user: &UserId,
        device: &DeviceId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<DeviceMessage>, bool), PortError> {
        let map = self.0.lock().unwrap();
        let mut live: Vec<DeviceMessage> = map
            .values()
            .filter(|m| &m.user_id == user && &m.device_id == device && m.expires_at > now)
            .map(|m| m.message.clone())
            .collect();
        let more = live.len() > limit;
        live.truncate(limit);
        Ok((live, more))
    }

    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        ids: &[String],
    ) -> Result<usize, PortError> {
        let mut map = self.0.lock().unwrap();
        Ok(ids
            .iter()
            .filter(|id| {
                map.remove(&(user.clone(), device.clone(), (*id).clone()))
                    .is_some()
            })
            .count())
    }

    async fn purge(&self, user: &UserId, device: &DeviceId) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap()
            .retain(|(u, d, _), _| !(u == user && d == device));
        Ok(())
    }
}
