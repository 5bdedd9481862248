//! Block lists over DynamoDB Local, beside the contacts in `UsersTable`: blocking twice is one
//! block, a block is one way, a list holds every block, and deleting an account's blocks leaves
//! its contacts and others' blocks alone.

use crate::support;
use chrono::Utc;
use courier_aws::dynamo::DynamoSettings;
use courier_core::UserId;
use courier_core::ports::{BlockList, SettingsStore};

#[tokio::test]
async fn blocks_are_one_way_idempotent_listed_and_deleted_with_the_account() {
    let client = support::client();
    let table = support::create_table(&client, "UsersTable").await;
    let s = DynamoSettings::new(client, &table);
    let (a, b, c) = (UserId::generate(), UserId::generate(), UserId::generate());
    s.update_contacts(&a, std::slice::from_ref(&c), &[], Utc::now())
        .await
        .unwrap();

    s.block(&a, &b, Utc::now()).await.unwrap();
    s.block(&a, &b, Utc::now()).await.unwrap();
    s.block(&c, &a, Utc::now()).await.unwrap();
    assert!(s.has_blocked(&a, &b).await.unwrap());
    assert!(!s.has_blocked(&b, &a).await.unwrap(), "one way");
    assert_eq!(s.blocked(&a).await.unwrap(), vec![b.clone()]);
    // A block is not a contact, and a contact is not a block.
    assert_eq!(s.contacts(&a).await.unwrap(), vec![c.clone()]);
    assert!(!s.has_blocked(&a, &c).await.unwrap());

    s.unblock(&a, &b).await.unwrap();
    s.unblock(&a, &b).await.unwrap();
    assert!(s.blocked(&a).await.unwrap().is_empty());

    // Many blocks: listed whole, and deleted whole with the account.
    let many: Vec<UserId> = (0..120).map(|_| UserId::generate()).collect();
    for u in &many {
        s.block(&a, u, Utc::now()).await.unwrap();
    }
    let mut listed = s.blocked(&a).await.unwrap();
    let mut expected = many.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    s.delete_blocks(&a).await.unwrap();
    assert!(s.blocked(&a).await.unwrap().is_empty());
    assert_eq!(
        s.contacts(&a).await.unwrap(),
        vec![c.clone()],
        "contacts stay"
    );
    assert!(s.has_blocked(&c, &a).await.unwrap(), "others' blocks stay");
}
