//! The shared set-up of the core tests (`mod support;` in each file): one [`World`] holding every
//! in-memory store and a manual clock, the accounts, devices and connections tests start from,
//! and the use-case `Deps` that several files build alike. What only one file needs stays there,
//! in its own `impl World` block.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use courier_core::clock::{Clock, ManualClock};
use courier_core::media::MemoryMedia;
use courier_core::memory::*;
use courier_core::ports::{AccountStore, Device, DeviceCredential, User};
use courier_core::protocol::{InitiateDirectChatParams, Platform};
use courier_core::secrets::ApiKey;
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::{
    connections, delete_message, direct_chat, disappearing, groups, profile, read_messages,
    register_account, remove_device, send_message,
};
use courier_core::{ConnectionId, DeviceId, PhoneNumber, UserId};
use serde_json::Value;

/// Every in-memory store a use case may take, all empty, and a clock that moves only when told.
pub struct World {
    pub registrations: MemoryRegistrations,
    pub sms: RecordingSms,
    pub accounts: MemoryAccounts,
    pub connections: MemoryConnections,
    pub gateway: RecordingGateway,
    pub push: RecordingPush,
    pub sessions: MemorySessions,
    pub messages: MemoryMessages,
    pub settings: MemorySettings,
    pub keys: MemoryKeys,
    pub queues: MemoryDeviceQueues,
    pub media: MemoryMedia,
    pub objects: MemoryObjects,
    pub statuses: MemoryStatuses,
    pub backups: MemoryBackups,
    pub limiter: MemoryRateLimiter,
    pub clock: ManualClock,
    /// The deployment's test numbers for `registerAccount` (none unless a test sets them).
    pub test_numbers: Option<register_account::TestNumbers>,
}

/// An account made by [`World::account`]: its user, devices and their API keys (the primary's
/// first).
pub struct Account {
    pub user: UserId,
    pub primary: DeviceCredential,
    pub companions: Vec<DeviceCredential>,
    pub keys: Vec<ApiKey>,
}

/// The credential of `user`'s device `device`, as the authorizer would pass it on.
pub fn who(user: &UserId, device: &str) -> DeviceCredential {
    DeviceCredential {
        user_id: user.clone(),
        device_id: DeviceId::from_trusted(device),
    }
}

/// The credential of a stored device.
pub fn cred(d: &Device) -> DeviceCredential {
    DeviceCredential {
        user_id: d.user_id.clone(),
        device_id: d.device_id.clone(),
    }
}

impl World {
    /// An empty world whose clock stands at 2026-11-28 12:00 UTC.
    pub fn new() -> Self {
        Self::at(Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap())
    }

    /// An empty world whose clock stands at `start`.
    pub fn at(start: DateTime<Utc>) -> Self {
        Self {
            registrations: Default::default(),
            sms: Default::default(),
            accounts: Default::default(),
            connections: Default::default(),
            gateway: Default::default(),
            push: Default::default(),
            sessions: Default::default(),
            messages: Default::default(),
            settings: Default::default(),
            keys: Default::default(),
            queues: Default::default(),
            media: Default::default(),
            objects: Default::default(),
            statuses: Default::default(),
            backups: Default::default(),
            limiter: Default::default(),
            clock: ManualClock::new(start),
            test_numbers: None,
        }
    }

    /// As the `$connect` function's store: a connection is recorded only while its device exists.
    pub fn requiring_devices_to_connect(mut self) -> Self {
        self.connections =
            MemoryConnections::requiring_devices_of(std::sync::Arc::new(self.accounts.clone()));
        self
    }

    /// Creates an account for `phone` whose one device, the primary, is `device`; returns the
    /// user.
    pub async fn user(&self, phone: &str, device: &str) -> UserId {
        self.create_account(phone, DeviceId::from_trusted(device), 0)
            .await
            .user
    }

    /// Creates an account for `phone` with a primary device and `companions` more, all with
    /// generated ids.
    pub async fn account(&self, phone: &str, companions: usize) -> Account {
        self.create_account(phone, DeviceId::generate(), companions)
            .await
    }

    async fn create_account(&self, phone: &str, primary: DeviceId, companions: usize) -> Account {
        let user = UserId::generate();
        let device = |device_id: DeviceId, primary: bool, key: &ApiKey| Device {
            user_id: user.clone(),
            device_id,
            name: "phone".into(),
            platform: Platform::Ios,
            primary,
            key_hash: key.hash(),
            created_at: self.clock.now(),
        };
        let mut api_keys = vec![ApiKey::generate()];
        let primary = device(primary, true, &api_keys[0]);
        self.accounts
            .create_account(
                &User {
                    user_id: user.clone(),
                    phone: PhoneNumber::parse(phone).unwrap(),
                    created_at: self.clock.now(),
                },
                &primary,
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        for _ in 0..companions {
            let k = ApiKey::generate();
            let d = device(DeviceId::generate(), false, &k);
            // Adds a device without removing any.
            self.accounts.replace_devices(&d, &[]).await.unwrap();
            out.push(cred(&d));
            api_keys.push(k);
        }
        Account {
            user,
            primary: cred(&primary),
            companions: out,
            keys: api_keys,
        }
    }

    /// `$connect` of `who` as connection `id`, which the gateway then knows as open.
    pub async fn connect(&self, who: &DeviceCredential, id: &str) -> ConnectionId {
        let id = ConnectionId::new(id);
        connections::connect(&self.connections, &self.clock, id.clone(), who)
            .await
            .unwrap();
        self.gateway.open(&id);
        id
    }

    /// The frames the gateway posted to connection `id`, in order.
    pub fn frames_to(&self, id: &ConnectionId) -> Vec<Value> {
        self.gateway
            .posted()
            .into_iter()
            .filter(|(c, _)| c == id)
            .map(|(_, f)| serde_json::from_str(&f).unwrap())
            .collect()
    }

    /// Delivery to live connections, with pushes to the devices that have none.
    pub fn deliverer(&self) -> Deliverer<'_> {
        Deliverer {
            presence: &self.connections,
            connections: &self.connections,
            gateway: &self.gateway,
            push: Some(&self.push),
        }
    }

    /// `registerAccount` with codes of the usual lifetime, this World's test numbers, and no
    /// limits or SMS guard (a test adds them with `..`).
    pub fn register_deps(&self) -> register_account::Deps<'_> {
        register_account::Deps {
            registrations: &self.registrations,
            sms: &self.sms,
            clock: &self.clock,
            code_lifetime_secs: register_account::CODE_LIFETIME_SECS,
            test_numbers: self.test_numbers.clone(),
            limits: None,
            sms_guard: None,
        }
    }

    pub fn chat_deps(&self) -> direct_chat::Deps<'_> {
        direct_chat::Deps {
            accounts: &self.accounts,
            sessions: &self.sessions,
            messages: &self.messages,
            clock: &self.clock,
            handshakes_per_target: None,
            blocks: Some(&self.settings),
        }
    }

    /// The group use cases over this World's stores (no delivery log, no cap on adds).
    pub fn group_deps(&self) -> groups::Deps<'_> {
        groups::Deps {
            groups: &self.sessions,
            sessions: &self.sessions,
            messages: &self.messages,
            accounts: &self.accounts,
            settings: &self.settings,
            deliver: self.deliverer(),
            log: None,
            clock: &self.clock,
            adds_per_target: None,
        }
    }

    /// The profile use cases, `getProfile`'s last seen and shared chats included.
    pub fn profile_deps(&self) -> profile::Deps<'_> {
        profile::Deps {
            settings: &self.settings,
            accounts: &self.accounts,
            last_seen: Some(&self.connections),
            sessions: Some(&self.sessions),
            clock: &self.clock,
        }
    }

    /// `from` sends a `text` message (no media, no rate limit); the reply as JSON.
    pub async fn send_text(
        &self,
        from: &DeviceCredential,
        session: &str,
        cmid: &str,
        payload: &str,
    ) -> Result<serde_json::Value, courier_core::ApiError> {
        let p: courier_core::protocol::SendMessageParams = serde_json::from_value(
            serde_json::json!({"sessionId": session, "clientMsgId": cmid, "type": "text", "payload": payload}),
        )
        .unwrap();
        send_message::send_message(&self.send_deps(), from, p)
            .await
            .map(|r| Wire::json(&r))
    }

    /// `deleteMessage` without a rate limit, delivering as the function does (inline, logged).
    pub fn delete_message_deps(&self) -> delete_message::Deps<'_> {
        delete_message::Deps {
            sessions: &self.sessions,
            messages: &self.messages,
            media: &self.media,
            clock: &self.clock,
            throttle: None,
            deliver: self.deliverer(),
            log: Some(&self.messages),
        }
    }

    /// `setDisappearingTimer` without a rate limit, delivering as the function does, with a
    /// test timer of 5 seconds allowed.
    pub fn disappearing_deps(&self) -> disappearing::Deps<'_> {
        disappearing::Deps {
            sessions: &self.sessions,
            messages: &self.messages,
            clock: &self.clock,
            throttle: None,
            deliver: self.deliverer(),
            log: Some(&self.messages),
            test_seconds: Some(5),
        }
    }

    /// Every message of `session` that `by` can read, as JSON (one page of the default size).
    pub async fn read_all(&self, by: &DeviceCredential, session: &str) -> Vec<serde_json::Value> {
        let p = courier_core::protocol::ReadNewMessagesParams {
            session_id: session.into(),
            last_msg_id: None,
            limit: None,
        };
        let page =
            read_messages::read_new_messages(&self.sessions, &self.messages, &self.clock, by, p)
                .await
                .unwrap();
        Wire::json(&page)["messages"].as_array().unwrap().clone()
    }

    /// Sending without media or a rate limit.
    pub fn send_deps(&self) -> send_message::Deps<'_> {
        send_message::Deps {
            sessions: &self.sessions,
            messages: &self.messages,
            clock: &self.clock,
            media: None,
            throttle: None,
            blocks: Some(&self.settings),
        }
    }

    pub fn remove_deps(&self) -> remove_device::Deps<'_> {
        remove_device::Deps {
            accounts: &self.accounts,
            connections: &self.connections,
            presence: &self.connections,
            gateway: &self.gateway,
            keys: &self.keys,
            queues: &self.queues,
        }
    }

    /// `who` registers an APNs push token and has no connection: an offline device that a push
    /// would wake.
    pub async fn offline_with_push(&self, who: &DeviceCredential) {
        let p: courier_core::protocol::RegisterPushTokenParams =
            serde_json::from_value(serde_json::json!({"platform": "apns", "token": "tok"}))
                .unwrap();
        courier_core::usecases::push_token::register_push_token(
            &self.push,
            &self.connections,
            who,
            p,
        )
        .await
        .unwrap();
    }

    /// A world of two users, A (device `d_0`) and B (device `d_1`), and their direct chat.
    pub async fn two() -> (World, UserId, UserId, String) {
        let w = World::new();
        let a = w.user("+14155550100", "d_0").await;
        let b = w.user("+14155550101", "d_1").await;
        let s = w.open(&who(&a, "d_0"), &b).await;
        (w, a, b, s)
    }

    /// `a` opens the direct chat with `b` (no handshake); returns its session id.
    pub async fn open(&self, a: &DeviceCredential, b: &UserId) -> String {
        let p = InitiateDirectChatParams {
            peer_user_id: b.to_string(),
            handshake: None,
        };
        direct_chat::initiate(&self.chat_deps(), a, p)
            .await
            .unwrap()
            .reply
            .json()["sessionId"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// A page of messages as a reader gets it: its reply fits in one WebSocket frame
/// ([`MAX_FRAME_BYTES`](courier_core::protocol::MAX_FRAME_BYTES)) and holds at least one message
/// (a page moves the reader on). The page's JSON.
pub fn page_in_one_frame(page: &impl serde::Serialize) -> Value {
    let frame = courier_core::protocol::reply_ok(Some("r1"), page);
    assert!(
        frame.len() <= courier_core::protocol::MAX_FRAME_BYTES,
        "a {} byte reply",
        frame.len()
    );
    let page = page.json();
    assert!(
        !page["messages"].as_array().unwrap().is_empty(),
        "a page moves the reader on"
    );
    page
}

/// A reply as it goes on the wire, for the tests that read it as the client does: use cases return
/// typed replies, and a test that checks the JSON checks what the client gets.
pub trait Wire {
    /// The reply's JSON.
    fn json(&self) -> Value;
}

impl<T: serde::Serialize> Wire for T {
    fn json(&self) -> Value {
        serde_json::to_value(self).expect("a reply is JSON")
    }
}
