//! Settings, contacts and block lists.

use crate::error::PortError;
use crate::ids::UserId;
use crate::ports::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

/// Settings and contact lists in maps.
#[derive(Default)]
pub struct MemorySettings(
    Mutex<HashMap<UserId, crate::settings::Settings>>,
    Mutex<BTreeMap<(UserId, UserId), DateTime<Utc>>>,
    /// (owner, blocked).
    Mutex<BTreeSet<(UserId, UserId)>>,
);

#[async_trait]
impl BlockList for MemorySettings {
    async fn block(
        &self,
        owner: &UserId,
        user: &UserId,
        _: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.2.lock().unwrap().insert((owner.clone(), user.clone()));
        Ok(())
    }

    async fn unblock(&self, owner: &UserId, user: &UserId) -> Result<(), PortError> {
        self.2
            .lock()
            .unwrap()
            .remove(&(owner.clone(), user.clone()));
        Ok(())
    }

    async fn has_blocked(&self, owner: &UserId, user: &UserId) -> Result<bool, PortError> {
        Ok(self
            .2
            .lock()
            .unwrap()
            .contains(&(owner.clone(), user.clone())))
    }

    async fn blocked(&self, owner: &UserId) -> Result<Vec<UserId>, PortError> {
        Ok(self
            .2
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| o == owner)
            .map(|(_, u)| u.clone())
            .collect())
    }

    async fn delete_blocks(&self, owner: &UserId) -> Result<(), PortError> {
        self.2.lock().unwrap().retain(|(o, _)| o != owner);
        Ok(())
    }
}

#[async_trait]
impl SettingsStore for MemorySettings {
    async fn settings(
        &self,
        user: &UserId,
    ) -> Result<Option<crate::settings::Settings>, PortError> {
        Ok(self.0.lock().unwrap().get(user).cloned())
    }

    async fn settings_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, crate::settings::Settings>, PortError> {
        let map = self.0.lock().unwrap();
        Ok(users
            .iter()
            .filter_map(|u| map.get(u).map(|s| (u.clone(), s.clone())))
            .collect())
    }

    async fn put_settings(
        &self,
        user: &UserId,
        settings: &crate::settings::Settings,
    ) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap()
            .insert(user.clone(), settings.clone());
        Ok(())
    }

    async fn is_contact(&self, owner: &UserId, contact: &UserId) -> Result<bool, PortError> {
        Ok(self
            .1
            .lock()
            .unwrap()
            .contains_key(&(owner.clone(), contact.clone())))
    }

    async fn contact_count(&self, owner: &UserId) -> Result<usize, PortError> {
        Ok(self
            .1
            .lock()
            .unwrap()
            .keys()
            .filter(|(o, _)| o == owner)
            .count())
    }

    async fn contacts(&self, owner: &UserId) -> Result<Vec<UserId>, PortError> {
        Ok(self
            .1
            .lock()
            .unwrap()
            .keys()
            .filter(|(o, _)| o == owner)
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn update_contacts(
        &self,
        owner: &UserId,
        add: &[UserId],
        remove: &[UserId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut map = self.1.lock().unwrap();
        for c in add {
            map.entry((owner.clone(), c.clone())).or_insert(at);
        }
        for c in remove {
            map.remove(&(owner.clone(), c.clone()));
        }
        Ok(())
    }

    async fn delete_settings(&self, user: &UserId) -> Result<(), PortError> {
        self.0.lock().unwrap().remove(user);
        self.1.lock().unwrap().retain(|(o, _), _| o != user);
        Ok(())
    }
}
