//! `createBackup`.

use super::*;

#[tokio::test]
async fn create_backup_replies_with_a_presigned_upload_and_refuses_oversized_ones() {
    use courier_core::usecases::backups;
    let records = MemoryBackups::default();
    let objects = MemoryObjects::default();
    let deps = backups::Deps {
        backups: &records,
        objects: &objects,
        clock: &SystemClock,
        quota: None,
    };
    let deps = &deps;
    let event = ws_event("create-backup.json");
    let resp = routes::action("createBackup", &event, |who, params| async move {
        backups::create_backup(deps, &who, params).await
    })
    .await;
    assert_eq!(resp.status_code, 200);
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r7");
    assert_eq!(f["ok"], true, "{f}");
    let id = f["result"]["backupId"].as_str().unwrap();
    assert_eq!(
        f["result"]["uploadUrl"],
        format!("memory://backups/u_test/{id}")
    );
    assert_eq!(
        f["result"]["uploadHeaders"]["content-type"],
        "application/octet-stream"
    );
    assert_eq!(f["result"]["uploadHeaders"]["content-length"], "4096");
    // Not listed until uploaded.
    let mut list = ws_event("create-backup.json");
    list.body = Some(r#"{"action":"listBackups","requestId":"r8"}"#.into());
    let resp = routes::action(
        "listBackups",
        &list,
        |who, _: courier_core::protocol::ListBackupsParams| async move {
            backups::list_backups(deps, &who).await
        },
    )
    .await;
    assert_eq!(frame(&resp)["result"]["backups"], serde_json::json!([]));

    let mut big = ws_event("create-backup.json");
    big.body = Some(r#"{"action":"createBackup","requestId":"r9","size":536870913}"#.into());
    let resp = routes::action("createBackup", &big, |who, params| async move {
        backups::create_backup(deps, &who, params).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r9");
    assert_eq!(f["error"]["code"], "PAYLOAD_TOO_LARGE");
}
