//! Linking companion devices on in-memory ports: approval by the primary only, single use,
//! expiry, the companion limit, and the key handed out once.

mod support;

use chrono::Duration;
use courier_core::clock::ManualClock;
use courier_core::memory::MemoryAccounts;
use courier_core::ports::{AccountStore, CredentialStore, Device, DeviceCredential, UserDirectory};
use courier_core::protocol::{DeviceInfo, Platform};
use courier_core::secrets::ApiKey;
use courier_core::usecases::link_device::{self, LinkPoll, MAX_COMPANIONS};
use courier_core::{DeviceId, ErrorCode};
use support::World;

/// The stores and clock of a fresh world, and the primary device of its one account.
async fn world() -> (MemoryAccounts, ManualClock, DeviceCredential) {
    let w = World::new();
    let primary = w.account("+14155550100", 0).await.primary;
    (w.accounts, w.clock, primary)
}

/// The use case's stores, unthrottled.
fn deps<'a>(accounts: &'a MemoryAccounts, clock: &'a ManualClock) -> link_device::Deps<'a> {
    link_device::Deps {
        links: accounts,
        accounts: Some(accounts),
        clock,
        throttle: None,
    }
}

fn web() -> DeviceInfo {
    DeviceInfo {
        name: "web".into(),
        platform: Platform::Web,
    }
}

#[tokio::test]
async fn approve_then_the_key_is_handed_out_once_and_works() {
    let (accounts, clock, primary) = world().await;
    let deps = deps(&accounts, &clock);
    let req = link_device::request_link(&deps, web(), None).await.unwrap();
    let (link_id, code) = (req.link_id.as_str(), req.code.as_str());
    assert!(matches!(
        link_device::poll(&deps, link_id).await.unwrap(),
        LinkPoll::Pending
    ));
    link_device::approve(&deps, &primary, code).await.unwrap();
    let LinkPoll::Linked(creds) = link_device::poll(&deps, link_id).await.unwrap() else {
        panic!("linked")
    };
    let found = accounts
        .device_for_key(&ApiKey::presented(creds.api_key).hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user_id, primary.user_id);
    assert_eq!(
        link_device::poll(&deps, link_id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let devices = accounts.devices(&primary.user_id).await.unwrap();
    assert_eq!(devices.iter().filter(|d| !d.primary).count(), 1);
    // The code was single use.
    assert_eq!(
        link_device::approve(&deps, &primary, code)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn codes_expire_after_five_minutes() {
    let (accounts, clock, primary) = world().await;
    let deps = deps(&accounts, &clock);
    let req = link_device::request_link(&deps, web(), None).await.unwrap();
    clock.advance(Duration::minutes(5));
    let err = link_device::approve(&deps, &primary, &req.code)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Expired);
    assert_eq!(
        link_device::poll(&deps, &req.link_id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::Expired
    );
}

#[tokio::test]
async fn only_the_primary_approves_and_at_most_five_companions() {
    let (accounts, clock, primary) = world().await;
    let deps = deps(&accounts, &clock);
    let mut companion = None;
    for _ in 0..MAX_COMPANIONS {
        let req = link_device::request_link(&deps, web(), None).await.unwrap();
        link_device::approve(&deps, &primary, &req.code)
            .await
            .unwrap();
        let LinkPoll::Linked(c) = link_device::poll(&deps, &req.link_id).await.unwrap() else {
            panic!()
        };
        companion = Some(DeviceCredential {
            user_id: primary.user_id.clone(),
            device_id: DeviceId::from_trusted(c.device_id),
        });
    }
    let req = link_device::request_link(&deps, web(), None).await.unwrap();
    let code = req.code.as_str();
    assert_eq!(
        link_device::approve(&deps, &companion.unwrap(), code)
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        link_device::approve(&deps, &primary, code)
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
}

/// Requests a link and has `primary` approve it; returns the link id the new device polls with.
async fn approved_link(deps: &link_device::Deps<'_>, primary: &DeviceCredential) -> String {
    let req = link_device::request_link(deps, web(), None).await.unwrap();
    link_device::approve(deps, primary, &req.code)
        .await
        .unwrap();
    req.link_id
}

#[tokio::test]
async fn an_approved_link_expires_with_its_code() {
    let (accounts, clock, primary) = world().await;
    let deps = deps(&accounts, &clock);
    let link_id = approved_link(&deps, &primary).await;
    // The new device waits past the code's life before collecting its key.
    clock.advance(Duration::minutes(5));
    assert_eq!(
        link_device::poll(&deps, &link_id).await.unwrap_err().code,
        ErrorCode::Expired
    );
    let devices = accounts.devices(&primary.user_id).await.unwrap();
    assert_eq!(devices.len(), 1, "no companion was added: {devices:?}");
}

#[tokio::test]
async fn pending_approvals_count_toward_the_companion_cap() {
    let (accounts, clock, primary) = world().await;
    let deps = deps(&accounts, &clock);
    // Five approvals, none collected yet.
    let mut pending = Vec::new();
    for _ in 0..MAX_COMPANIONS {
        pending.push(approved_link(&deps, &primary).await);
    }
    let req = link_device::request_link(&deps, web(), None).await.unwrap();
    assert_eq!(
        link_device::approve(&deps, &primary, &req.code)
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    // All five can still be collected, and the account then has exactly five companions.
    for link_id in &pending {
        assert!(matches!(
            link_device::poll(&deps, link_id).await.unwrap(),
            LinkPoll::Linked(_)
        ));
    }
    let devices = accounts.devices(&primary.user_id).await.unwrap();
    assert_eq!(
        devices.iter().filter(|d| !d.primary).count(),
        MAX_COMPANIONS
    );
}

#[tokio::test]
async fn a_link_whose_approving_primary_is_gone_cannot_be_completed() {
    let (accounts, clock, primary) = world().await;
    let deps = deps(&accounts, &clock);
    let link_id = approved_link(&deps, &primary).await;
    // The primary is replaced by the store alone (as if a re-registration had stopped before
    // ending the pending links): completing checks the approver itself.
    let old = accounts.devices(&primary.user_id).await.unwrap();
    let new_primary = Device {
        device_id: DeviceId::generate(),
        key_hash: ApiKey::generate().hash(),
        ..old[0].clone()
    };
    accounts.replace_devices(&new_primary, &old).await.unwrap();
    assert_eq!(
        link_device::poll(&deps, &link_id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let devices = accounts.devices(&primary.user_id).await.unwrap();
    assert_eq!(devices, vec![new_primary]);
}
