//! Emulators and provisioning: DynamoDB Local and moto started by the local cloud, resources
//! created from `tests/fixtures/resources.yaml`, the outbox read back. The emulators are the
//! workspace's (`infra/install`), passed to the local cloud explicitly; a missing one fails the
//! test with what to do.

use std::path::PathBuf;

use courier_local::LocalCloudConfig;
use serde_json::{Value, json};

mod common;

#[tokio::test]
async fn provisions_the_template_and_reads_the_outbox() {
    // The fixture lives in tests/fixtures; the emulators are the workspace's, passed explicitly.
    let state = common::TempDir::new("emu");
    let config = LocalCloudConfig {
        dynamodb_faults: true,
        ..emulated(state.0.clone())
    };
    let cloud = courier_local::start(config).await.unwrap();
    let ep = cloud.endpoints().clone();
    let aws = courier_local::provision::AwsSettings::from_env();

    let ddb = aws.dynamodb(&ep.dynamodb);
    let tables = ddb.list_tables().send().await.unwrap();
    let names = tables.table_names();
    assert!(names.contains(&"emu-UsersTable".to_string()), "{names:?}");
    assert!(
        names.contains(&"emu-ConnectionsTable".to_string()),
        "{names:?}"
    );
    let ttl = ddb
        .describe_time_to_live()
        .table_name("emu-ConnectionsTable")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("ttl")
    );
    let users = users_table(&ddb).await;
    assert_eq!(
        users.global_secondary_indexes()[0].index_name(),
        Some("byUser")
    );

    // The function sees resolved names, the ARNs moto returned and the local endpoints.
    let r = common::echo(&cloud).await;
    let env = &r["env"];
    assert_eq!(env["USERS_TABLE"], "emu-UsersTable");
    assert_eq!(env["MEDIA_BUCKET"], "emu-mediabucket");
    assert_eq!(
        env["EVENTS_TOPIC"],
        "arn:aws:sns:us-east-1:000000000000:emu-EventsTopic"
    );
    assert_eq!(
        env["IOS_APP"],
        "arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/emu-ios"
    );
    assert_eq!(
        env["ANDROID_APP"],
        "arn:aws:sns:us-east-1:000000000000:app/GCM/emu-android"
    );
    // With `dynamodb_faults` the functions reach DynamoDB through the fault switch's proxy (GSI
    // lag, transaction conflicts), which answers as DynamoDB Local does.
    let functions_dynamodb = env["AWS_ENDPOINT_URL_DYNAMODB"].as_str().unwrap();
    assert_ne!(functions_dynamodb, ep.dynamodb.as_str());
    let through_proxy = users_table(&aws.dynamodb(functions_dynamodb)).await;
    assert_eq!(through_proxy.table_name(), Some("emu-UsersTable"));
    assert_eq!(env["AWS_EC2_METADATA_DISABLED"], "true");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");

    // SMS and push publishes show up in the outbox, and reset hides them.
    let sns = aws.sns(&ep.sns);
    let endpoint =
        common::publish_sms_and_push(&sns, env["IOS_APP"].as_str().unwrap(), "{\"aps\":{}}").await;
    let sms = common::get_json(&cloud, "/_local/outbox/sms").await;
    assert_eq!(sms[0]["phoneNumber"], "+14155550100");
    assert_eq!(sms[0]["message"], "code 123456");
    let push = common::get_json(&cloud, "/_local/outbox/push").await;
    assert_eq!(push[0]["endpointArn"], endpoint);
    assert_eq!(push[0]["messageStructure"], "json");
    reqwest::Client::new()
        .post(format!("{}/_local/outbox/reset", cloud.http_url()))
        .send()
        .await
        .unwrap();
    let sms = common::get_json(&cloud, "/_local/outbox/sms").await;
    assert_eq!(sms, json!([]));

    dynamodb_switches(&cloud, &aws, functions_dynamodb).await;

    cloud.shutdown().await;
}

/// The fixture's resources (named `emu-…`) in DynamoDB Local and moto as `infra/install`
/// installed them, the local cloud's state in `state_dir`.
fn emulated(state_dir: PathBuf) -> LocalCloudConfig {
    let (dynamodb_local_dir, moto_server) = common::installed_emulators();
    LocalCloudConfig {
        resource_prefix: "emu".into(),
        dynamodb_local_dir,
        moto_server,
        ..common::config("resources.yaml", state_dir)
    }
}

/// `emu-UsersTable` as DescribeTable describes it.
async fn users_table(ddb: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::types::TableDescription {
    let out = ddb
        .describe_table()
        .table_name("emu-UsersTable")
        .send()
        .await
        .unwrap();
    out.table.expect("a table description")
}

/// Writes `user`'s profile item to `emu-UsersTable` (`USER#<user>`/`PROFILE`, in the `byUser`
/// index).
async fn put_profile(ddb: &aws_sdk_dynamodb::Client, user: &str) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    ddb.put_item()
        .table_name("emu-UsersTable")
        .item("pk", A::S(format!("USER#{user}")))
        .item("sk", A::S("PROFILE".into()))
        .item("userId", A::S(user.into()))
        .send()
        .await
        .unwrap();
}

/// The item of `emu-UsersTable` at `pk`/`sk`, read at once (not strongly consistent).
async fn users_item(
    ddb: &aws_sdk_dynamodb::Client,
    pk: &str,
    sk: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    ddb.get_item()
        .table_name("emu-UsersTable")
        .key("pk", A::S(pk.into()))
        .key("sk", A::S(sk.into()))
        .send()
        .await
        .unwrap()
        .item
}

/// The DynamoDB fault switches, as the functions meet them through their endpoint (the proxy):
/// an index read misses a write made within the lag while the table has it, and sees it once
/// the lag has passed; an armed transaction is cancelled with a `TransactionConflict` reason
/// for the item of the armed table and writes nothing.
async fn dynamodb_switches(
    cloud: &courier_local::LocalCloud,
    aws: &courier_local::provision::AwsSettings,
    functions_dynamodb: &str,
) {
    use aws_sdk_dynamodb::types::{AttributeValue as A, Put, TransactWriteItem};
    let ddb = aws.dynamodb(functions_dynamodb);
    let s = |v: &str| A::S(v.to_string());
    // Written before the lag is armed: in the replica's copy.
    put_profile(&ddb, "old").await;
    cloud.faults().dynamodb().set_gsi_lag(5_000).await.unwrap();
    let by_user = |user: &'static str| {
        ddb.query()
            .table_name("emu-UsersTable")
            .index_name("byUser")
            .key_condition_expression("userId = :u")
            .expression_attribute_values(":u", s(user))
            .send()
    };
    assert_eq!(by_user("old").await.unwrap().count(), 1);
    put_profile(&ddb, "new").await;
    assert_eq!(
        by_user("new").await.unwrap().count(),
        0,
        "the index does not have the write yet"
    );
    assert!(
        users_item(&ddb, "USER#new", "PROFILE").await.is_some(),
        "the table has it at once"
    );
    let started = std::time::Instant::now();
    while by_user("new").await.unwrap().count() == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the index never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let f = cloud.faults().describe();
    assert_eq!(f["gsiLag"]["tables"], json!(["emu-UsersTable"]), "{f}");
    assert!(f["gsiLag"]["laggedReads"].as_u64().unwrap() >= 3, "{f}");
    assert_eq!(f["gsiLag"]["replicaFailures"], 0, "{f}");
    cloud.faults().dynamodb().set_gsi_lag(0).await.unwrap();

    cloud
        .faults()
        .dynamodb()
        .set_transaction_conflicts(1, 0.0, Some("emu-UsersTable".into()))
        .unwrap();
    let put = |pk: &str, table: &str| {
        let mut b = Put::builder()
            .table_name(table)
            .item("pk", s(pk))
            .item("sk", s("X"));
        if table == "emu-UsersTable" {
            b = b.item("userId", s("tx"));
        }
        TransactWriteItem::builder().put(b.build().unwrap()).build()
    };
    let tx = || {
        ddb.transact_write_items()
            .transact_items(put("CONN#tx", "emu-ConnectionsTable"))
            .transact_items(put("USER#tx", "emu-UsersTable"))
            .send()
    };
    let err = tx().await.expect_err("the armed conflict");
    let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t) =
        err.into_service_error()
    else {
        panic!("expected TransactionCanceledException");
    };
    let codes: Vec<_> = t
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or_default().to_string())
        .collect();
    assert_eq!(codes, ["None", "TransactionConflict"]);
    assert!(
        users_item(&ddb, "USER#tx", "X").await.is_none(),
        "a cancelled transaction writes nothing"
    );
    tx().await.expect("one conflict only");
    assert_eq!(
        cloud.faults().describe()["transactionConflicts"]["injected"],
        1
    );
}

#[tokio::test]
async fn a_persistent_dynamodb_local_restarts_with_its_data_and_sns_goes_through_the_proxy() {
    let dir = common::TempDir::new("emu");
    let state = &dir.0;
    let config = LocalCloudConfig {
        persistent_dynamodb: true,
        ..emulated(state.clone())
    };
    let cloud = courier_local::start(config).await.unwrap();
    let ep = cloud.endpoints().clone();
    let aws = courier_local::provision::AwsSettings::from_env();
    let ddb = aws.dynamodb(&ep.dynamodb);
    put_profile(&ddb, "kept").await;
    assert!(state.join("dynamodb").is_dir());

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_local/restart/dynamodb", cloud.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["restarted"], true, "{body}");
    assert_eq!(body["restarts"], 1);
    // Same endpoint, same data.
    assert!(
        users_item(&ddb, "USER#kept", "PROFILE").await.is_some(),
        "the item survived the restart"
    );

    // The functions reach SNS through the proxy, which fails calls when told to.
    let r = common::echo(&cloud).await;
    let sns_url = r["env"]["AWS_ENDPOINT_URL_SNS"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(sns_url, ep.sns, "functions see the proxy, not moto");
    let sns = aws.sns(&sns_url);
    sns.publish()
        .phone_number("+14155550101")
        .message("through the proxy")
        .send()
        .await
        .unwrap();
    cloud.faults().set_sns_failure_rate(1.0).unwrap();
    let err = sns
        .publish()
        .phone_number("+14155550101")
        .message("fails")
        .send()
        .await
        .unwrap_err();
    let err = aws_sdk_sns::Error::from(err);
    assert!(format!("{err:?}").contains("InternalError"), "{err:?}");
    // The SDK tried 3 times (its standard retries), each refused.
    assert_eq!(cloud.faults().describe()["sns"]["injectedErrors"], 3);
    cloud.faults().clear();
    let sms = common::get_json(&cloud, "/_local/outbox/sms").await;
    assert_eq!(sms.as_array().unwrap().len(), 1, "{sms}");
    assert_eq!(sms[0]["message"], "through the proxy");

    cloud.shutdown().await;
}

#[tokio::test]
async fn an_in_memory_dynamodb_local_is_not_restarted() {
    let state = common::TempDir::new("emu");
    let cloud = courier_local::start(emulated(state.0.clone()))
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/_local/restart/dynamodb", cloud.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("--persistent-dynamodb"));
    cloud.shutdown().await;
}
