//! Request -> SNS calls -> response mapping, with a fake SNS (no AWS, no network but loopback).

use std::sync::Mutex;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const APNS_ARN: &str = "arn:aws:sns:us-east-1:123456789012:app/APNS/courier-apns";
const NEW_ARN: &str = "arn:aws:sns:us-east-1:123456789012:app/APNS_SANDBOX/courier-apns";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Create {
        name: String,
        platform: String,
        attributes: BTreeMap<String, String>,
    },
    SetAttributes {
        arn: String,
        attributes: BTreeMap<String, String>,
    },
    Delete {
        arn: String,
    },
}

struct FakeSns {
    calls: Mutex<Vec<Call>>,
    create: Result<String, SnsError>,
    set: Result<(), SnsError>,
    delete: Result<(), SnsError>,
}

impl FakeSns {
    fn ok(arn: &str) -> Self {
        FakeSns {
            calls: Mutex::new(Vec::new()),
            create: Ok(arn.to_owned()),
            set: Ok(()),
            delete: Ok(()),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl PlatformApps for FakeSns {
    async fn create(
        &self,
        name: &str,
        platform: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, SnsError> {
        self.calls.lock().unwrap().push(Call::Create {
            name: name.into(),
            platform: platform.into(),
            attributes: attributes.clone(),
        });
        self.create.clone()
    }

    async fn set_attributes(
        &self,
        arn: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), SnsError> {
        self.calls.lock().unwrap().push(Call::SetAttributes {
            arn: arn.into(),
            attributes: attributes.clone(),
        });
        self.set.clone()
    }

    async fn delete(&self, arn: &str) -> Result<(), SnsError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Delete { arn: arn.into() });
        self.delete.clone()
    }
}

/// The Create fixture that `events/` ships (the shape CloudFormation sends).
fn create_fixture() -> Value {
    serde_json::from_str(include_str!("../../../events/platform-app-create.json")).unwrap()
}

fn request(value: Value) -> Request {
    serde_json::from_value(value).expect("a CloudFormation custom resource request")
}

fn update_from(old_props: Value, new_props: Value, physical_id: &str) -> Request {
    let mut v = create_fixture();
    v["RequestType"] = json!("Update");
    v["PhysicalResourceId"] = json!(physical_id);
    v["OldResourceProperties"] = old_props;
    v["ResourceProperties"] = new_props;
    request(v)
}

fn delete_of(physical_id: &str) -> Request {
    let mut v = create_fixture();
    v["RequestType"] = json!("Delete");
    v["PhysicalResourceId"] = json!(physical_id);
    request(v)
}

fn apns_attributes() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("ApplePlatformBundleID".into(), "com.example.courier".into()),
        ("ApplePlatformTeamID".into(), "TEAM123456".into()),
        (
            "PlatformCredential".into(),
            "not-a-real-apns-p8-signing-key".into(),
        ),
        ("PlatformPrincipal".into(), "ABC123DEFG".into()),
    ])
}

fn is_success(r: &Response) -> bool {
    r.status == CloudFormationCustomResourceResponseStatus::Success
}

#[tokio::test]
async fn create_calls_sns_and_answers_with_the_arn() {
    let sns = FakeSns::ok(APNS_ARN);
    let resp = handle(&sns, &request(create_fixture())).await;

    assert_eq!(
        sns.calls(),
        vec![Call::Create {
            name: "courier-apns".into(),
            platform: "APNS".into(),
            attributes: apns_attributes(),
        }]
    );
    assert!(is_success(&resp));
    assert_eq!(resp.physical_resource_id, APNS_ARN);
    assert_eq!(resp.data.get("Arn").map(String::as_str), Some(APNS_ARN));
    assert_eq!(
        resp.stack_id,
        "arn:aws:cloudformation:us-east-1:123456789012:stack/courier/5b1d8c40-cc0d-11ef-9b8e-0affd3a1c7d9"
    );
    assert_eq!(resp.request_id, "6f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b");
    assert_eq!(resp.logical_resource_id, "ApnsPlatformApplication");
}

#[tokio::test]
async fn response_body_is_what_cloudformation_expects() {
    let sns = FakeSns::ok(APNS_ARN);
    let resp = handle(&sns, &request(create_fixture())).await;
    let body = serde_json::to_value(&resp).unwrap();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], APNS_ARN);
    assert_eq!(body["StackId"], create_fixture()["StackId"]);
    assert_eq!(body["RequestId"], create_fixture()["RequestId"]);
    assert_eq!(body["LogicalResourceId"], "ApnsPlatformApplication");
    assert_eq!(body["Data"], json!({"Arn": APNS_ARN}));
    assert_eq!(body["NoEcho"], false);
}

#[tokio::test]
async fn create_failure_is_reported_with_a_placeholder_id() {
    let mut sns = FakeSns::ok(APNS_ARN);
    sns.create = Err(SnsError::Other(
        "InvalidParameter: Invalid parameter: Attributes Reason: invalid credential".into(),
    ));
    let resp = handle(&sns, &request(create_fixture())).await;

    assert_eq!(
        resp.status,
        CloudFormationCustomResourceResponseStatus::Failed
    );
    let reason = resp.reason.unwrap();
    assert!(
        reason.contains("CreatePlatformApplication failed"),
        "{reason}"
    );
    assert!(reason.contains("invalid credential"), "{reason}");
    assert!(!resp.physical_resource_id.is_empty());
    assert!(!is_arn(&resp.physical_resource_id));
    assert!(resp.data.is_empty());
}

#[tokio::test]
async fn bad_properties_fail_without_calling_sns() {
    for props in [
        json!({"Platform": "APNS"}),
        json!({"Name": "", "Platform": "APNS"}),
        json!({"Name": "x", "Platform": "CARRIER_PIGEON"}),
        json!({"Name": "x", "Platform": "GCM", "Attributes": "not a map"}),
    ] {
        let mut v = create_fixture();
        v["ResourceProperties"] = props.clone();
        let sns = FakeSns::ok(APNS_ARN);
        let resp = handle(&sns, &request(v)).await;
        assert_eq!(
            resp.status,
            CloudFormationCustomResourceResponseStatus::Failed,
            "{props}"
        );
        assert!(sns.calls().is_empty(), "{props}");
    }
}

#[tokio::test]
async fn update_of_attributes_keeps_the_application() {
    let old = create_fixture()["ResourceProperties"].clone();
    let mut new = old.clone();
    new["Attributes"]["PlatformPrincipal"] = json!("NEWKEY4567");
    let sns = FakeSns::ok(NEW_ARN);
    let resp = handle(&sns, &update_from(old, new, APNS_ARN)).await;

    let mut attributes = apns_attributes();
    attributes.insert("PlatformPrincipal".into(), "NEWKEY4567".into());
    assert_eq!(
        sns.calls(),
        vec![Call::SetAttributes {
            arn: APNS_ARN.into(),
            attributes
        }]
    );
    assert!(is_success(&resp));
    assert_eq!(resp.physical_resource_id, APNS_ARN);
    assert_eq!(resp.data.get("Arn").map(String::as_str), Some(APNS_ARN));
}

#[tokio::test]
async fn update_of_platform_or_name_replaces_the_application() {
    let old = create_fixture()["ResourceProperties"].clone();
    for (field, value) in [("Platform", "APNS_SANDBOX"), ("Name", "courier-apns-2")] {
        let mut new = old.clone();
        new[field] = json!(value);
        let sns = FakeSns::ok(NEW_ARN);
        let resp = handle(&sns, &update_from(old.clone(), new, APNS_ARN)).await;

        assert!(
            matches!(sns.calls().as_slice(), [Call::Create { .. }]),
            "{field}: {:?}",
            sns.calls()
        );
        assert!(is_success(&resp));
        // A new physical id makes CloudFormation delete the old application afterwards.
        assert_eq!(resp.physical_resource_id, NEW_ARN);
    }
}

#[tokio::test]
async fn failed_update_keeps_the_old_id() {
    let old = create_fixture()["ResourceProperties"].clone();
    let mut sns = FakeSns::ok(NEW_ARN);
    sns.set = Err(SnsError::Other("InvalidParameter: bad".into()));
    let resp = handle(&sns, &update_from(old.clone(), old, APNS_ARN)).await;
    assert_eq!(
        resp.status,
        CloudFormationCustomResourceResponseStatus::Failed
    );
    assert_eq!(resp.physical_resource_id, APNS_ARN);
}

#[tokio::test]
async fn delete_removes_the_application() {
    let sns = FakeSns::ok(APNS_ARN);
    let resp = handle(&sns, &delete_of(APNS_ARN)).await;
    assert_eq!(
        sns.calls(),
        vec![Call::Delete {
            arn: APNS_ARN.into()
        }]
    );
    assert!(is_success(&resp));
    assert_eq!(resp.physical_resource_id, APNS_ARN);
}

#[tokio::test]
async fn delete_of_a_missing_application_succeeds() {
    let mut sns = FakeSns::ok(APNS_ARN);
    sns.delete = Err(SnsError::NotFound);
    let resp = handle(&sns, &delete_of(APNS_ARN)).await;
    assert!(is_success(&resp));
}

#[tokio::test]
async fn delete_after_a_failed_create_touches_nothing() {
    let sns = FakeSns::ok(APNS_ARN);
    let resp = handle(
        &sns,
        &delete_of("ApnsPlatformApplication-6f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b"),
    )
    .await;
    assert!(sns.calls().is_empty());
    assert!(is_success(&resp));
}

#[tokio::test]
async fn delete_errors_other_than_not_found_fail() {
    let mut sns = FakeSns::ok(APNS_ARN);
    sns.delete = Err(SnsError::Other("AuthorizationError: denied".into()));
    let resp = handle(&sns, &delete_of(APNS_ARN)).await;
    assert_eq!(
        resp.status,
        CloudFormationCustomResourceResponseStatus::Failed
    );
    assert!(resp.reason.unwrap().contains("denied"));
}

#[test]
fn long_reasons_are_truncated_on_a_char_boundary() {
    let s = "é".repeat(MAX_REASON_LEN);
    let t = truncate(s, MAX_REASON_LEN);
    assert!(t.len() <= MAX_REASON_LEN);
    assert!(t.chars().all(|c| c == 'é'));
}

/// The response is PUT with an empty Content-Type (the presigned URL is signed without one).
#[tokio::test]
async fn response_is_put_with_an_empty_content_type() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read the head, then as many body bytes as Content-Length says.
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed early");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(buf).unwrap()
    });

    let sns = FakeSns::ok(APNS_ARN);
    let resp = handle(&sns, &request(create_fixture())).await;
    let url = format!("http://{addr}/stack%7CApnsPlatformApplication?X-Amz-Signature=abc");
    send_response(&reqwest::Client::new(), &url, &resp)
        .await
        .unwrap();

    let raw = server.await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("PUT /stack%7CApnsPlatformApplication?X-Amz-Signature=abc HTTP/1.1"),
        "{head}"
    );
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type").then(|| v.trim())
        })
        .expect("a Content-Type header");
    assert_eq!(content_type, "");
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(sent["Status"], "SUCCESS");
    assert_eq!(sent["PhysicalResourceId"], APNS_ARN);
}

#[tokio::test]
async fn a_refused_response_is_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut chunk = [0u8; 4096];
        let _ = sock.read(&mut chunk).await;
        let _ = sock
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 13\r\nconnection: close\r\n\r\nAccessDenied!")
            .await;
    });
    let resp = Response::default();
    let err = send_response(&reqwest::Client::new(), &format!("http://{addr}/x"), &resp)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
}
