//! Registrations, accounts and devices, API keys, connect tickets, links; SMS recorded.

use crate::error::PortError;
use crate::ids::{DeviceId, UserId};
use crate::phone::PhoneNumber;
use crate::ports::*;
use crate::secrets::ApiKeyHash;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
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
    links: HashMap<String, LinkRequest>,
    /// Approved links not yet completed, by account.
    pending: HashMap<UserId, Vec<PendingLink>>,
    pins: HashMap<UserId, RegistrationPinRecord>,
}

/// Users, devices and keys in maps; serves both [`AccountStore`] and [`CredentialStore`]. Clones
/// share their state (as two clients of one table do).
#[derive(Default, Clone)]
pub struct MemoryAccounts(std::sync::Arc<Mutex<AccountState>>);

impl MemoryAccounts {
    /// How many API keys are live (tests check keys do not leak).
    pub fn live_keys(&self) -> usize {
        self.0.lock().unwrap().keys.len()
    }
}

#[async_trait]
impl UserDirectory for MemoryAccounts {
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

    async fn device_owner(&self, device: &DeviceId) -> Result<Option<UserId>, PortError> {
        let s = self.0.lock().unwrap();
        Ok(s.devices
            .keys()
            .find(|(_, d)| d == device)
            .map(|(u, _)| u.clone()))
    }

    async fn pending_links(&self, user_id: &UserId) -> Result<Vec<PendingLink>, PortError> {
        let s = self.0.lock().unwrap();
        Ok(s.pending.get(user_id).cloned().unwrap_or_default())
    }

    async fn end_pending_links(&self, user_id: &UserId) -> Result<usize, PortError> {
        let mut s = self.0.lock().unwrap();
        Ok(s.pending.remove(user_id).map_or(0, |v| v.len()))
    }

    async fn registration_pin(
        &self,
        user_id: &UserId,
    ) -> Result<Option<RegistrationPinRecord>, PortError> {
        Ok(self.0.lock().unwrap().pins.get(user_id).cloned())
    }

    async fn put_registration_pin(
        &self,
        pin: &RegistrationPinRecord,
        expected: Option<u64>,
    ) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        if s.pins.get(&pin.user_id).map(|p| p.version) != expected {
            return Err(PortError::Conflict);
        }
        s.pins.insert(pin.user_id.clone(), pin.clone());
        Ok(())
    }

    async fn delete_registration_pin(
        &self,
        user_id: &UserId,
        expected: Option<u64>,
    ) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        if let Some(v) = expected
            && s.pins.get(user_id).map(|p| p.version) != Some(v)
        {
            return Err(PortError::Conflict);
        }
        s.pins.remove(user_id);
        Ok(())
    }
}

#[async_trait]
impl AccountStore for MemoryAccounts {
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
        s.pins.remove(&user.user_id);
        Ok(())
    }

    async fn remove_device(&self, d: &Device) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        s.devices.remove(&(d.user_id.clone(), d.device_id.clone()));
        s.keys.remove(&d.key_hash);
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

/// Connect tickets in a map.
#[derive(Default)]
pub struct MemoryConnectTickets(Mutex<HashMap<ApiKeyHash, (ApiKeyHash, DateTime<Utc>)>>);

#[async_trait]
impl ConnectTicketStore for MemoryConnectTickets {
    async fn put_ticket(
        &self,
        ticket: &ApiKeyHash,
        key: &ApiKeyHash,
        expires_at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap()
            .insert(ticket.clone(), (key.clone(), expires_at));
        Ok(())
    }

    async fn take_ticket(
        &self,
        ticket: &ApiKeyHash,
    ) -> Result<Option<(ApiKeyHash, DateTime<Utc>)>, PortError> {
        Ok(self.0.lock().unwrap().remove(ticket))
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

#[async_trait]
impl LinkStore for MemoryAccounts {
    async fn create(&self, link: &LinkRequest) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        if s.links.values().any(|l| l.code == link.code) {
            return Err(PortError::Conflict);
        }
        s.links.insert(link.link_id.clone(), link.clone());
        Ok(())
    }

    async fn by_id(&self, link_id: &str) -> Result<Option<LinkRequest>, PortError> {
        Ok(self.0.lock().unwrap().links.get(link_id).cloned())
    }

    async fn by_code(&self, code: &str) -> Result<Option<LinkRequest>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .links
            .values()
            .find(|l| l.code == code && l.approved.is_none())
            .cloned())
    }

    async fn approve(
        &self,
        link: &LinkRequest,
        device: &DeviceCredential,
        approver: &DeviceId,
    ) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        if !s
            .devices
            .contains_key(&(device.user_id.clone(), approver.clone()))
        {
            return Err(PortError::Conflict);
        }
        match s.links.get_mut(&link.link_id) {
            Some(l) if l.approved.is_none() => {
                l.approved = Some(device.clone());
                l.approved_by = Some(approver.clone());
                let pending = PendingLink {
                    link_id: l.link_id.clone(),
                    device_id: device.device_id.clone(),
                    expires_at: l.expires_at,
                };
                s.pending
                    .entry(device.user_id.clone())
                    .or_default()
                    .push(pending);
                Ok(())
            }
            _ => Err(PortError::Conflict),
        }
    }

    async fn complete(&self, link: &LinkRequest, device: &Device) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        let Some(l) = s.links.get(&link.link_id).cloned() else {
            return Err(PortError::Conflict);
        };
        let (Some(approved), Some(approver)) = (&l.approved, &l.approved_by) else {
            return Err(PortError::Conflict);
        };
        let still_pending = s
            .pending
            .get(&approved.user_id)
            .is_some_and(|v| v.iter().any(|p| p.link_id == l.link_id));
        let approver_exists = s
            .devices
            .contains_key(&(approved.user_id.clone(), approver.clone()));
        if !still_pending || !approver_exists {
            return Err(PortError::Conflict);
        }
        s.links.remove(&link.link_id);
        if let Some(v) = s.pending.get_mut(&approved.user_id) {
            v.retain(|p| p.link_id != l.link_id);
        }
        insert_device(&mut s, device);
        Ok(())
    }
}
