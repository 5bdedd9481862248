//! `DynamoBackups` over a `BackupTable`: records round-trip newest first per user, a pending
//! record carries a TTL that completion removes, and deletion leaves nothing.

use crate::support;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, TimeZone, Utc};
use courier_aws::dynamo::DynamoBackups;
use courier_core::UserId;
use courier_core::ports::{BackupRecord, BackupStore};

#[tokio::test]
async fn backups_round_trip_newest_first_and_completion_drops_the_ttl() {
    let client = support::client();
    let table = support::create_table(&client, "BackupTable").await;
    let s = DynamoBackups::new(client.clone(), &table);
    let (a, b) = (UserId::generate(), UserId::generate());
    // Now (to the second): a pending record's TTL must lie ahead, as on AWS. A fixed date here
    // made the test fail once the date was some days past: DynamoDB Local deletes items whose
    // TTL has long passed, as DynamoDB does.
    let at = Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap();
    let record = |u: &UserId, id: &str, mins: i64| BackupRecord {
        user_id: u.clone(),
        backup_id: id.to_owned(),
        size: 1000 + mins as u64,
        created_at: at + Duration::minutes(mins),
        complete: false,
    };
    s.put_backup(&record(&a, "old", 0)).await.unwrap();
    s.put_backup(&record(&a, "new", 5)).await.unwrap();
    s.put_backup(&record(&b, "other", 3)).await.unwrap();
    let mine = s.backups(&a).await.unwrap();
    assert_eq!(mine, vec![record(&a, "new", 5), record(&a, "old", 0)]);
    assert_eq!(s.backup(&a, "other").await.unwrap(), None, "per user");
    assert_eq!(
        s.backup(&b, "other").await.unwrap(),
        Some(record(&b, "other", 3))
    );

    let ttl = |id: &'static str| {
        let client = client.clone();
        let table = table.clone();
        let pk = format!("USER#{a}");
        async move {
            let item = client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(format!("BACKUP#{id}")))
                .send()
                .await
                .unwrap()
                .item
                .unwrap();
            item.get("expiresAt").cloned()
        }
    };
    assert!(ttl("new").await.is_some(), "a pending record expires");
    s.mark_complete(&a, "new").await.unwrap();
    assert!(ttl("new").await.is_none(), "a complete one does not");
    assert!(s.backup(&a, "new").await.unwrap().unwrap().complete);
    // Marking a record that is gone writes nothing.
    s.mark_complete(&a, "gone").await.unwrap();
    assert_eq!(s.backup(&a, "gone").await.unwrap(), None);

    s.delete_backup(&a, "old").await.unwrap();
    s.delete_backup(&a, "old").await.unwrap();
    let left: Vec<_> = s
        .backups(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.backup_id)
        .collect();
    assert_eq!(left, ["new"]);
}
