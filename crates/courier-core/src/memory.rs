//! In-memory ports: the same contracts as the DynamoDB adapters (conditional writes included),
//! for use-case tests and for handler tests in the layers above.

use crate::error::PortError;
use crate::ids::{ConnectionId, DeviceId, UserId};
use crate::phone::PhoneNumber;
use crate::ports::*;
use crate::secrets::ApiKeyHash;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Pending registrations in a map.
#[derive(Default)]
pub struct MemoryRegistrations(Mutex<HashMap<PhoneNumber, PendingRegistration>>);

#[async_trait]
impl RegistrationStore for MemoryRegistrations {
    async fn get(&self, phone: &PhoneNumber) -> Result<Option<PendingRegistration>, PortError> {
        Ok(self.0.lock().unwrap().get(phone).cloned())
    }

    async fn put(&self, reg: &PendingRegistration, expected: Option<u64>) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        if map.get(&reg.phone).map(|r| r.version) != expected {
            return Err(PortError::Conflict);
        }
        map.insert(reg.phone.clone(), reg.clone());
        Ok(())
    }

    async fn delete(&self, phone: &PhoneNumber, expected: u64) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        if map.get(phone).map(|r| r.version) != Some(expected) {
            return Err(PortError::Conflict);
        }
        map.remove(phone);
        Ok(())
    }
}

#[derive(Default)]
struct AccountState {
    users: HashMap<UserId, User>,
    phones: HashMap<PhoneNumber, UserId>,
    devices: BTreeMap<(UserId, DeviceId), Device>,
    keys: HashMap<ApiKeyHash, DeviceCredential>,
}

/// Users, devices and keys in maps; serves both [`AccountStore`] and [`CredentialStore`].
#[derive(Default)]
pub struct MemoryAccounts(Mutex<AccountState>);

impl MemoryAccounts {
    /// How many API keys are live (tests check keys do not leak).
    pub fn live_keys(&self) -> usize {
        self.0.lock().unwrap().keys.len()
    }
}

#[async_trait]
impl AccountStore for MemoryAccounts {
    async fn user_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError> {
        Ok(self.0.lock().unwrap().phones.get(phone).cloned())
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<User>, PortError> {
        Ok(self.0.lock().unwrap().users.get(user_id).cloned())
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>, PortError> {
        let s = self.0.lock().unwrap();
        Ok(s.devices
            .values()
            .filter(|d| &d.user_id == user_id)
            .cloned()
            .collect())
    }

    async fn create_account(&self, user: &User, device: &Device) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        if s.phones.contains_key(&user.phone) {
            return Err(PortError::Conflict);
        }
        s.phones.insert(user.phone.clone(), user.user_id.clone());
        s.users.insert(user.user_id.clone(), user.clone());
        insert_device(&mut s, device);
        Ok(())
    }

    async fn replace_devices(&self, new_primary: &Device, old: &[Device]) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        for d in old {
            s.devices.remove(&(d.user_id.clone(), d.device_id.clone()));
            s.keys.remove(&d.key_hash);
        }
        insert_device(&mut s, new_primary);
        Ok(())
    }

    async fn delete_account(&self, user: &User, devices: &[Device]) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        for d in devices {
            s.devices.remove(&(d.user_id.clone(), d.device_id.clone()));
            s.keys.remove(&d.key_hash);
        }
        s.users.remove(&user.user_id);
        s.phones.remove(&user.phone);
        Ok(())
    }
}

fn insert_device(s: &mut AccountState, d: &Device) {
    s.keys.insert(
        d.key_hash.clone(),
        DeviceCredential {
            user_id: d.user_id.clone(),
            device_id: d.device_id.clone(),
        },
    );
    s.devices
        .insert((d.user_id.clone(), d.device_id.clone()), d.clone());
}

#[async_trait]
impl CredentialStore for MemoryAccounts {
    async fn device_for_key(
        &self,
        key: &ApiKeyHash,
    ) -> Result<Option<DeviceCredential>, PortError> {
        Ok(self.0.lock().unwrap().keys.get(key).cloned())
    }
}

/// Live connections in a map.
#[derive(Default)]
pub struct MemoryConnections(Mutex<HashMap<ConnectionId, Connection>>);

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn add(&self, c: &Connection) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap()
            .insert(c.connection_id.clone(), c.clone());
        Ok(())
    }

    async fn remove(&self, id: &ConnectionId) -> Result<Option<Connection>, PortError> {
        Ok(self.0.lock().unwrap().remove(id))
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

/// Records SMS instead of sending them.
#[derive(Default)]
pub struct RecordingSms(Mutex<Vec<(PhoneNumber, String)>>);

impl RecordingSms {
    /// Every SMS sent so far.
    pub fn sent(&self) -> Vec<(PhoneNumber, String)> {
        self.0.lock().unwrap().clone()
    }

    /// The six-digit code in the last SMS to `phone`.
    pub fn last_code(&self, phone: &str) -> Option<String> {
        let sent = self.0.lock().unwrap();
        let (_, text) = sent.iter().rev().find(|(p, _)| p.as_str() == phone)?;
        extract_code(text)
    }
}

/// Finds the first run of exactly six digits in an SMS text.
pub fn extract_code(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_owned)
}

#[async_trait]
impl SmsSender for RecordingSms {
    async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<(), PortError> {
        self.0.lock().unwrap().push((to.clone(), text.to_owned()));
        Ok(())
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
