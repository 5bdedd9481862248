//! `DynamoAccounts` over a `UsersTable` and an `ApiKeysTable`: accounts, phone claims, devices and
//! API keys are written all or nothing, and one user's writes never touch another's items.

use crate::registrations::phone;
use crate::support::{self, Item};
use chrono::{DateTime, Timelike, Utc};
use courier_aws::dynamo::DynamoAccounts;
use courier_core::error::PortError;
use courier_core::ports::{
    AccountStore, CredentialStore, Device, DeviceCredential, User, UserDirectory,
};
use courier_core::protocol::Platform;
use courier_core::secrets::{ApiKey, ApiKeyHash};
use courier_core::{DeviceId, UserId};

pub(crate) struct Fixture {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) users_table: String,
    pub(crate) keys_table: String,
    pub(crate) store: DynamoAccounts,
}

pub(crate) async fn fixture() -> Fixture {
    let client = support::client();
    let users_table = support::create_table(&client, "UsersTable").await;
    let keys_table = support::create_table(&client, "ApiKeysTable").await;
    let store = DynamoAccounts::new(client.clone(), users_table.clone(), keys_table.clone());
    Fixture {
        client,
        users_table,
        keys_table,
        store,
    }
}

fn now() -> DateTime<Utc> {
    Utc::now().with_nanosecond(123_456_789).unwrap()
}

pub(crate) fn user(phone_number: &str) -> User {
    user_with_id(UserId::generate(), phone_number)
}

fn user_with_id(user_id: UserId, phone_number: &str) -> User {
    User {
        user_id,
        phone: phone(phone_number),
        created_at: now(),
    }
}

/// A device of `user` with a fresh API key.
pub(crate) fn device(user: &User, name: &str, primary: bool) -> Device {
    Device {
        user_id: user.user_id.clone(),
        device_id: DeviceId::generate(),
        name: name.into(),
        platform: if primary {
            Platform::Ios
        } else {
            Platform::Web
        },
        primary,
        key_hash: ApiKey::generate().hash(),
        created_at: now(),
    }
}

fn credential(d: &Device) -> DeviceCredential {
    DeviceCredential {
        user_id: d.user_id.clone(),
        device_id: d.device_id.clone(),
    }
}

fn sorted(mut devices: Vec<Device>) -> Vec<Device> {
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    devices
}

impl Fixture {
    async fn devices(&self, user: &User) -> Vec<Device> {
        sorted(self.store.devices(&user.user_id).await.unwrap())
    }

    async fn key(&self, key: &ApiKeyHash) -> Option<DeviceCredential> {
        self.store.device_for_key(key).await.unwrap()
    }

    /// Checks that the account is fully there, with exactly `devices` and their keys.
    async fn assert_account(&self, user: &User, devices: &[Device]) {
        let s = &self.store;
        assert_eq!(
            s.user_by_phone(&user.phone).await.unwrap(),
            Some(user.user_id.clone()),
            "phone claim of {}",
            user.user_id
        );
        assert_eq!(s.user(&user.user_id).await.unwrap(), Some(user.clone()));
        assert_eq!(self.devices(user).await, sorted(devices.to_vec()));
        for d in devices {
            assert_eq!(self.key(&d.key_hash).await, Some(credential(d)));
        }
    }

    /// Checks that nothing of the account is readable any more.
    async fn assert_gone(&self, user: &User, devices: &[Device]) {
        let s = &self.store;
        assert_ne!(
            s.user_by_phone(&user.phone).await.unwrap(),
            Some(user.user_id.clone()),
            "{} still holds {}",
            user.user_id,
            user.phone
        );
        assert_eq!(s.user(&user.user_id).await.unwrap(), None, "profile");
        assert_eq!(self.devices(user).await, Vec::new(), "devices");
        for d in devices {
            assert_eq!(self.key(&d.key_hash).await, None, "key of {}", d.device_id);
        }
    }

    async fn users_items(&self) -> Vec<Item> {
        support::scan(&self.client, &self.users_table).await
    }

    async fn key_items(&self) -> Vec<Item> {
        support::scan(&self.client, &self.keys_table).await
    }
}

/// Whether a raw UsersTable item belongs to `user` (its profile, devices or phone claim).
fn belongs_to(item: &Item, user: &User) -> bool {
    let pk = support::s(item, "pk");
    pk == format!("USER#{}", user.user_id) || pk == format!("PHONE#{}", user.phone)
}

#[tokio::test]
async fn create_account_makes_user_phone_device_and_key_findable() {
    let f = fixture().await;
    let alice = user("+14155550100");
    let phone_device = device(&alice, "Alice's iPhone", true);
    f.store.create_account(&alice, &phone_device).await.unwrap();

    f.assert_account(&alice, std::slice::from_ref(&phone_device))
        .await;
    // Every field of the device comes back, created_at to the nanosecond.
    assert_eq!(
        f.store.devices(&alice.user_id).await.unwrap(),
        vec![phone_device.clone()]
    );

    // Lookups of what does not exist find nothing.
    let s = &f.store;
    assert_eq!(s.user_by_phone(&phone("+14155550101")).await.unwrap(), None);
    assert_eq!(s.user(&UserId::generate()).await.unwrap(), None);
    assert_eq!(s.devices(&UserId::generate()).await.unwrap(), Vec::new());
    assert_eq!(
        s.device_for_key(&ApiKey::generate().hash()).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn second_account_for_the_same_phone_conflicts_and_leaves_nothing_behind() {
    let f = fixture().await;
    let first = user("+14155550100");
    let first_device = device(&first, "first phone", true);
    f.store.create_account(&first, &first_device).await.unwrap();

    let second = user("+14155550100");
    assert_ne!(first.user_id, second.user_id);
    let second_device = device(&second, "second phone", true);
    let r = f.store.create_account(&second, &second_device).await;
    assert!(matches!(r, Err(PortError::Conflict)), "got {r:?}");

    // Nothing of the second user: no profile, no device, no key; the number stays the first's.
    assert_eq!(f.store.user(&second.user_id).await.unwrap(), None);
    assert_eq!(f.devices(&second).await, Vec::new());
    assert_eq!(f.key(&second_device.key_hash).await, None);
    f.assert_account(&first, std::slice::from_ref(&first_device))
        .await;
    let users = f.users_items().await;
    assert_eq!(users.len(), 3, "profile, phone claim, device: {users:?}");
    assert!(users.iter().all(|i| belongs_to(i, &first)), "{users:?}");
    assert_eq!(f.key_items().await.len(), 1);
}

#[tokio::test]
async fn replace_devices_swaps_old_devices_and_keys_for_the_new_primary() {
    let f = fixture().await;
    let alice = user("+14155550100");
    let old_phone = device(&alice, "old phone", true);
    f.store.create_account(&alice, &old_phone).await.unwrap();
    // With nothing to remove, replace_devices adds a device.
    let laptop = device(&alice, "laptop", false);
    f.store.replace_devices(&laptop, &[]).await.unwrap();
    f.assert_account(&alice, &[old_phone.clone(), laptop.clone()])
        .await;

    let new_phone = device(&alice, "new phone", true);
    f.store
        .replace_devices(&new_phone, &[old_phone.clone(), laptop.clone()])
        .await
        .unwrap();
    f.assert_account(&alice, std::slice::from_ref(&new_phone))
        .await;
    assert_eq!(f.key(&old_phone.key_hash).await, None, "old phone's key");
    assert_eq!(f.key(&laptop.key_hash).await, None, "laptop's key");
    assert_eq!(f.key_items().await.len(), 1);
}

#[tokio::test]
async fn replace_devices_is_all_or_nothing() {
    let f = fixture().await;
    let alice = user("+14155550100");
    let old_phone = device(&alice, "old phone", true);
    f.store.create_account(&alice, &old_phone).await.unwrap();
    let bob = user("+14155550101");
    let bobs_phone = device(&bob, "bob's phone", true);
    f.store.create_account(&bob, &bobs_phone).await.unwrap();

    // The new device's key cannot be written (the hash is already live), so the old device must
    // not be removed either.
    let clashing = Device {
        key_hash: bobs_phone.key_hash.clone(),
        ..device(&alice, "new phone", true)
    };
    let r = f
        .store
        .replace_devices(&clashing, std::slice::from_ref(&old_phone))
        .await;
    assert!(r.is_err(), "a key hash can belong to one device only");
    f.assert_account(&alice, std::slice::from_ref(&old_phone))
        .await;
    f.assert_account(&bob, std::slice::from_ref(&bobs_phone))
        .await;
    assert_eq!(f.users_items().await.len(), 6);
    assert_eq!(f.key_items().await.len(), 2);
}

#[tokio::test]
async fn delete_account_removes_everything_of_that_user_only() {
    let f = fixture().await;
    let alice = user("+14155550100");
    let alices_phone = device(&alice, "phone", true);
    let alices_laptop = device(&alice, "laptop", false);
    f.store.create_account(&alice, &alices_phone).await.unwrap();
    f.store.replace_devices(&alices_laptop, &[]).await.unwrap();
    let bob = user("+14155550101");
    let bobs_phone = device(&bob, "phone", true);
    f.store.create_account(&bob, &bobs_phone).await.unwrap();

    let alices = [alices_phone, alices_laptop];
    f.store.delete_account(&alice, &alices).await.unwrap();

    f.assert_gone(&alice, &alices).await;
    assert_eq!(f.store.user_by_phone(&alice.phone).await.unwrap(), None);
    f.assert_account(&bob, std::slice::from_ref(&bobs_phone))
        .await;
    // Only Bob's items are left in either table.
    let users = f.users_items().await;
    assert_eq!(users.len(), 3, "{users:?}");
    assert!(users.iter().all(|i| belongs_to(i, &bob)), "{users:?}");
    let keys = f.key_items().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        support::s(&keys[0], "keyHash"),
        bobs_phone.key_hash.as_str()
    );

    // The number is free again: a new account can claim it.
    let again = user("+14155550100");
    let again_phone = device(&again, "phone", true);
    f.store.create_account(&again, &again_phone).await.unwrap();
    f.assert_account(&again, std::slice::from_ref(&again_phone))
        .await;
}

#[tokio::test]
async fn devices_lists_every_device_of_one_user_and_none_of_another() {
    let f = fixture().await;
    // Ids where one is a prefix of the other must not leak into each other's lists.
    let alice = user_with_id(UserId::from_trusted("u_alice"), "+14155550100");
    let alicia = user_with_id(UserId::from_trusted("u_alice2"), "+14155550101");
    let alices: Vec<Device> = ["phone", "laptop", "tablet"]
        .iter()
        .enumerate()
        .map(|(i, name)| device(&alice, name, i == 0))
        .collect();
    f.store.create_account(&alice, &alices[0]).await.unwrap();
    for d in &alices[1..] {
        f.store.replace_devices(d, &[]).await.unwrap();
    }
    let alicias_phone = device(&alicia, "phone", true);
    f.store
        .create_account(&alicia, &alicias_phone)
        .await
        .unwrap();

    assert_eq!(f.devices(&alice).await, sorted(alices.clone()));
    assert_eq!(f.devices(&alicia).await, vec![alicias_phone.clone()]);
    assert_eq!(
        f.store
            .devices(&UserId::from_trusted("u_ali"))
            .await
            .unwrap(),
        Vec::new()
    );
    for d in alices.iter().chain([&alicias_phone]) {
        assert_eq!(f.key(&d.key_hash).await, Some(credential(d)));
    }
}

#[tokio::test]
async fn a_registration_pin_is_written_by_version_kept_as_a_hash_and_deleted_with_the_account() {
    use courier_core::ports::RegistrationPinRecord;
    use courier_core::secrets::RegistrationPin;
    let f = fixture().await;
    let alice = user("+14155550100");
    f.store
        .create_account(&alice, &device(&alice, "phone", true))
        .await
        .unwrap();
    assert_eq!(
        f.store.registration_pin(&alice.user_id).await.unwrap(),
        None
    );
    let pin = RegistrationPin::parse("482913").unwrap();
    let first = RegistrationPinRecord {
        user_id: alice.user_id.clone(),
        hash: pin.hash(),
        failed_attempts: 0,
        locked_until: None,
        version: 1,
    };
    f.store.put_registration_pin(&first, None).await.unwrap();
    // A second "first" write loses: two concurrent setters cannot both think they created it.
    assert!(matches!(
        f.store.put_registration_pin(&first, None).await,
        Err(PortError::Conflict)
    ));
    let read = f
        .store
        .registration_pin(&alice.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, first);
    assert!(pin.matches(&read.hash));
    let stored = f.users_items().await;
    assert!(
        !format!("{stored:?}").contains("482913"),
        "only the hash is stored"
    );

    // Wrong tries are counted with a version condition: a try that read the record before
    // another try wrote it loses, so none goes uncounted.
    let locked = RegistrationPinRecord {
        failed_attempts: 10,
        locked_until: Some(now() + chrono::Duration::days(7)),
        version: 2,
        ..first.clone()
    };
    f.store
        .put_registration_pin(&locked, Some(1))
        .await
        .unwrap();
    let stale = RegistrationPinRecord {
        failed_attempts: 1,
        version: 2,
        ..first.clone()
    };
    assert!(matches!(
        f.store.put_registration_pin(&stale, Some(1)).await,
        Err(PortError::Conflict)
    ));
    assert_eq!(
        f.store.registration_pin(&alice.user_id).await.unwrap(),
        Some(locked)
    );

    // Deleting the account takes the PIN with it (a reset leaves nothing of the old owner's).
    let devices = f.devices(&alice).await;
    f.store.delete_account(&alice, &devices).await.unwrap();
    assert_eq!(
        f.store.registration_pin(&alice.user_id).await.unwrap(),
        None
    );
    assert!(f.users_items().await.is_empty());

    // removeRegistrationPin: gone, and removing nothing is fine.
    let bob = user("+14155550101");
    let bobs = RegistrationPinRecord {
        user_id: bob.user_id.clone(),
        ..first
    };
    f.store.put_registration_pin(&bobs, None).await.unwrap();
    // A removal proven against another version (the PIN changed meanwhile) removes nothing.
    assert!(matches!(
        f.store
            .delete_registration_pin(&bob.user_id, Some(bobs.version + 1))
            .await,
        Err(PortError::Conflict)
    ));
    assert_eq!(
        f.store.registration_pin(&bob.user_id).await.unwrap(),
        Some(bobs.clone())
    );
    f.store
        .delete_registration_pin(&bob.user_id, Some(bobs.version))
        .await
        .unwrap();
    assert_eq!(f.store.registration_pin(&bob.user_id).await.unwrap(), None);
    // Removing nothing is fine without a version, a conflict with one.
    f.store
        .delete_registration_pin(&bob.user_id, None)
        .await
        .unwrap();
    assert!(matches!(
        f.store
            .delete_registration_pin(&bob.user_id, Some(bobs.version))
            .await,
        Err(PortError::Conflict)
    ));
}
