//! LocalStack mode: S3 and SNS on a LocalStack the local cloud starts and stops, resources
//! created from `tests/fixtures/resources.yaml`, the outbox read from LocalStack, presigned uploads
//! checked against their signature. Skipped (with a note) when LocalStack is not installed
//! (`infra/install --localstack`), unless `COURIER_LOCALSTACK=1` asks for LocalStack mode, when a
//! missing LocalStack fails the test instead.

use std::path::Path;
use std::time::Duration;

use courier_local::LocalCloudConfig;
use courier_local::provision::AwsSettings;
use serde_json::json;

mod common;

fn available() -> bool {
    let required = std::env::var("COURIER_LOCALSTACK").is_ok_and(|v| !v.is_empty() && v != "0");
    let found = courier_local::emulators::localstack_python(
        &common::workspace_root(),
        Path::new(".courier-local"),
    );
    let ddb = courier_local::emulators::dynamodb_local_dir(&common::workspace_root());
    match (found, ddb) {
        (Ok(_), Ok(_)) => true,
        (found, ddb) if required => {
            panic!(
                "COURIER_LOCALSTACK is set but LocalStack or DynamoDB Local is missing: {found:?} {ddb:?}"
            )
        }
        _ => {
            eprintln!(
                "skipping: LocalStack (infra/install --localstack) or DynamoDB Local missing"
            );
            false
        }
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[tokio::test]
async fn localstack_serves_s3_and_sns_checks_presigned_uploads_and_stops_with_the_cloud() {
    if !available() {
        return;
    }
    if std::env::var("COURIER_DYNAMODB_LOCAL_DIR").is_err() {
        let dir = courier_local::emulators::dynamodb_local_dir(&common::workspace_root()).unwrap();
        // SAFETY: set before any other thread of this test reads the environment.
        unsafe { std::env::set_var("COURIER_DYNAMODB_LOCAL_DIR", dir) };
    }
    // The fixture is not at the workspace root, where LocalStack's venv is.
    if std::env::var("COURIER_LOCALSTACK_PYTHON").is_err() {
        let python = courier_local::emulators::localstack_python(
            &common::workspace_root(),
            Path::new(".courier-local"),
        )
        .unwrap();
        // SAFETY: as above.
        unsafe { std::env::set_var("COURIER_LOCALSTACK_PYTHON", python) };
    }
    let dir = common::TempDir::new("ls");
    let state = &dir.0;
    let prefix = format!("ls{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let config = LocalCloudConfig {
        resource_prefix: prefix.clone(),
        localstack: true,
        ..common::config("resources.yaml", state.clone())
    };
    let cloud = courier_local::start(config).await.unwrap();
    let ep = cloud.endpoints().clone();
    let localstack = ep.localstack.clone().expect("LocalStack's URL");
    assert_eq!(ep.s3, localstack);
    assert_eq!(ep.sns, localstack);
    assert_eq!(ep.moto, None, "no moto in LocalStack mode");
    let pid = cloud
        .localstack_pid()
        .expect("the cloud started LocalStack");
    assert!(alive(pid));

    // The function sees the template's resources as LocalStack created them. (That it signs with
    // the secret LocalStack checks presigned URLs against, the echo function does not show: the
    // media and status suites in LocalStack mode upload through the functions' URLs.)
    let r = common::echo(&cloud).await;
    let env = &r["env"];
    assert_eq!(env["MEDIA_BUCKET"], format!("{prefix}-mediabucket"));
    assert_eq!(env["AWS_ENDPOINT_URL_S3"], localstack.as_str());
    assert_eq!(
        env["IOS_APP"],
        format!("arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/{prefix}-ios")
    );
    // FCM's application has a credential and no principal, as on AWS.
    assert_eq!(
        env["ANDROID_APP"],
        format!("arn:aws:sns:us-east-1:000000000000:app/GCM/{prefix}-android")
    );

    // SMS and push publishes show up in the outbox, read from LocalStack; reset hides them.
    let aws = AwsSettings {
        secret_access_key: courier_local::emulators::LOCALSTACK_SECRET_KEY.into(),
        ..AwsSettings::from_env()
    };
    let sns = aws.sns(&ep.sns);
    let endpoint = common::publish_sms_and_push(
        &sns,
        env["IOS_APP"].as_str().unwrap(),
        "{\"aps\":{\"content-available\":1}}",
    )
    .await;
    let get = |path: &'static str| common::get_json(&cloud, path);
    let sms = get("/_local/outbox/sms").await;
    assert_eq!(sms.as_array().unwrap().len(), 1, "{sms}");
    assert_eq!(sms[0]["phoneNumber"], "+14155550100");
    assert_eq!(sms[0]["message"], "code 123456");
    let push = get("/_local/outbox/push").await;
    assert_eq!(push.as_array().unwrap().len(), 1, "{push}");
    assert_eq!(push[0]["endpointArn"], endpoint);
    assert_eq!(push[0]["messageStructure"], "json");
    assert!(
        push[0]["message"]
            .as_str()
            .unwrap()
            .contains("content-available"),
        "the APNs part reached the device: {push}"
    );
    let http = reqwest::Client::new();
    http.post(format!("{}/_local/outbox/reset", cloud.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(get("/_local/outbox/sms").await, json!([]));
    assert_eq!(get("/_local/outbox/push").await, json!([]));

    // A presigned PUT is checked as S3 checks it: the signed size and type must be the ones sent.
    let bucket = env["MEDIA_BUCKET"].as_str().unwrap();
    let s3 = aws.s3(&ep.s3);
    let presigned = s3
        .put_object()
        .bucket(bucket)
        .key("media/m_1")
        .content_type("image/png")
        .content_length(5)
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap(),
        )
        .await
        .unwrap();
    let put = |body: &'static [u8], content_type: &'static str| {
        http.put(presigned.uri())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let refused = put(b"12345", "text/html").await.unwrap();
    assert_eq!(refused.status(), 403, "another content type than signed");
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("SignatureDoesNotMatch")
    );
    let refused = put(b"123456", "image/png").await.unwrap();
    assert_eq!(refused.status(), 403, "another size than signed");
    let stored = put(b"12345", "image/png").await.unwrap();
    assert_eq!(stored.status(), 200, "{}", stored.text().await.unwrap());
    let head = s3
        .head_object()
        .bucket(bucket)
        .key("media/m_1")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(5));
    assert_eq!(head.content_type(), Some("image/png"));
    // Its objects are kept under the cloud's state dir, not in a /tmp folder shared by every
    // LocalStack on the machine.
    assert!(state.join("localstack/s3-objects").join(bucket).is_dir());

    // Stopping the cloud stops LocalStack (SIGTERM, SIGKILL after a deadline).
    cloud.shutdown().await;
    assert!(!alive(pid), "LocalStack ({pid}) is still running");
}
