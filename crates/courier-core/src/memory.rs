//! In-memory ports: the same contracts as the DynamoDB adapters (conditional writes included),
//! for use-case tests and for handler tests in the layers above.

use crate::chat::{
    Appended, Draft, InlineOutcome, Membership, Message, Receipt, Role, SessionKind, Watermark,
    timestamp,
};
use crate::error::PortError;
use crate::ids::{ConnectionId, DeviceId, MsgId, SessionId, UserId};
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
        s.pins.remove(&user.user_id);
        Ok(())
    }

    async fn remove_device(&self, d: &Device) -> Result<(), PortError> {
        let mut s = self.0.lock().unwrap();
        s.devices.remove(&(d.user_id.clone(), d.device_id.clone()));
        s.keys.remove(&d.key_hash);
        Ok(())
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

    async fn delete_registration_pin(&self, user_id: &UserId) -> Result<(), PortError> {
        self.0.lock().unwrap().pins.remove(user_id);
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

/// Sessions, memberships and watermarks, and group records, in maps.
#[derive(Default)]
pub struct MemorySessions(
    Mutex<BTreeMap<(SessionId, UserId), Membership>>,
    Mutex<BTreeMap<SessionId, Group>>,
);

#[async_trait]
impl GroupStore for MemorySessions {
    async fn create_group(
        &self,
        group: &Group,
        members: &[(UserId, Role)],
    ) -> Result<(), PortError> {
        let mut groups = self.1.lock().unwrap();
        if groups.contains_key(&group.session_id) {
            return Err(PortError::Conflict);
        }
        let mut map = self.0.lock().unwrap();
        for (u, role) in members {
            map.insert(
                (group.session_id.clone(), u.clone()),
                Membership {
                    session_id: group.session_id.clone(),
                    kind: SessionKind::Group,
                    user_id: u.clone(),
                    joined_at: group.created_at,
                    joined_seq: 0,
                    role: *role,
                    delivered: Watermark::default(),
                    read: Watermark::default(),
                },
            );
        }
        groups.insert(
            group.session_id.clone(),
            Group {
                member_count: members.len() as u32,
                ..group.clone()
            },
        );
        Ok(())
    }

    async fn group(&self, session: &SessionId) -> Result<Option<Group>, PortError> {
        Ok(self.1.lock().unwrap().get(session).cloned())
    }

    async fn group_sizes(&self) -> Result<Vec<u32>, PortError> {
        let groups = self.1.lock().unwrap();
        let members = self.0.lock().unwrap();
        Ok(groups
            .keys()
            .map(|g| members.keys().filter(|(s, _)| s == g).count() as u32)
            .collect())
    }

    async fn add_member(
        &self,
        session: &SessionId,
        user: &UserId,
        joined_seq: u64,
        max: u32,
        at: DateTime<Utc>,
    ) -> Result<Added, PortError> {
        let mut groups = self.1.lock().unwrap();
        let Some(g) = groups.get_mut(session) else {
            return Ok(Added::NoGroup);
        };
        let mut map = self.0.lock().unwrap();
        let key = (session.clone(), user.clone());
        if map.contains_key(&key) {
            return Ok(Added::AlreadyMember);
        }
        if g.member_count >= max {
            return Ok(Added::Full);
        }
        g.member_count += 1;
        map.insert(
            key,
            Membership {
                session_id: session.clone(),
                kind: SessionKind::Group,
                user_id: user.clone(),
                joined_at: at,
                joined_seq,
                role: Role::Member,
                delivered: Watermark::default(),
                read: Watermark::default(),
            },
        );
        Ok(Added::Added)
    }

    async fn remove_member(&self, session: &SessionId, user: &UserId) -> Result<bool, PortError> {
        let mut groups = self.1.lock().unwrap();
        let removed = self
            .0
            .lock()
            .unwrap()
            .remove(&(session.clone(), user.clone()))
            .is_some();
        if removed && let Some(g) = groups.get_mut(session) {
            g.member_count -= 1;
        }
        Ok(removed)
    }

    async fn set_role(
        &self,
        session: &SessionId,
        user: &UserId,
        role: Role,
    ) -> Result<bool, PortError> {
        match self
            .0
            .lock()
            .unwrap()
            .get_mut(&(session.clone(), user.clone()))
        {
            Some(m) => {
                m.role = role;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_group(&self, session: &SessionId, _: &[UserId]) -> Result<(), PortError> {
        self.1.lock().unwrap().remove(session);
        self.0.lock().unwrap().retain(|(s, _), _| s != session);
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create_direct(
        &self,
        session: &SessionId,
        a: &UserId,
        b: &UserId,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut map = self.0.lock().unwrap();
        if map.keys().any(|(s, _)| s == session) {
            return Ok(false);
        }
        for u in [a, b] {
            let m = Membership {
                session_id: session.clone(),
                kind: SessionKind::Direct,
                user_id: u.clone(),
                joined_at: at,
                joined_seq: 0,
                role: Role::Member,
                delivered: Watermark::default(),
                read: Watermark::default(),
            };
            map.insert((session.clone(), u.clone()), m);
        }
        Ok(true)
    }

    async fn exists(&self, session: &SessionId) -> Result<bool, PortError> {
        Ok(self.1.lock().unwrap().contains_key(session)
            || self.0.lock().unwrap().keys().any(|(s, _)| s == session))
    }

    async fn membership(
        &self,
        session: &SessionId,
        user: &UserId,
    ) -> Result<Option<Membership>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&(session.clone(), user.clone()))
            .cloned())
    }

    async fn members(&self, session: &SessionId) -> Result<Vec<Membership>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|m| &m.session_id == session)
            .cloned()
            .collect())
    }

    async fn sessions_of(&self, user: &UserId) -> Result<Vec<Membership>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|m| &m.user_id == user)
            .cloned()
            .collect())
    }

    async fn leave_all(&self, user: &UserId) -> Result<usize, PortError> {
        let mut map = self.0.lock().unwrap();
        let before = map.len();
        map.retain(|(_, u), _| u != user);
        Ok(before - map.len())
    }

    async fn advance(
        &self,
        session: &SessionId,
        user: &UserId,
        receipt: Receipt,
        seq: u64,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut map = self.0.lock().unwrap();
        let Some(m) = map.get_mut(&(session.clone(), user.clone())) else {
            return Ok(false);
        };
        if seq <= m.joined_seq {
            // Before the member joined: not theirs to acknowledge.
            return Ok(false);
        }
        let mark = match receipt {
            Receipt::Delivered => &mut m.delivered,
            Receipt::Read => &mut m.read,
            Receipt::Sent => return Ok(false),
        };
        if mark.seq >= seq {
            return Ok(false);
        }
        *mark = Watermark { seq, at: Some(at) };
        Ok(true)
    }
}

/// The first result of a (sender, clientMsgId): msgId, seq, sentAt.
type FirstResult = (String, u64, String);

/// Messages in per-session vectors, with idempotency by (sender, clientMsgId).
#[derive(Default)]
pub struct MemoryMessages {
    sessions: Mutex<HashMap<SessionId, Vec<Message>>>,
    sent: Mutex<HashMap<(UserId, String), FirstResult>>,
    /// Which stored messages asked for inline delivery ([`Draft::inline`]).
    inline: Mutex<std::collections::HashSet<String>>,
    outcomes: Mutex<HashMap<String, InlineOutcome>>,
}

#[async_trait]
impl DeliveryLog for MemoryMessages {
    async fn record(&self, id: &MsgId, outcome: InlineOutcome) -> Result<(), PortError> {
        self.outcomes
            .lock()
            .unwrap()
            .insert(id.to_string(), outcome);
        Ok(())
    }

    async fn outcome(&self, id: &MsgId) -> Result<Option<InlineOutcome>, PortError> {
        Ok(self.outcomes.lock().unwrap().get(&id.to_string()).copied())
    }
}

#[async_trait]
impl MessageStore for MemoryMessages {
    async fn append(
        &self,
        session: &SessionId,
        draft: &Draft,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError> {
        let mut sent = self.sent.lock().unwrap();
        let key = (draft.sender.clone(), draft.client_msg_id.clone());
        if let Some((msg_id, seq, sent_at)) = sent.get(&key) {
            return Ok(Appended::Duplicate {
                msg_id: msg_id.clone(),
                seq: *seq,
                sent_at: sent_at.clone(),
            });
        }
        let mut sessions = self.sessions.lock().unwrap();
        let log = sessions.entry(session.clone()).or_default();
        let seq = log.len() as u64 + 1;
        let m = Message {
            msg_id: MsgId {
                session: session.clone(),
                seq,
            }
            .to_string(),
            session_id: session.clone(),
            seq,
            sender: draft.sender.clone(),
            sender_device: draft.sender_device.clone(),
            client_msg_id: draft.client_msg_id.clone(),
            kind: draft.kind.clone(),
            payload: draft.payload.clone(),
            attachments: draft.attachments.clone(),
            sent_at: timestamp(at),
        };
        log.push(m.clone());
        sent.insert(key, (m.msg_id.clone(), seq, m.sent_at.clone()));
        if draft.inline {
            self.inline.lock().unwrap().insert(m.msg_id.clone());
        }
        Ok(Appended::New(m))
    }

    async fn after(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), PortError> {
        let sessions = self.sessions.lock().unwrap();
        let log = sessions.get(session).map(Vec::as_slice).unwrap_or_default();
        let rest: Vec<_> = log.iter().filter(|m| m.seq > after_seq).cloned().collect();
        let more = rest.len() > limit;
        Ok((rest.into_iter().take(limit).collect(), more))
    }

    async fn get(&self, id: &MsgId) -> Result<Option<Message>, PortError> {
        let sessions = self.sessions.lock().unwrap();
        Ok(sessions
            .get(&id.session)
            .and_then(|log| log.iter().find(|m| m.seq == id.seq).cloned()))
    }

    async fn last(&self, session: &SessionId) -> Result<Option<Message>, PortError> {
        Ok(self
            .sessions
            .lock()
            .unwrap()
            .get(session)
            .and_then(|log| log.last().cloned()))
    }
}

impl MemoryMessages {
    /// Whether a stored message asked for inline delivery (what the stream record carries).
    pub fn is_inline(&self, msg_id: &str) -> bool {
        self.inline.lock().unwrap().contains(msg_id)
    }

    /// Every stored message of a session, in order (for tests that play the stream).
    pub fn all(&self, session: &SessionId) -> Vec<Message> {
        self.sessions
            .lock()
            .unwrap()
            .get(session)
            .cloned()
            .unwrap_or_default()
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

/// Settings and contact lists in maps.
#[derive(Default)]
pub struct MemorySettings(
    Mutex<HashMap<UserId, crate::settings::Settings>>,
    Mutex<BTreeMap<(UserId, UserId), DateTime<Utc>>>,
);

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

/// Objects in a map, with presigned URLs of the form `memory://<key>`; tests store the bytes a
/// client would have uploaded with [`MemoryObjects::put`].
#[derive(Default)]
pub struct MemoryObjects(Mutex<BTreeMap<String, StoredObject>>);

/// What [`MemoryObjects`] keeps per key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredObject {
    /// The bytes.
    pub body: Vec<u8>,
    /// The content type it was uploaded with.
    pub content_type: String,
    /// Its tags.
    pub tags: Vec<(String, String)>,
}

impl MemoryObjects {
    /// Stores `body` under `key`, as a client's upload would.
    pub fn put(&self, key: &str, body: Vec<u8>, content_type: &str) {
        self.0.lock().unwrap().insert(
            key.to_owned(),
            StoredObject {
                body,
                content_type: content_type.to_owned(),
                tags: Vec::new(),
            },
        );
    }

    /// The object under `key`.
    pub fn get(&self, key: &str) -> Option<StoredObject> {
        self.0.lock().unwrap().get(key).cloned()
    }

    /// Every key stored.
    pub fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
}

fn owned_tags(tags: &[(&str, &str)]) -> Vec<(String, String)> {
    tags.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        tags: &[(&str, &str)],
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError> {
        let tagging = owned_tags(tags)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = vec![
            ("content-type".to_owned(), content_type.to_owned()),
            ("content-length".to_owned(), size.to_string()),
        ];
        if !tagging.is_empty() {
            headers.push(("x-amz-tagging".to_owned(), tagging));
        }
        Ok(PresignedRequest {
            method: "PUT".into(),
            url: format!("memory://{key}"),
            headers,
            expires_in_seconds: ttl.as_secs(),
        })
    }

    async fn presign_get(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError> {
        Ok(PresignedRequest {
            method: "GET".into(),
            url: format!("memory://{key}"),
            headers: Vec::new(),
            expires_in_seconds: ttl.as_secs(),
        })
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, PortError> {
        Ok(self.0.lock().unwrap().get(key).map(|o| o.body.len() as u64))
    }

    async fn set_tags(&self, key: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        if let Some(o) = self.0.lock().unwrap().get_mut(key) {
            o.tags = owned_tags(tags);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

/// Status posts and views in maps, keyed like the table: (poster, status id) and
/// (poster, status id, viewer).
#[derive(Default)]
pub struct MemoryStatuses {
    statuses: Mutex<BTreeMap<(UserId, String), Status>>,
    views: Mutex<BTreeMap<(UserId, String, UserId), DateTime<Utc>>>,
}

#[async_trait]
impl StatusStore for MemoryStatuses {
    async fn put_status(&self, status: &Status) -> Result<(), PortError> {
        self.statuses.lock().unwrap().insert(
            (status.user_id.clone(), status.status_id.clone()),
            status.clone(),
        );
        Ok(())
    }

    async fn live_statuses(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Status>, bool), PortError> {
        let map = self.statuses.lock().unwrap();
        let mut live = map
            .values()
            .filter(|s| &s.user_id == user && s.expires_at > now)
            .filter(|s| after.is_none_or(|a| s.status_id.as_str() > a));
        let page: Vec<Status> = live.by_ref().take(limit).cloned().collect();
        Ok((page, live.next().is_some()))
    }

    async fn status(
        &self,
        user: &UserId,
        status_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Status>, PortError> {
        Ok(self
            .statuses
            .lock()
            .unwrap()
            .get(&(user.clone(), status_id.to_owned()))
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn record_views(
        &self,
        poster: &UserId,
        statuses: &[Status],
        viewer: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut views = self.views.lock().unwrap();
        for s in statuses {
            views
                .entry((poster.clone(), s.status_id.clone(), viewer.clone()))
                .or_insert(at);
        }
        Ok(())
    }

    async fn viewers(
        &self,
        poster: &UserId,
        status_id: &str,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<(Vec<StatusView>, bool), PortError> {
        let views = self.views.lock().unwrap();
        let mut found = views
            .iter()
            .filter(|((p, s, v), _)| p == poster && s == status_id && after.is_none_or(|a| v > a))
            .map(|((_, _, v), at)| StatusView {
                viewer: v.clone(),
                viewed_at: *at,
            });
        let page: Vec<StatusView> = found.by_ref().take(limit).collect();
        Ok((page, found.next().is_some()))
    }

    async fn remove_status(&self, poster: &UserId, status_id: &str) -> Result<(), PortError> {
        self.statuses
            .lock()
            .unwrap()
            .remove(&(poster.clone(), status_id.to_owned()));
        self.views
            .lock()
            .unwrap()
            .retain(|(p, s, _), _| !(p == poster && s == status_id));
        Ok(())
    }

    async fn delete_statuses(&self, user: &UserId) -> Result<(), PortError> {
        self.statuses.lock().unwrap().retain(|(p, _), _| p != user);
        self.views.lock().unwrap().retain(|(p, _, _), _| p != user);
        Ok(())
    }
}
/// Backup records in a map, per user.
#[derive(Default)]
pub struct MemoryBackups(Mutex<HashMap<UserId, Vec<BackupRecord>>>);

#[async_trait]
impl BackupStore for MemoryBackups {
    async fn put_backup(&self, backup: &BackupRecord) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        let list = map.entry(backup.user_id.clone()).or_default();
        list.retain(|b| b.backup_id != backup.backup_id);
        list.push(backup.clone());
        Ok(())
    }

    async fn backups(&self, user: &UserId) -> Result<Vec<BackupRecord>, PortError> {
        let mut list = self
            .0
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default();
        list.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.backup_id.cmp(&a.backup_id))
        });
        Ok(list)
    }

    async fn backup(
        &self,
        user: &UserId,
        backup_id: &str,
    ) -> Result<Option<BackupRecord>, PortError> {
        let map = self.0.lock().unwrap();
        Ok(map
            .get(user)
            .and_then(|l| l.iter().find(|b| b.backup_id == backup_id).cloned()))
    }

    async fn mark_complete(&self, user: &UserId, backup_id: &str) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        if let Some(b) = map
            .get_mut(user)
            .and_then(|l| l.iter_mut().find(|b| b.backup_id == backup_id))
        {
            b.complete = true;
        }
        Ok(())
    }

    async fn delete_backup(&self, user: &UserId, backup_id: &str) -> Result<(), PortError> {
        if let Some(l) = self.0.lock().unwrap().get_mut(user) {
            l.retain(|b| b.backup_id != backup_id);
        }
        Ok(())
    }
}

/// Rate-limit state in a map, with the arithmetic of the DynamoDB adapter.
#[derive(Default)]
pub struct MemoryRateLimiter(Mutex<HashMap<String, i64>>);

impl MemoryRateLimiter {
    fn decide(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
        count: bool,
    ) -> crate::rate_limit::Decision {
        use crate::rate_limit::{Decision, Rule, gcra, millis, window_of, window_retry};
        let mut map = self.0.lock().unwrap();
        match rule {
            Rule::TokenBucket { burst, interval_ms } => {
                let slot = format!("{key}#tat");
                match gcra(burst, interval_ms, map.get(&slot).copied(), millis(now)) {
                    Ok(tat) => {
                        if count {
                            map.insert(slot, tat);
                        }
                        Decision::Allowed
                    }
                    Err(retry_after_secs) => Decision::Limited { retry_after_secs },
                }
            }
            Rule::Window { max, window_secs } => {
                let (start, _) = window_of(window_secs, now);
                let n = map.entry(format!("{key}#{start}")).or_insert(0);
                if *n >= i64::from(max) {
                    return window_retry(window_secs, now);
                }
                if count {
                    *n += 1;
                }
                Decision::Allowed
            }
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn take(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError> {
        Ok(self.decide(key, rule, now, true))
    }

    async fn check(
        &self,
        key: &str,
        rule: crate::rate_limit::Rule,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError> {
        Ok(self.decide(key, rule, now, false))
    }

    async fn take_amount(
        &self,
        key: &str,
        amount: u64,
        quota: crate::rate_limit::Quota,
        now: DateTime<Utc>,
    ) -> Result<crate::rate_limit::Decision, PortError> {
        use crate::rate_limit::{Decision, window_of, window_retry};
        let (start, _) = window_of(quota.window_secs, now);
        let mut map = self.0.lock().unwrap();
        let n = map.entry(format!("{key}#{start}")).or_insert(0);
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        let max = i64::try_from(quota.max).unwrap_or(i64::MAX);
        if amount > max || *n > max - amount {
            return Ok(window_retry(quota.window_secs, now));
        }
        *n += amount;
        Ok(Decision::Allowed)
    }

    async fn give_back(
        &self,
        key: &str,
        window_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let (start, _) = crate::rate_limit::window_of(window_secs, now);
        let mut map = self.0.lock().unwrap();
        if let Some(n) = map.get_mut(&format!("{key}#{start}")) {
            *n = (*n - 1).max(0);
        }
        Ok(())
    }
}
