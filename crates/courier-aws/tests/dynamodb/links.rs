//! `DynamoLinks` over a `LinksTable` with the accounts' tables: an approval records the account's
//! pending link and needs its approver; completing needs both still there (docs/security.md).

use crate::accounts::{Fixture, device, fixture, user};
use crate::support;
use chrono::{Duration, Utc};
use courier_aws::dynamo::{DynamoLinks, DynamoUsers};
use courier_core::DeviceId;
use courier_core::error::PortError;
use courier_core::ports::{
    AccountStore, CredentialStore, Device, DeviceCredential, LinkRequest, LinkStore, User,
    UserDirectory,
};
use courier_core::protocol::Platform;
use courier_core::secrets::ApiKey;

struct World {
    accounts: Fixture,
    links_table: String,
    links: DynamoLinks,
    user: User,
    primary: Device,
}

async fn world() -> World {
    let accounts = fixture().await;
    let table = support::create_table(&accounts.client, "LinksTable").await;
    let links = DynamoLinks::new(
        accounts.client.clone(),
        table.clone(),
        accounts.store.clone(),
    );
    let user = user("+14155550100");
    let primary = device(&user, "phone", true);
    accounts
        .store
        .create_account(&user, &primary)
        .await
        .unwrap();
    World {
        accounts,
        links_table: table,
        links,
        user,
        primary,
    }
}

impl World {
    /// A new link request, approved by `approver`: the link as the new device's poll reads it,
    /// and the device it will add.
    async fn approved(&self, approver: &DeviceId) -> Result<(LinkRequest, Device), PortError> {
        let link = self.requested(&self.links).await;
        let new = DeviceCredential {
            user_id: self.user.user_id.clone(),
            device_id: DeviceId::generate(),
        };
        self.links.approve(&link, &new, approver).await?;
        let link = self.links.by_id(&link.link_id).await.unwrap().unwrap();
        let device = Device {
            user_id: new.user_id,
            device_id: new.device_id,
            name: link.name.clone(),
            platform: link.platform,
            primary: false,
            key_hash: ApiKey::generate().hash(),
            created_at: Utc::now(),
        };
        Ok((link, device))
    }

    /// A new link request, created through `links`, not approved.
    async fn requested(&self, links: &DynamoLinks) -> LinkRequest {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let link = LinkRequest {
            link_id: format!("l_{id}"),
            code: id[..10].to_uppercase(),
            name: "laptop".into(),
            platform: Platform::Web,
            expires_at: Utc::now() + Duration::minutes(5),
            approved: None,
            approved_by: None,
        };
        links.create(&link).await.unwrap();
        link
    }

    /// The user's pending links, as the users table holds them.
    async fn pending_links(&self) -> Vec<courier_core::ports::PendingLink> {
        self.accounts
            .store
            .pending_links(&self.user.user_id)
            .await
            .unwrap()
    }

    async fn device_ids(&self) -> Vec<DeviceId> {
        let mut v: Vec<_> = self
            .accounts
            .store
            .devices(&self.user.user_id)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        v.sort();
        v
    }
}

#[tokio::test]
async fn an_approval_is_pending_until_completed_once() {
    let w = world().await;
    let (link, device) = w.approved(&w.primary.device_id).await.unwrap();
    assert_eq!(link.approved_by.as_ref(), Some(&w.primary.device_id));
    let pending = w
        .accounts
        .store
        .pending_links(&w.user.user_id)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].link_id, link.link_id);
    assert_eq!(pending[0].device_id, device.device_id);
    assert_eq!(pending[0].expires_at, link.expires_at);
    // A pending device is no device: the byDevice index does not know it.
    assert_eq!(
        w.accounts
            .store
            .device_owner(&device.device_id)
            .await
            .unwrap(),
        None
    );

    w.links.complete(&link, &device).await.unwrap();
    assert!(w.device_ids().await.contains(&device.device_id));
    assert!(w.pending_links().await.is_empty());
    assert!(matches!(
        w.links.complete(&link, &device).await,
        Err(PortError::Conflict)
    ));
}

#[tokio::test]
async fn completing_needs_the_pending_link_and_the_approver() {
    let w = world().await;
    // Ended by a revocation: refused, and nothing is written.
    let (ended, device) = w.approved(&w.primary.device_id).await.unwrap();
    assert_eq!(
        w.accounts
            .store
            .end_pending_links(&w.user.user_id)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        w.links.complete(&ended, &device).await,
        Err(PortError::Conflict)
    ));
    assert_eq!(w.device_ids().await, vec![w.primary.device_id.clone()]);

    // The approving primary was replaced (a re-registration), the pending link left in place:
    // refused all the same.
    let (link, device) = w.approved(&w.primary.device_id).await.unwrap();
    let new_primary = device_of(&w.user, true);
    w.accounts
        .store
        .replace_devices(&new_primary, std::slice::from_ref(&w.primary))
        .await
        .unwrap();
    assert!(matches!(
        w.links.complete(&link, &device).await,
        Err(PortError::Conflict)
    ));
    assert_eq!(w.device_ids().await, vec![new_primary.device_id.clone()]);
    assert_eq!(
        w.accounts
            .store
            .device_for_key(&device.key_hash)
            .await
            .unwrap(),
        None,
        "no key was written"
    );
}

#[tokio::test]
async fn approving_needs_the_approver() {
    let w = world().await;
    let gone = DeviceId::generate();
    assert!(matches!(w.approved(&gone).await, Err(PortError::Conflict)));
    assert!(w.pending_links().await.is_empty());
}

fn device_of(user: &User, primary: bool) -> Device {
    device(user, if primary { "new phone" } else { "laptop" }, primary)
}

/// createLinkRequest's store has the links table alone and approveDeviceLink's adds only the
/// users table: each does its own operation, and one that needs a table it was not built with is
/// a backend error that writes nothing.
#[tokio::test]
async fn each_link_operation_s_store_reaches_only_its_own_tables() {
    let w = world().await;
    let client = w.accounts.client.clone();
    let requests = DynamoLinks::requests(client.clone(), w.links_table.clone());
    let approvals = DynamoLinks::approvals(
        client.clone(),
        w.links_table.clone(),
        DynamoUsers::new(client, w.accounts.users_table.clone()),
    );
    let link = w.requested(&requests).await;
    assert_eq!(
        requests.by_code(&link.code).await.unwrap().unwrap().link_id,
        link.link_id
    );
    let new = DeviceCredential {
        user_id: w.user.user_id.clone(),
        device_id: DeviceId::generate(),
    };
    assert!(matches!(
        requests.approve(&link, &new, &w.primary.device_id).await,
        Err(PortError::Backend(_))
    ));
    assert!(
        requests
            .by_id(&link.link_id)
            .await
            .unwrap()
            .unwrap()
            .approved
            .is_none()
    );

    approvals
        .approve(&link, &new, &w.primary.device_id)
        .await
        .unwrap();
    let approved = approvals.by_id(&link.link_id).await.unwrap().unwrap();
    assert_eq!(approved.approved_by.as_ref(), Some(&w.primary.device_id));
    let device = Device {
        user_id: new.user_id,
        device_id: new.device_id,
        name: approved.name.clone(),
        platform: approved.platform,
        primary: false,
        key_hash: ApiKey::generate().hash(),
        created_at: Utc::now(),
    };
    assert!(matches!(
        approvals.complete(&approved, &device).await,
        Err(PortError::Backend(_))
    ));
    assert!(!w.device_ids().await.contains(&device.device_id));
    // The full store (getLinkRequest's) completes it.
    w.links.complete(&approved, &device).await.unwrap();
    assert!(w.device_ids().await.contains(&device.device_id));
}
