//! Account use cases on in-memory ports: registration codes, verification, re-registration,
//! the authorizer, connections and account deletion.

mod support;

use chrono::{Duration, Utc};
use courier_core::clock::Clock;
use courier_core::memory::*;
use courier_core::ports::{
    BackupStore, ConnectionStore, DeviceCredential, PresenceStore, SessionStore, SettingsStore,
    StatusStore, UserDirectory,
};
use courier_core::protocol::{
    CheckRegistrationPinParams, Credentials, DeviceInfo, Platform, RemoveRegistrationPinParams,
    SetRegistrationPinParams, ValidateAccountRequest,
};
use courier_core::usecases::{
    authorize, connections, delete_account, link_device, register_account, registration_pin,
    remove_device, validate_account,
};
use courier_core::{ConnectionId, ErrorCode, PhoneNumber};
use support::{Wire, World};

const PHONE: &str = "+14155550100";

/// A World (whose connections need their device) with one account of [`PHONE`]: its primary
/// (`owner`) and a companion linked to it.
async fn owner_and_companion() -> (World, Credentials, Credentials) {
    let w = World::new().requiring_devices_to_connect();
    let owner = w.sign_up(PHONE).await;
    let companion = w.poll_link(&w.approved_link(&owner).await).await.unwrap();
    (w, owner, companion)
}

impl World {
    fn link_deps(&self) -> link_device::Deps<'_> {
        link_device::Deps {
            links: &self.accounts,
            accounts: Some(&self.accounts),
            clock: &self.clock,
            throttle: None,
        }
    }
    /// A new device asks to be linked and `primary` approves it; the new device does not poll
    /// yet. Returns the link id it polls with.
    async fn approved_link(&self, primary: &Credentials) -> String {
        let deps = self.link_deps();
        let device = DeviceInfo {
            name: "attacker's laptop".into(),
            platform: Platform::Web,
        };
        let req = link_device::request_link(&deps, device, None)
            .await
            .unwrap();
        let who = self.authorize(&primary.api_key).await.unwrap();
        link_device::approve(&deps, &who, req.json()["code"].as_str().unwrap())
            .await
            .unwrap();
        req.json()["linkId"].as_str().unwrap().to_owned()
    }
    async fn poll_link(&self, link_id: &str) -> Result<Credentials, ErrorCode> {
        match link_device::poll(&self.link_deps(), link_id).await {
            Ok(link_device::LinkPoll::Linked(c)) => Ok(c),
            Ok(link_device::LinkPoll::Pending) => panic!("the link was approved"),
            Err(e) => Err(e.code),
        }
    }
    /// `removeDevice` of `device` by `owner`, from the owner's connection `conn-owner`.
    async fn remove_device(&self, owner: &DeviceCredential, device: &Credentials) {
        let params = courier_core::protocol::RemoveDeviceParams {
            device_id: device.device_id.clone(),
        };
        remove_device::remove_device(
            &self.remove_deps(),
            owner,
            &ConnectionId::new("conn-owner"),
            params,
        )
        .await
        .unwrap();
    }
    /// `deleteAccount` over this World's stores.
    fn delete_deps(&self) -> delete_account::Deps<'_> {
        delete_account::Deps {
            accounts: &self.accounts,
            connections: &self.connections,
            gateway: &self.gateway,
            keys: &self.keys,
            queues: &self.queues,
            clock: &self.clock,
            data: self.data(),
        }
    }
    /// `deleteAccount` from `primary`'s connection `current`.
    async fn delete_account(&self, primary: &Credentials, current: &ConnectionId) {
        let who = self.authorize(&primary.api_key).await.unwrap();
        delete_account::delete_account(&self.delete_deps(), &who, current)
            .await
            .unwrap();
    }
    fn data(&self) -> delete_account::AccountData<'_> {
        delete_account::AccountData {
            sessions: &self.sessions,
            groups: &self.sessions,
            messages: &self.messages,
            presence: &self.connections,
            settings: &self.settings,
            statuses: &self.statuses,
            backups: &self.backups,
            objects: &self.objects,
        }
    }
    async fn register(&self, phone: &str) -> Result<u64, courier_core::ApiError> {
        register_account::register_account(&self.register_deps(), phone, None)
            .await
            .map(|r| r.expires_in_seconds)
    }
    async fn verify(&self, phone: &str, code: &str) -> Result<Credentials, courier_core::ApiError> {
        self.verify_with_pin(phone, code, None).await
    }
    async fn verify_with_pin(
        &self,
        phone: &str,
        code: &str,
        pin: Option<&str>,
    ) -> Result<Credentials, courier_core::ApiError> {
        let deps = validate_account::Deps {
            registrations: &self.registrations,
            accounts: &self.accounts,
            connections: &self.connections,
            gateway: &self.gateway,
            keys: &self.keys,
            queues: &self.queues,
            clock: &self.clock,
            data: self.data(),
        };
        let req = ValidateAccountRequest {
            phone: phone.into(),
            code: code.into(),
            device: DeviceInfo {
                name: "Pixel 9".into(),
                platform: Platform::Android,
            },
            pin: pin.map(str::to_owned),
        };
        validate_account::validate_account(&deps, &req).await
    }
    async fn sign_up(&self, phone: &str) -> Credentials {
        self.register(phone).await.unwrap();
        let code = self.sms.last_code(phone).unwrap();
        self.verify(phone, &code).await.unwrap()
    }
    /// A new code for `phone`, as the person holding its SIM reads it.
    async fn fresh_code(&self, phone: &str) -> String {
        self.register(phone).await.unwrap();
        self.sms.last_code(phone).unwrap()
    }
    /// Verifies a fresh code for [`PHONE`] with `pin`.
    async fn verify_fresh_code(
        &self,
        pin: Option<&str>,
    ) -> Result<Credentials, courier_core::ApiError> {
        let code = self.fresh_code(PHONE).await;
        self.verify_with_pin(PHONE, &code, pin).await
    }
    fn pin_deps<'a>(&'a self, limiter: &'a MemoryRateLimiter) -> registration_pin::Deps<'a> {
        registration_pin::Deps {
            accounts: &self.accounts,
            limit: Some(courier_core::rate_limit::Throttle {
                limiter,
                rule: courier_core::rate_limit::Rule::Window {
                    max: 3,
                    window_secs: 3600,
                },
            }),
            // The deployment's default: 5 wrong PINs a day per account.
            checks: Some(courier_core::rate_limit::Throttle {
                limiter,
                rule: courier_core::rate_limit::Limits::default().pin_checks,
            }),
            clock: &self.clock,
        }
    }
    async fn set_pin(&self, creds: &Credentials, pin: &str) -> Result<(), courier_core::ApiError> {
        let who = self.authorize(&creds.api_key).await.unwrap();
        let limiter = MemoryRateLimiter::default();
        let params = SetRegistrationPinParams {
            pin: pin.into(),
            current_pin: None,
        };
        let deps = self.pin_deps(&limiter);
        let reply = registration_pin::set_registration_pin(&deps, &who, params).await?;
        assert!(reply.pin_enabled);
        Ok(())
    }
    async fn authorize(&self, key: &str) -> Result<DeviceCredential, courier_core::ApiError> {
        authorize::authorize(
            &self.accounts,
            authorize::presented_key(Some(&format!("Bearer {key}"))),
        )
        .await
    }
    /// `$connect` with the API key of `creds`, as the authorizer lets it through.
    async fn connect_with_key(&self, creds: &Credentials, id: &str) -> ConnectionId {
        let who = self.authorize(&creds.api_key).await.unwrap();
        self.connect(&who, id).await
    }
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

#[tokio::test]
async fn a_code_goes_out_by_sms_and_verifying_it_creates_the_account() {
    let w = World::new().requiring_devices_to_connect();
    assert_eq!(w.register(PHONE).await.unwrap(), 900);
    let sent = w.sms.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.as_str(), PHONE);
    let code = w.sms.last_code(PHONE).unwrap();
    let creds = w.verify(PHONE, &code).await.unwrap();
    assert!(creds.user_id.starts_with("u_") && creds.device_id.starts_with("d_"));
    let who = w.authorize(&creds.api_key).await.unwrap();
    assert_eq!(who.user_id.as_str(), creds.user_id);
    assert_eq!(who.device_id.as_str(), creds.device_id);
    // Single use: the same code again finds nothing pending.
    assert_eq!(
        w.verify(PHONE, &code).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn malformed_numbers_are_refused_and_nothing_is_sent() {
    let w = World::new().requiring_devices_to_connect();
    for bad in ["4155550100", "+1 415 555 0100", "+11234567890", "", "+"] {
        let e = w.register(bad).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
    }
    assert!(w.sms.sent().is_empty());
}

#[tokio::test]
async fn at_most_three_codes_per_fifteen_minutes() {
    let w = World::new().requiring_devices_to_connect();
    for _ in 0..3 {
        w.register(PHONE).await.unwrap();
        w.clock.advance(Duration::minutes(1));
    }
    let e = w.register(PHONE).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(
        e.retry_after_secs,
        Some(12 * 60),
        "the first code leaves the window 15 min after it was sent"
    );
    assert_eq!(w.sms.sent().len(), 3);
    w.clock.advance(Duration::minutes(12));
    w.register(PHONE).await.unwrap();
    assert_eq!(w.sms.sent().len(), 4);
}

#[tokio::test]
async fn a_new_code_replaces_the_previous_one() {
    let w = World::new().requiring_devices_to_connect();
    w.register(PHONE).await.unwrap();
    let first = w.sms.last_code(PHONE).unwrap();
    w.register(PHONE).await.unwrap();
    let second = w.sms.last_code(PHONE).unwrap();
    if first != second {
        assert_eq!(
            w.verify(PHONE, &first).await.unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }
    w.verify(PHONE, &second).await.unwrap();
}

#[tokio::test]
async fn five_wrong_tries_lock_the_code_even_for_the_right_one() {
    let w = World::new().requiring_devices_to_connect();
    w.register(PHONE).await.unwrap();
    let code = w.sms.last_code(PHONE).unwrap();
    for left in (0..5).rev() {
        let e = w.verify(PHONE, wrong(&code)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(
            e.message.contains(&format!("{left} tries left")),
            "{}",
            e.message
        );
    }
    let e = w.verify(PHONE, &code).await.unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::LimitExceeded,
        "the 6th try is refused even with the right code"
    );
    assert_eq!(w.accounts.live_keys(), 0);
}

#[tokio::test]
async fn codes_expire_after_fifteen_minutes() {
    let w = World::new().requiring_devices_to_connect();
    w.register(PHONE).await.unwrap();
    let code = w.sms.last_code(PHONE).unwrap();
    w.clock.advance(Duration::minutes(15));
    assert_eq!(
        w.verify(PHONE, &code).await.unwrap_err().code,
        ErrorCode::Expired
    );
    assert_eq!(w.accounts.live_keys(), 0);
}

#[tokio::test]
async fn malformed_codes_and_devices_are_bad_requests_that_cost_no_try() {
    let w = World::new().requiring_devices_to_connect();
    w.register(PHONE).await.unwrap();
    let code = w.sms.last_code(PHONE).unwrap();
    for bad in ["12345", "1234567", "abcdef", ""] {
        assert_eq!(
            w.verify(PHONE, bad).await.unwrap_err().code,
            ErrorCode::BadRequest
        );
    }
    assert_eq!(
        w.verify("+1415", &code).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    w.verify(PHONE, &code).await.unwrap();
}

#[tokio::test]
async fn re_registering_keeps_the_user_replaces_the_key_and_closes_old_connections() {
    let w = World::new().requiring_devices_to_connect();
    let old = w.sign_up(PHONE).await;
    let old_conn = w.connect_with_key(&old, "conn-old").await;
    let other = w.sign_up("+14155550101").await;
    let other_conn = w.connect_with_key(&other, "conn-other").await;

    let who_old = courier_core::UserId::from_trusted(old.user_id.clone());
    let old_device = courier_core::DeviceId::from_trusted(old.device_id.clone());
    w.connections
        .set_push_endpoint(&who_old, &old_device, "arn:old-phone")
        .await
        .unwrap();

    let new = w.sign_up(PHONE).await;
    assert_eq!(new.user_id, old.user_id, "same account");
    let presence = w
        .connections
        .presence(std::slice::from_ref(&who_old))
        .await
        .unwrap();
    assert!(
        presence[0].push.is_empty(),
        "the old phone gets no more pushes"
    );
    assert_ne!(new.device_id, old.device_id);
    assert_eq!(
        w.authorize(&old.api_key).await.unwrap_err().code,
        ErrorCode::Unauthorized
    );
    w.authorize(&new.api_key).await.unwrap();
    assert_eq!(w.gateway.closed(), vec![old_conn]);
    let who = courier_core::UserId::from_trusted(old.user_id.clone());
    assert!(w.connections.for_user(&who).await.unwrap().is_empty());
    // Someone else's connection is untouched.
    let other_id = courier_core::UserId::from_trusted(other.user_id.clone());
    assert_eq!(w.connections.for_user(&other_id).await.unwrap().len(), 1);
    assert!(!w.gateway.closed().contains(&other_conn));
}

#[tokio::test]
async fn the_authorizer_refuses_missing_and_unknown_keys() {
    let w = World::new().requiring_devices_to_connect();
    w.sign_up(PHONE).await;
    assert_eq!(
        authorize::authorize(&w.accounts, None)
            .await
            .unwrap_err()
            .code,
        ErrorCode::Unauthorized
    );
    assert_eq!(
        w.authorize("ck_not-a-key").await.unwrap_err().code,
        ErrorCode::Unauthorized
    );
}

#[tokio::test]
async fn deleting_an_account_revokes_keys_closes_other_connections_and_frees_the_number() {
    let w = World::new().requiring_devices_to_connect();
    let me = w.sign_up(PHONE).await;
    let current = w.connect_with_key(&me, "conn-1").await;
    let second = w.connect_with_key(&me, "conn-2").await;
    let friend = w.sign_up("+14155550101").await;
    let friend_conn = w.connect_with_key(&friend, "conn-f").await;

    let who = w.authorize(&me.api_key).await.unwrap();
    let sessions = &w.sessions;
    let friend_id = courier_core::UserId::from_trusted(friend.user_id.clone());
    let me_id = courier_core::UserId::from_trusted(me.user_id.clone());
    let chat = courier_core::SessionId::direct(&me_id, &friend_id);
    sessions
        .create_direct(&chat, &me_id, &friend_id, Utc::now())
        .await
        .unwrap();
    w.connections
        .set_push_endpoint(
            &me_id,
            &courier_core::DeviceId::from_trusted("d_x"),
            "arn:endpoint",
        )
        .await
        .unwrap();
    // A backup: its record and object go with the account.
    let (backups, objects) = (&w.backups, &w.objects);
    let backup_deps = courier_core::usecases::backups::Deps {
        backups,
        objects,
        clock: &courier_core::clock::SystemClock,
        quota: None,
    };
    let created = courier_core::usecases::backups::create_backup(
        &backup_deps,
        &who,
        courier_core::protocol::CreateBackupParams { size: 3 },
    )
    .await
    .unwrap();
    let key = format!(
        "backups/{}/{}",
        me.user_id,
        created.json()["backupId"].as_str().unwrap()
    );
    objects.put(&key, b"abc".to_vec(), "application/octet-stream");
    let deps = w.delete_deps();
    let to_close = delete_account::delete_account(&deps, &who, &current)
        .await
        .unwrap();
    assert_eq!(to_close, current);
    assert!(objects.keys().is_empty(), "the backup object is deleted");
    assert!(backups.backups(&me_id).await.unwrap().is_empty());
    assert_eq!(w.gateway.closed(), vec![second]);
    assert_eq!(
        w.authorize(&me.api_key).await.unwrap_err().code,
        ErrorCode::Unauthorized
    );
    w.authorize(&friend.api_key).await.unwrap();
    assert!(!w.gateway.closed().contains(&friend_conn));
    // Deleting again finds nothing.
    assert_eq!(
        delete_account::delete_account(&deps, &who, &current)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    // The number can be registered afresh, as a new user.
    let again = w.sign_up(PHONE).await;
    assert_ne!(again.user_id, me.user_id);
    let _ = PhoneNumber::parse(PHONE).unwrap();
}

#[tokio::test]
async fn disconnect_forgets_the_connection() {
    let w = World::new().requiring_devices_to_connect();
    let me = w.sign_up(PHONE).await;
    let c = w.connect_with_key(&me, "conn-1").await;
    let disconnect = || {
        connections::disconnect(
            &w.connections,
            &w.connections,
            &courier_core::clock::SystemClock,
            &c,
        )
    };
    disconnect().await.unwrap();
    let who = courier_core::UserId::from_trusted(me.user_id);
    assert!(w.connections.for_user(&who).await.unwrap().is_empty());
    // Disconnecting an unknown connection is not an error (the gateway may retry).
    disconnect().await.unwrap();
}

#[tokio::test]
async fn moving_to_a_new_phone_and_deleting_the_account_delete_the_old_devices_keys_and_queues() {
    use courier_core::ports::{
        DeviceKeys, DeviceMessage, DeviceQueueStore, KeyStore, QueuedMessage, SignedKey,
    };
    let w = World::new().requiring_devices_to_connect();
    let old = w.sign_up(PHONE).await;
    let user = courier_core::UserId::from_trusted(old.user_id.clone());
    let device = courier_core::DeviceId::from_trusted(old.device_id.clone());
    async fn seed(w: &World, user: &courier_core::UserId, device: &courier_core::DeviceId) {
        let (user, device) = (user.clone(), device.clone());
        {
            let entry = DeviceKeys {
                user_id: user.clone(),
                device_id: device.clone(),
                identity_key: "I".repeat(43),
                signing_key: "S".repeat(43),
                fallback: None,
            };
            w.keys.put_device_keys(&entry, false).await.unwrap();
            let k = SignedKey {
                key_id: "k1".into(),
                key: "K".repeat(43),
                signature: "G".repeat(86),
            };
            w.keys
                .add_one_time_keys(&user, &device, &[k])
                .await
                .unwrap();
            let message = DeviceMessage {
                id: "01KB0000000000000000000000".into(),
                sender: user.clone(),
                sender_device: device.clone(),
                payload: "p".into(),
                sent_at: Utc::now(),
            };
            w.queues
                .enqueue(&[QueuedMessage {
                    user_id: user,
                    device_id: device,
                    message,
                    expires_at: Utc::now() + Duration::days(30),
                }])
                .await
                .unwrap();
        }
    }
    seed(&w, &user, &device).await;
    assert_eq!(w.keys.device_keys(&user).await.unwrap().len(), 1);
    // A new phone: the old device's keys and queue go.
    let new = w.sign_up(PHONE).await;
    assert_eq!(new.user_id, old.user_id);
    assert!(w.keys.device_keys(&user).await.unwrap().is_empty());
    assert!(w.queues.all().is_empty());
    // Deleting the account: the current device's too.
    let new_device = courier_core::DeviceId::from_trusted(new.device_id.clone());
    seed(&w, &user, &new_device).await;
    let current = w.connect_with_key(&new, "c-new").await;
    let who = w.authorize(&new.api_key).await.unwrap();
    delete_account::delete_account(&w.delete_deps(), &who, &current)
        .await
        .unwrap();
    assert!(w.keys.device_keys(&user).await.unwrap().is_empty());
    assert!(w.queues.all().is_empty());
}

#[tokio::test]
async fn test_numbers_get_the_fixed_code_and_no_sms_and_nothing_else_changes() {
    let w = World {
        test_numbers: register_account::TestNumbers::from_config("+1415555", "424242").unwrap(),
        ..World::new().requiring_devices_to_connect()
    };
    let test_phone = "+14155550123";
    w.register(test_phone).await.unwrap();
    assert!(
        w.sms.last_code(test_phone).is_none(),
        "no SMS to a test number"
    );
    // A wrong code is still wrong; the fixed one verifies.
    assert_eq!(
        w.verify(test_phone, "000000").await.unwrap_err().code,
        courier_core::ErrorCode::Unauthorized
    );
    let creds = w.verify(test_phone, "424242").await.unwrap();
    assert!(creds.user_id.starts_with("u_"));
    // Limits still apply: three codes per window, then LIMIT_EXCEEDED.
    for _ in 0..3 {
        w.register("+14155550124").await.unwrap();
    }
    let e = w.register("+14155550124").await.unwrap_err();
    assert_eq!(e.code, courier_core::ErrorCode::LimitExceeded);
    // Any other number gets a random code by SMS, and the fixed code does not verify it.
    let other = "+14155560100";
    w.register(other).await.unwrap();
    let sent = w.sms.last_code(other).expect("an SMS to a real number");
    if sent != "424242" {
        assert_eq!(
            w.verify(other, "424242").await.unwrap_err().code,
            courier_core::ErrorCode::Unauthorized
        );
    }
    w.verify(other, &sent).await.unwrap();
}

#[test]
fn test_number_configuration_is_all_or_nothing_and_checked() {
    use register_account::TestNumbers;
    assert!(TestNumbers::from_config("", "").unwrap().is_none());
    assert!(TestNumbers::from_config("+1415555", "").is_err());
    assert!(TestNumbers::from_config("", "123456").is_err());
    assert!(
        TestNumbers::from_config("+1", "123456").is_err(),
        "too short a prefix"
    );
    assert!(
        TestNumbers::from_config("1415555", "123456").is_err(),
        "no +"
    );
    assert!(TestNumbers::from_config("+1415555", "12345").is_err());
    assert!(TestNumbers::from_config("+1415555", "abcdef").is_err());
    assert!(
        TestNumbers::from_config("+1415555", "123456")
            .unwrap()
            .is_some()
    );
}

// ---- Revocation ends what the revoked devices could still do (docs/security.md) --------------

#[tokio::test]
async fn re_registering_ends_a_link_the_old_primary_approved() {
    // The attack from issue 21: the attacker gets one approval from the victim's phone and does
    // not collect the key; the victim re-registers to evict every device; then the attacker
    // polls.
    let w = World::new().requiring_devices_to_connect();
    let victim = w.sign_up(PHONE).await;
    let link_id = w.approved_link(&victim).await;
    let again = w.sign_up(PHONE).await;
    assert_eq!(
        w.poll_link(&link_id).await.unwrap_err(),
        ErrorCode::NotFound
    );
    let user = courier_core::UserId::from_trusted(again.user_id.clone());
    let devices = w.accounts.devices(&user).await.unwrap();
    assert_eq!(devices.len(), 1, "only the new phone: {devices:?}");
    assert!(w.accounts.pending_links(&user).await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_the_account_ends_its_pending_links() {
    let w = World::new().requiring_devices_to_connect();
    let victim = w.sign_up(PHONE).await;
    let link_id = w.approved_link(&victim).await;
    let current = w.connect_with_key(&victim, "conn-1").await;
    w.delete_account(&victim, &current).await;
    assert_eq!(
        w.poll_link(&link_id).await.unwrap_err(),
        ErrorCode::NotFound
    );
    assert_eq!(w.accounts.live_keys(), 0, "no key was handed out");
}

#[tokio::test]
async fn removing_a_device_ends_the_accounts_pending_links() {
    let (w, owner, companion) = owner_and_companion().await;
    let pending = w.approved_link(&owner).await;
    let who = w.authorize(&owner.api_key).await.unwrap();
    w.remove_device(&who, &companion).await;
    assert_eq!(
        w.poll_link(&pending).await.unwrap_err(),
        ErrorCode::NotFound
    );
    let devices = w.accounts.devices(&who.user_id).await.unwrap();
    assert_eq!(devices.len(), 1, "only the primary is left: {devices:?}");
}

#[tokio::test]
async fn a_connect_authorized_before_its_device_was_removed_is_refused() {
    // The authorizer let the companion's key in; before `$connect` records the connection,
    // the owner removes the companion. The connection is not recorded, so nothing is left
    // open that the revocation could not list.
    let (w, owner, companion) = owner_and_companion().await;
    let authorized = w.authorize(&companion.api_key).await.unwrap();
    let who = w.authorize(&owner.api_key).await.unwrap();
    w.remove_device(&who, &companion).await;
    let late = ConnectionId::new("conn-late");
    let err = connections::connect(&w.connections, &w.clock, late.clone(), &authorized)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert_eq!(w.connections.connection(&late).await.unwrap(), None);
    assert!(
        w.connections
            .for_user(&who.user_id)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---- Two-step verification (issue 21 item 9) ----------------------------------------------

const VICTIM_PIN: &str = "482913";

#[tokio::test]
async fn a_recycled_number_does_not_inherit_an_account_with_a_registration_pin() {
    // The attack: the number is recycled (or the SIM swapped); the new holder gets the SMS code
    // and verifies it. Before two-step verification that moved the account, its user id (and so
    // its groups, contacts and backups) to the attacker's phone.
    let w = World::new().requiring_devices_to_connect();
    let victim = w.sign_up(PHONE).await;
    w.set_pin(&victim, VICTIM_PIN).await.unwrap();
    let code = w.fresh_code(PHONE).await;
    let e = w.verify(PHONE, &code).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PinRequired, "{}", e.message);
    let e = w
        .verify_with_pin(PHONE, &code, Some("000000"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("9 tries left"), "{}", e.message);
    // Nothing moved: the victim's phone still holds the account's only device.
    assert!(w.authorize(&victim.api_key).await.is_ok());
    let user = courier_core::UserId::from_trusted(victim.user_id.clone());
    assert_eq!(w.accounts.devices(&user).await.unwrap().len(), 1);
    // The owner, with the PIN, moves the account (the same code: a wrong PIN does not use it up).
    let moved = w
        .verify_with_pin(PHONE, &code, Some(VICTIM_PIN))
        .await
        .unwrap();
    assert_eq!(moved.user_id, victim.user_id);
    assert!(w.authorize(&victim.api_key).await.is_err());
    // The PIN stays set, and proving it started the count again.
    let pin = w.accounts.registration_pin(&user).await.unwrap().unwrap();
    assert_eq!(pin.failed_attempts, 0);
}

#[tokio::test]
async fn the_eleventh_pin_is_refused_even_right_until_the_lockout_ends_then_the_number_starts_afresh()
 {
    let w = World::new().requiring_devices_to_connect();
    let victim = w.sign_up(PHONE).await;
    w.set_pin(&victim, VICTIM_PIN).await.unwrap();
    // What the old account holds: a chat, settings, a status and a backup (record and file).
    let old = courier_core::UserId::from_trusted(victim.user_id.clone());
    let friend = courier_core::UserId::generate();
    let chat = courier_core::SessionId::direct(&old, &friend);
    w.sessions
        .create_direct(&chat, &old, &friend, w.clock.now())
        .await
        .unwrap();
    w.settings
        .put_settings(&old, &courier_core::settings::Settings::default())
        .await
        .unwrap();
    let posted = w.clock.now();
    w.statuses
        .put_status(&courier_core::ports::Status {
            user_id: old.clone(),
            status_id: "01JSTATUS".into(),
            device_id: courier_core::DeviceId::from_trusted(victim.device_id.clone()),
            payload: "ciphertext".into(),
            attachments: vec![],
            posted_at: posted,
            expires_at: posted + Duration::days(30),
        })
        .await
        .unwrap();
    let backup = courier_core::usecases::backups::create_backup(
        &courier_core::usecases::backups::Deps {
            backups: &w.backups,
            objects: &w.objects,
            clock: &w.clock,
            quota: None,
        },
        &w.authorize(&victim.api_key).await.unwrap(),
        courier_core::protocol::CreateBackupParams { size: 3 },
    )
    .await
    .unwrap();
    let backup_key = format!(
        "backups/{old}/{}",
        backup.json()["backupId"].as_str().unwrap()
    );
    w.objects
        .put(&backup_key, b"abc".to_vec(), "application/octet-stream");
    let mut code = w.fresh_code(PHONE).await;
    for n in 1..=10u32 {
        if n % 5 == 0 {
            // Codes expire; a brute-forcer keeps asking for new ones. The PIN count stays.
            w.clock.advance(Duration::minutes(16));
            code = w.fresh_code(PHONE).await;
        }
        let guess = format!("{:06}", 100_000 + n);
        let e = w
            .verify_with_pin(PHONE, &code, Some(&guess))
            .await
            .unwrap_err();
        if n < 10 {
            assert_eq!(e.code, ErrorCode::Unauthorized, "try {n}: {}", e.message);
        } else {
            assert_eq!(e.code, ErrorCode::LimitExceeded, "try {n}: {}", e.message);
        }
    }
    // The 11th try, with the right PIN, is refused for 7 days.
    let e = w
        .verify_with_pin(PHONE, &code, Some(VICTIM_PIN))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    let retry = e.retry_after_secs.unwrap();
    assert!(
        retry > 6 * 86_400 && retry <= 7 * 86_400,
        "retry after {retry} s"
    );
    assert_eq!(
        w.verify(PHONE, &code).await.unwrap_err().code,
        ErrorCode::LimitExceeded,
        "no reset before the lockout ends"
    );
    w.clock.advance(Duration::days(7) - Duration::minutes(20));
    assert_eq!(
        w.verify_fresh_code(Some(VICTIM_PIN))
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    assert!(w.authorize(&victim.api_key).await.is_ok());
    // After the lockout the number can be registered without the PIN, as a fresh account: a
    // new user id, so nothing of the old one (groups, contacts, backups) comes along; and the
    // old account is deleted, all of it, as deleteAccount deletes it.
    w.clock.advance(Duration::minutes(30));
    let code = w.fresh_code(PHONE).await;
    let fresh = w.verify(PHONE, &code).await.unwrap();
    assert_ne!(fresh.user_id, victim.user_id);
    assert!(w.authorize(&victim.api_key).await.is_err());
    assert!(w.sessions.sessions_of(&old).await.unwrap().is_empty());
    assert!(w.settings.settings(&old).await.unwrap().is_none());
    let (statuses, _) = w
        .statuses
        .live_statuses(&old, w.clock.now(), None, 30)
        .await
        .unwrap();
    assert!(statuses.is_empty());
    assert!(w.backups.backups(&old).await.unwrap().is_empty());
    assert!(w.objects.keys().is_empty(), "the backup file is deleted");
    assert!(w.accounts.user(&old).await.unwrap().is_none());
    assert!(w.accounts.registration_pin(&old).await.unwrap().is_none());
    let number = PhoneNumber::parse(PHONE).unwrap();
    assert_eq!(
        w.accounts
            .user_by_phone(&number)
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        fresh.user_id
    );
}

#[tokio::test]
async fn a_companion_cannot_set_or_remove_the_pin_and_the_limit_holds() {
    let (w, owner, companion) = owner_and_companion().await;
    let who = w.authorize(&companion.api_key).await.unwrap();
    let limiter = MemoryRateLimiter::default();
    let deps = w.pin_deps(&limiter);
    let params = || SetRegistrationPinParams {
        pin: "111111".into(),
        current_pin: None,
    };
    let e = registration_pin::set_registration_pin(&deps, &who, params())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    w.set_pin(&owner, VICTIM_PIN).await.unwrap();
    // Without the current PIN a companion neither removes nor changes it.
    let e = registration_pin::remove_registration_pin(&deps, &who, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PinRequired, "{}", e.message);
    let e = registration_pin::set_registration_pin(&deps, &who, params())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PinRequired, "{}", e.message);
    let user = courier_core::UserId::from_trusted(owner.user_id.clone());
    let pin = w.accounts.registration_pin(&user).await.unwrap().unwrap();
    assert!(
        courier_core::secrets::RegistrationPin::parse(VICTIM_PIN)
            .unwrap()
            .matches(&pin.hash),
        "the companion changed nothing"
    );
    assert!(!pin.hash.contains(VICTIM_PIN), "stored only as a hash");
    // The primary's own calls are limited (3 an hour per operation here), and the reply never carries a PIN.
    let primary = w.authorize(&owner.api_key).await.unwrap();
    let reply = registration_pin::set_registration_pin(&deps, &primary, params())
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&reply).unwrap(),
        serde_json::json!({"pinEnabled": true})
    );
    registration_pin::remove_registration_pin(&deps, &primary, Default::default())
        .await
        .unwrap();
    for _ in 0..2 {
        registration_pin::set_registration_pin(&deps, &primary, params())
            .await
            .unwrap();
    }
    let e = registration_pin::set_registration_pin(&deps, &primary, params())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.retry_after_secs.is_some());
    // Removing it (a fresh budget) lets the number be verified without a PIN again.
    let limiter = MemoryRateLimiter::default();
    registration_pin::remove_registration_pin(&w.pin_deps(&limiter), &primary, Default::default())
        .await
        .unwrap();
    let code = w.fresh_code(PHONE).await;
    assert_eq!(w.verify(PHONE, &code).await.unwrap().user_id, owner.user_id);
}

#[tokio::test]
async fn pins_must_be_six_digits_and_a_malformed_pin_costs_no_try() {
    let w = World::new().requiring_devices_to_connect();
    let owner = w.sign_up(PHONE).await;
    for bad in ["12345", "1234567", "12a456", ""] {
        assert_eq!(
            w.set_pin(&owner, bad).await.unwrap_err().code,
            ErrorCode::BadRequest
        );
    }
    w.set_pin(&owner, VICTIM_PIN).await.unwrap();
    let code = w.fresh_code(PHONE).await;
    let e = w
        .verify_with_pin(PHONE, &code, Some("12345"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let user = courier_core::UserId::from_trusted(owner.user_id.clone());
    let pin = w.accounts.registration_pin(&user).await.unwrap().unwrap();
    assert_eq!(pin.failed_attempts, 0);
}

/// Whether the stored PIN of `creds`' account is `pin`.
async fn stored_pin_is(w: &World, creds: &Credentials, pin: &str) -> bool {
    let user = courier_core::UserId::from_trusted(creds.user_id.clone());
    let record = w.accounts.registration_pin(&user).await.unwrap().unwrap();
    courier_core::secrets::RegistrationPin::parse(pin)
        .unwrap()
        .matches(&record.hash)
}

fn change(pin: &str, current: Option<&str>) -> SetRegistrationPinParams {
    SetRegistrationPinParams {
        pin: pin.into(),
        current_pin: current.map(str::to_owned),
    }
}

fn removal(current: Option<&str>) -> RemoveRegistrationPinParams {
    RemoveRegistrationPinParams {
        current_pin: current.map(str::to_owned),
    }
}

fn check(pin: &str) -> CheckRegistrationPinParams {
    CheckRegistrationPinParams { pin: pin.into() }
}

#[tokio::test]
async fn a_companion_changes_or_removes_the_pin_only_with_the_current_one_and_never_sets_the_first()
{
    let (w, owner, companion) = owner_and_companion().await;
    let laptop = w.authorize(&companion.api_key).await.unwrap();
    let limiter = MemoryRateLimiter::default();
    let deps = registration_pin::Deps {
        // The per-device limit (3 an hour here) is not what this is about.
        limit: None,
        ..w.pin_deps(&limiter)
    };
    // No PIN yet: a companion cannot set the first (it would lock the owner out), even when it
    // names one as "current".
    for current in [None, Some("123456")] {
        let e = registration_pin::set_registration_pin(&deps, &laptop, change("111111", current))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden, "{}", e.message);
    }
    let e = registration_pin::remove_registration_pin(&deps, &laptop, removal(Some("123456")))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let user = courier_core::UserId::from_trusted(owner.user_id.clone());
    assert!(w.accounts.registration_pin(&user).await.unwrap().is_none());

    w.set_pin(&owner, VICTIM_PIN).await.unwrap();
    // A wrong current PIN: WRONG_PIN, nothing changed or removed.
    let e =
        registration_pin::set_registration_pin(&deps, &laptop, change("111111", Some("000000")))
            .await
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin, "{}", e.message);
    let e = registration_pin::remove_registration_pin(&deps, &laptop, removal(Some("000000")))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin, "{}", e.message);
    assert!(stored_pin_is(&w, &owner, VICTIM_PIN).await);
    // A malformed one is refused before it is judged.
    let e = registration_pin::set_registration_pin(&deps, &laptop, change("111111", Some("12")))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    // With the current PIN: changed, and re-registration needs the new one.
    let reply =
        registration_pin::set_registration_pin(&deps, &laptop, change("111111", Some(VICTIM_PIN)))
            .await
            .unwrap();
    assert!(reply.pin_enabled);
    assert!(stored_pin_is(&w, &owner, "111111").await);
    assert_eq!(
        w.verify_fresh_code(Some(VICTIM_PIN))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Unauthorized
    );
    // Removed with the (new) current PIN.
    let reply = registration_pin::remove_registration_pin(&deps, &laptop, removal(Some("111111")))
        .await
        .unwrap();
    assert!(!reply.pin_enabled);
    assert!(w.accounts.registration_pin(&user).await.unwrap().is_none());
    // The primary still needs no current PIN.
    let phone = w.authorize(&owner.api_key).await.unwrap();
    registration_pin::set_registration_pin(&deps, &phone, change("222222", None))
        .await
        .unwrap();
    assert!(stored_pin_is(&w, &owner, "222222").await);
}

#[tokio::test]
async fn guessing_from_a_companion_is_stopped_by_its_own_budget_and_never_locks_the_owners_re_registration()
 {
    let (w, owner, companion) = owner_and_companion().await;
    let laptop = w.authorize(&companion.api_key).await.unwrap();
    let phone = w.authorize(&owner.api_key).await.unwrap();
    let limiter = MemoryRateLimiter::default();
    let deps = || registration_pin::Deps {
        // The per-device limit is not what this is about.
        limit: None,
        ..w.pin_deps(&limiter)
    };
    // No PIN: checking is NOT_FOUND, and costs nothing.
    let e = registration_pin::check_registration_pin(&deps(), &laptop, check(VICTIM_PIN))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{}", e.message);
    w.set_pin(&owner, VICTIM_PIN).await.unwrap();
    // Right answers are not counted: any number of them leaves the budget whole.
    for _ in 0..8 {
        let r = registration_pin::check_registration_pin(&deps(), &laptop, check(VICTIM_PIN))
            .await
            .unwrap();
        assert!(r.correct);
    }
    // A malformed PIN is refused and not counted.
    let e = registration_pin::check_registration_pin(&deps(), &laptop, check("12345"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    // The attack: guess through checkRegistrationPin and currentPin. Five wrong a day, all
    // devices of the account together (the primary's checks count too).
    for n in 0..4u32 {
        let guess = format!("{:06}", 100_000 + n);
        let r = registration_pin::check_registration_pin(&deps(), &laptop, check(&guess))
            .await
            .unwrap();
        assert!(!r.correct, "guess {guess}");
    }
    let e =
        registration_pin::set_registration_pin(&deps(), &laptop, change("999999", Some("100004")))
            .await
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin);
    // Spent: the right PIN is refused too, before it is looked at, from any device and for
    // any of the three actions.
    for who in [&laptop, &phone] {
        let e = registration_pin::check_registration_pin(&deps(), who, check(VICTIM_PIN))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded, "{}", e.message);
        let retry = e.retry_after_secs.unwrap();
        assert!((1..=86_400).contains(&retry), "retry after {retry} s");
    }
    let e = registration_pin::set_registration_pin(
        &deps(),
        &laptop,
        change("999999", Some(VICTIM_PIN)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    let e = registration_pin::remove_registration_pin(&deps(), &laptop, removal(Some(VICTIM_PIN)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(stored_pin_is(&w, &owner, VICTIM_PIN).await);
    // The registration lockout is untouched: no wrong try recorded, and the owner moving the
    // number to a new phone with the PIN succeeds at once.
    let user = courier_core::UserId::from_trusted(owner.user_id.clone());
    let record = w.accounts.registration_pin(&user).await.unwrap().unwrap();
    assert_eq!(record.failed_attempts, 0);
    assert_eq!(record.locked_until, None);
    // The primary still changes it without the current PIN (the budget is not in its way).
    registration_pin::set_registration_pin(&deps(), &phone, change(VICTIM_PIN, None))
        .await
        .unwrap();
    let code = w.fresh_code(PHONE).await;
    let moved = w
        .verify_with_pin(PHONE, &code, Some(VICTIM_PIN))
        .await
        .unwrap();
    assert_eq!(moved.user_id, owner.user_id);
    // The budget is per day (UTC): the next day the PIN can be checked again.
    w.clock.advance(Duration::days(1));
    let new_phone = w.authorize(&moved.api_key).await.unwrap();
    let r = registration_pin::check_registration_pin(&deps(), &new_phone, check(VICTIM_PIN))
        .await
        .unwrap();
    assert!(r.correct);
}

#[tokio::test]
async fn a_pin_removal_proven_against_an_old_pin_never_removes_a_newer_one() {
    // A companion proves the current PIN, then removes the record it proved: if the primary set
    // another PIN in between, the store refuses (the in-memory store, as DynamoDB's condition).
    let w = World::new().requiring_devices_to_connect();
    let owner = w.sign_up(PHONE).await;
    w.set_pin(&owner, "111111").await.unwrap();
    let user = courier_core::UserId::from_trusted(owner.user_id.clone());
    let proven = w.accounts.registration_pin(&user).await.unwrap().unwrap();
    w.set_pin(&owner, "222222").await.unwrap();
    let newer = w.accounts.registration_pin(&user).await.unwrap().unwrap();
    assert_ne!(newer.version, proven.version);
    assert!(matches!(
        w.accounts
            .delete_registration_pin(&user, Some(proven.version))
            .await,
        Err(courier_core::error::PortError::Conflict)
    ));
    assert_eq!(
        w.accounts.registration_pin(&user).await.unwrap(),
        Some(newer.clone())
    );
    w.accounts
        .delete_registration_pin(&user, Some(newer.version))
        .await
        .unwrap();
    assert_eq!(w.accounts.registration_pin(&user).await.unwrap(), None);
}
