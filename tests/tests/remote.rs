//! Running against a stack by its URLs, as against a deployed one: a local cloud started with
//! test numbers (`TestPhonePrefix`/`TestPhoneCode`, as an operator would deploy for testing)
//! serves the load generator (`courier-bench --http-url --ws-url --test-phone-prefix
//! --test-phone-code`) and this suite's own sign-up path (`COURIER_TEST_PHONE_PREFIX`,
//! `COURIER_TEST_PHONE_CODE`) without reading any SMS; real numbers still get their SMS.

use courier_tests::{TestCloud, repo_root};
use serde_json::Value;
use std::process::Command;

const PREFIX: &str = "+1415555";
const CODE: &str = "314159";

#[tokio::test]
async fn the_load_generator_and_the_tests_run_by_url_with_test_numbers() {
    let cloud = TestCloud::start(&[
        &format!("TestPhonePrefix={PREFIX}"),
        &format!("TestPhoneCode={CODE}"),
    ])
    .expect("a local cloud with test numbers");

    // The load generator, pointed at the stack's URLs like at a deployed one.
    let out = std::env::temp_dir().join(format!("courier-remote-{}.json", std::process::id()));
    let bench = repo_root().join("target/debug/courier-bench");
    let status = Command::new(&bench)
        .args(["--http-url", &cloud.http_url, "--ws-url", &cloud.ws_url])
        .args(["--test-phone-prefix", PREFIX, "--test-phone-code", CODE])
        .args(["--clients", "4", "--rate", "20", "--duration", "2s"])
        .args(["--warmup", "0s", "--drain", "3s"])
        .arg("--json")
        .arg(&out)
        .env_remove("COURIER_TEST_PHONE_PREFIX")
        .env_remove("COURIER_TEST_PHONE_CODE")
        .status()
        .expect("courier-bench runs (built by ./dev test)");
    assert!(status.success(), "courier-bench failed: {status}");
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent >= 20, "about 40 messages sent, got {sent}: {report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["sendErrors"], 0, "{report}");
    assert_eq!(report["received"].as_u64(), Some(sent), "{report}");

    // No SMS went to a test number.
    let sms: Vec<Value> = reqwest::get(format!("{}/_local/outbox/sms", cloud.http_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let to_test: Vec<&Value> = sms
        .iter()
        .filter(|m| {
            m["phoneNumber"]
                .as_str()
                .is_some_and(|p| p.starts_with(PREFIX))
        })
        .collect();
    assert!(to_test.is_empty(), "SMS to test numbers: {to_test:?}");

    // The suite's sign-up path with the test-number variables (what a run against a deployed
    // stack sets): a number under the prefix, verified with the fixed code.
    // SAFETY: the only test of this binary; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("COURIER_TEST_PHONE_PREFIX", PREFIX);
        std::env::set_var("COURIER_TEST_PHONE_CODE", CODE);
    }
    let phone = courier_tests::fresh_phone();
    assert!(phone.starts_with(PREFIX), "{phone}");
    cloud.accounts().register(&phone).await.unwrap();
    assert_eq!(cloud.code_for(&phone).await.unwrap(), CODE);
    let creds = cloud.sign_up().await;
    assert!(creds.user_id.starts_with("u_"));
    // A wrong code still fails for a test number.
    let device = courier_core::protocol::DeviceInfo {
        name: "phone".into(),
        platform: courier_core::protocol::Platform::Ios,
    };
    let wrong = cloud.accounts().verify(&phone, "000000", device).await;
    assert_eq!(
        wrong.unwrap_err().code(),
        Some(courier_core::ErrorCode::Unauthorized),
        "a wrong code is refused"
    );
    unsafe {
        std::env::remove_var("COURIER_TEST_PHONE_PREFIX");
        std::env::remove_var("COURIER_TEST_PHONE_CODE");
    }

    // A real number on the same stack still gets its code by SMS.
    let real = courier_tests::fresh_phone();
    assert!(!real.starts_with(PREFIX));
    cloud.accounts().register(&real).await.unwrap();
    let code = cloud
        .code_for(&real)
        .await
        .expect("an SMS to a real number");
    assert_eq!(code.len(), 6);
}
