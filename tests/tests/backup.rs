//! User backups end to end with the `courier` CLI on the local cloud: Alice and Bob chat (direct
//! and in a group), Alice's history is recorded on her device, she backs it up under a
//! passphrase; the object in S3 holds none of the texts nor the phone numbers; on a fresh device
//! of her account (the number moved to a new phone) a wrong passphrase fails clearly and
//! restores nothing, the right one restores a history identical to the old device's. Bob
//! cannot get Alice's backup. The restored room keys decrypt the old messages on the server, and
//! deleting the account deletes the backups.

use courier_client::{Client, ClientConfig, Encryption, Event, Session};
use courier_tests::{TestCloud, fresh_phone, repo_root};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn courier(cloud: &TestCloud, config: &Path, args: &[&str]) -> (bool, String, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let out = Command::new(target.join("debug/courier"))
        .args(args)
        .env("COURIER_HTTP_URL", &cloud.http_url)
        .env("COURIER_WS_URL", &cloud.ws_url)
        .env("COURIER_CONFIG_DIR", config)
        .output()
        .expect("the courier binary runs (cargo build --workspace --bins)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(cloud: &TestCloud, config: &Path, args: &[&str]) -> String {
    let (ok, out, err) = courier(cloud, config, args);
    assert!(ok, "courier {args:?}: {err}");
    out
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("courier-backup-{}", uuid::Uuid::new_v4().simple()))
}

/// A device signed in on `phone` (registered or moved there), in a new config directory.
async fn device_on(cloud: &TestCloud, phone: &str) -> PathBuf {
    let config = temp_dir();
    run(cloud, &config, &["register", phone]);
    let code = cloud.code_for(phone).await.unwrap();
    run(cloud, &config, &["verify", &code]);
    config
}

fn credentials(config: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(config.join("credentials.json")).unwrap()).unwrap()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every object under `prefix` in the local S3, with its bytes.
async fn objects_under(cloud: &TestCloud, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let s3 = cloud.s3();
    let mut found = Vec::new();
    for bucket in s3.list_buckets().send().await.unwrap().buckets() {
        let name = bucket.name().unwrap();
        let listed = s3
            .list_objects_v2()
            .bucket(name)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        for o in listed.contents() {
            let key = o.key().unwrap().to_owned();
            let body = s3.get_object().bucket(name).key(&key).send().await.unwrap();
            found.push((
                key,
                body.body.collect().await.unwrap().into_bytes().to_vec(),
            ));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_history_backed_up_under_a_passphrase_is_restored_identical_on_a_new_device() {
    let cloud = TestCloud::shared();
    let alice_phone = fresh_phone();
    let bob_phone = fresh_phone();
    let alice = device_on(cloud, &alice_phone).await;
    let bob = device_on(cloud, &bob_phone).await;
    let alice_id = credentials(&alice)["userId"].as_str().unwrap().to_owned();

    // A direct chat both ways and a group chat.
    let texts = [
        "alpha: the rendezvous is at noon",
        "bravo: bring the blue folder",
        "charlie: confirmed, see you there",
        "delta: hello club, from alice",
        "echo: hello club, from bob",
    ];
    run(cloud, &alice, &["send", &bob_phone, texts[0]]);
    run(cloud, &bob, &["inbox", "--timeout", "20"]);
    run(cloud, &bob, &["send", &alice_phone, texts[1]]);
    run(cloud, &alice, &["inbox", "--timeout", "20"]);
    run(cloud, &alice, &["send", &bob_phone, texts[2]]);
    let group = run(
        cloud,
        &alice,
        &["group", "create", "Backup club", &bob_phone],
    )
    .trim()
    .to_owned();
    run(cloud, &alice, &["send", "--session", &group, texts[3]]);
    run(cloud, &bob, &["inbox", "--timeout", "20"]);
    run(cloud, &bob, &["send", "--session", &group, texts[4]]);
    run(cloud, &alice, &["inbox", "--timeout", "20"]);

    // Alice's device recorded all of it, sent and received, de-duplicated.
    let history = run(cloud, &alice, &["history", "--json"]);
    let entries = json_lines(&history);
    for t in texts {
        assert_eq!(
            entries.iter().filter(|e| e["text"] == t).count(),
            1,
            "{t} in {history}"
        );
    }
    let direct: Vec<Value> = json_lines(&run(cloud, &alice, &["history", &bob_phone, "--json"]))
        .into_iter()
        .filter(|e| e["type"] == "text")
        .collect();
    assert_eq!(direct.len(), 3, "{direct:?}");
    assert!(direct.iter().all(|e| e["sessionId"] != group.as_str()));
    assert_eq!(direct[1]["text"], texts[1]);
    assert_eq!(direct[1]["sender"], credentials(&bob)["userId"]);
    let readable = run(cloud, &alice, &["history", "--session", &group]);
    assert!(readable.contains("me: delta"), "{readable}");

    // The backup.
    let pass_file = temp_dir().with_extension("pass");
    std::fs::write(&pass_file, "orange-kettle-sunrise-42\n").unwrap();
    let created = run(
        cloud,
        &alice,
        &[
            "backup",
            "create",
            "--passphrase-file",
            pass_file.to_str().unwrap(),
        ],
    );
    let backup_id = created
        .split_whitespace()
        .nth(1)
        .expect("backup <id> created")
        .to_owned();
    assert!(
        created.contains(&format!("created: {} messages", entries.len())),
        "{created}"
    );

    // In S3: one object under Alice's prefix, ciphertext only.
    let objects = objects_under(cloud, &format!("backups/{alice_id}/")).await;
    assert_eq!(objects.len(), 1);
    let (key, bytes) = &objects[0];
    assert_eq!(key, &format!("backups/{alice_id}/{backup_id}"));
    assert_eq!(&bytes[..4], b"CBAK");
    for t in texts {
        for word in t.split_whitespace().filter(|w| w.len() >= 5) {
            assert!(!contains(bytes, word), "{word:?} is in the backup object");
        }
    }
    for needle in [&alice_phone, &bob_phone, &alice_phone[1..], &bob_phone[1..]] {
        assert!(
            !contains(bytes, needle),
            "a phone number is in the backup object"
        );
    }
    assert!(
        !contains(bytes, &alice_id),
        "the user id is in the backup object"
    );

    let listed: Value =
        serde_json::from_str(&run(cloud, &alice, &["backup", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["backupId"], backup_id.as_str());
    assert_eq!(listed[0]["size"], bytes.len());

    // Bob sees no backups, and cannot download Alice's.
    let bob_list = run(cloud, &bob, &["backup", "list", "--json"]);
    assert_eq!(bob_list.trim(), "[]");
    let bob_key = credentials(&bob)["apiKey"].as_str().unwrap().to_owned();
    let session = Session::connect(&cloud.ws_url, &bob_key).await.unwrap();
    let err = session
        .request("getBackupDownload", json!({ "backupId": backup_id }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(courier_core::ErrorCode::NotFound), "{err}");
    session.close().await;

    // Alice moves her number to a new phone: same account, new device, no history yet.
    let new_phone = device_on(cloud, &alice_phone).await;
    assert_eq!(credentials(&new_phone)["userId"], alice_id.as_str());
    assert_eq!(run(cloud, &new_phone, &["history", "--json"]).trim(), "");

    // A wrong passphrase fails clearly and restores nothing.
    let wrong = temp_dir().with_extension("wrong");
    std::fs::write(&wrong, "orange-kettle-sunset-42\n").unwrap();
    let (ok, out, err) = courier(
        cloud,
        &new_phone,
        &[
            "backup",
            "restore",
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{out}");
    assert!(err.contains("wrong passphrase or damaged backup"), "{err}");
    assert_eq!(run(cloud, &new_phone, &["history", "--json"]).trim(), "");

    // The right one restores the history exactly as the old device had it.
    let restored = run(
        cloud,
        &new_phone,
        &[
            "backup",
            "restore",
            "--backup-id",
            &backup_id,
            "--passphrase-file",
            pass_file.to_str().unwrap(),
        ],
    );
    assert!(
        restored.contains(&format!(": {} messages", entries.len())),
        "{restored}"
    );
    assert_eq!(run(cloud, &new_phone, &["history", "--json"]), history);
    // The cursors came along: nothing old shows up as new.
    let (ok, out, err) = courier(cloud, &new_phone, &["inbox", "--json", "--timeout", "20"]);
    assert!(ok, "{err}");
    assert!(
        json_lines(&out).iter().all(|m| m["event"] != "message"),
        "{out}"
    );
    // Restoring again adds nothing.
    let again = run(
        cloud,
        &new_phone,
        &[
            "backup",
            "restore",
            "--passphrase-file",
            pass_file.to_str().unwrap(),
        ],
    );
    assert!(again.contains(": 0 messages"), "{again}");
    assert_eq!(run(cloud, &new_phone, &["history", "--json"]), history);

    // The restored room keys read the messages still on the server: a re-sync from the start
    // (no cursors) decrypts every old text, none is undecryptable.
    let creds = credentials(&new_phone);
    let mut config = ClientConfig::new(&cloud.ws_url, creds["apiKey"].as_str().unwrap());
    config.auto_ack_delivered = false;
    config.encryption = Some(Encryption {
        dir: new_phone.join("crypto"),
        user_id: alice_id.clone(),
        device_id: creds["deviceId"].as_str().unwrap().to_owned(),
    });
    let (client, mut events) = Client::connect(config).await.unwrap();
    let mut read = Vec::new();
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
            .await
            .expect("the sync ends")
            .expect("events go on");
        match event {
            Event::Message(m) => read.extend(m.text),
            Event::Undecryptable { message, reason } => {
                panic!("{} undecryptable after restore: {reason}", message.msg_id)
            }
            Event::Synced => break,
            _ => {}
        }
    }
    client.close().await;
    for t in texts {
        assert!(read.iter().any(|r| r == t), "{t} not read again: {read:?}");
    }

    // Deleting the account deletes its backups, objects and records.
    let session = Session::connect(&cloud.ws_url, creds["apiKey"].as_str().unwrap())
        .await
        .unwrap();
    session.request("deleteAccount", json!({})).await.unwrap();
    assert!(
        objects_under(cloud, &format!("backups/{alice_id}/"))
            .await
            .is_empty()
    );
    let records = cloud
        .dynamodb()
        .query()
        .table_name(cloud.table("BackupTable"))
        .key_condition_expression("pk = :p")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{alice_id}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(records.count(), 0);

    for p in [pass_file, wrong] {
        let _ = std::fs::remove_file(p);
    }
    for d in [alice, bob, new_phone] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test]
async fn create_backup_refuses_an_empty_or_oversized_file_and_a_fourth_pending_upload() {
    use courier_core::ErrorCode;
    use courier_core::usecases::backups::{MAX_BACKUP_BYTES, MAX_PENDING_BACKUPS};
    let cloud = TestCloud::shared();
    let alice = cloud.sign_up().await;
    let s = courier_tests::connect(cloud, &alice).await;
    let code = |r: Result<Value, courier_client::ClientError>| r.unwrap_err().code();
    assert_eq!(
        code(s.request("createBackup", json!({"size": 0})).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(
            s.request("createBackup", json!({"size": MAX_BACKUP_BYTES + 1}))
                .await
        ),
        Some(ErrorCode::PayloadTooLarge)
    );
    // The largest size is accepted (the URL is bound to it; nothing is uploaded here).
    let mut pending = vec![
        s.request("createBackup", json!({"size": MAX_BACKUP_BYTES}))
            .await
            .expect("512 MiB is allowed"),
    ];
    while pending.len() < MAX_PENDING_BACKUPS {
        pending.push(s.request("createBackup", json!({"size": 5})).await.unwrap());
    }
    assert_eq!(
        code(s.request("createBackup", json!({"size": 5})).await),
        Some(ErrorCode::LimitExceeded),
        "a fourth upload may not wait"
    );
    // None of the refusals left a record: nothing is listed, and once one pending upload
    // arrives (listed, so no longer pending) a new backup may start.
    assert_eq!(
        s.request("listBackups", json!({})).await.unwrap()["backups"],
        json!([])
    );
    let last = pending.last().unwrap();
    let mut req = reqwest::Client::new()
        .put(last["uploadUrl"].as_str().unwrap())
        .body(vec![7u8; 5]);
    for (k, v) in last["uploadHeaders"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    assert!(req.send().await.unwrap().status().is_success());
    let listed = s.request("listBackups", json!({})).await.unwrap();
    assert_eq!(listed["backups"][0]["backupId"], last["backupId"]);
    s.request("createBackup", json!({"size": 5}))
        .await
        .expect("two pending now: a third may start");
}
